"""Real MCP servers in containers (runtime: container, Podman), through the official Python SDK.

The image is built FROM scratch out of the host's Node and the installed server-everything and
server-filesystem (`scripts/containers image node`); the engine is started by
`scripts/containers engine`. server-everything runs twice: over stdio, and speaking Streamable
HTTP in its container (`isolation.http`). server-filesystem gets `/` as its own allowed root, so what it can
see is decided by the container alone: its grants, nothing of the gateway's data dir, the
config's folder, /etc/shadow or the home folder. server-everything answers tools through the
same attachment.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from conftest import ROOT, Spawned, start_gateway

pytestmark = pytest.mark.anyio

BUDGET = 90
MODULES = "/opt/mcp/node_modules/@modelcontextprotocol"


def text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


def containers(*args: str) -> str:
    out = subprocess.run([str(ROOT / "scripts/containers"), *args], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"scripts/containers {' '.join(args)} failed (the container tests need podman):\n{out.stderr}")
    return out.stdout.strip()


@pytest.fixture
def container_gateway(log_dir: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GATEHOUSE_CONTAINER_HOST", containers("engine"))
    image = containers("image", "node")
    work = log_dir / f"container-{request.node.name}"
    ro, rw = work / "ro", work / "rw"
    ro.mkdir(parents=True)
    rw.mkdir()
    rw.chmod(0o777)  # the container's user is nobody
    (ro / "notes.txt").write_text("granted notes")
    (work / "beside-the-config.txt").write_text("not granted")
    container = {"runtime": "container", "image": image}
    config = {
        "servers": [
            {
                "name": "files",
                "command": "/usr/local/bin/node",
                "args": [f"{MODULES}/server-filesystem/dist/index.js", "/"],
                "isolation": {**container, "filesystem": {"read": [str(ro)], "write": [str(rw)]}},
            },
            {
                "name": "everything",
                "command": "/usr/local/bin/node",
                "args": [f"{MODULES}/server-everything/dist/index.js", "stdio"],
                "isolation": container,
            },
            {
                # Streamable HTTP in its container: reached only through the gateway's socket.
                "name": "everything_http",
                "command": "/usr/local/bin/node",
                "args": [f"{MODULES}/server-everything/dist/index.js", "streamableHttp"],
                "env": {"PORT": "3001"},
                "isolation": {**container, "http": {"port": 3001}},
            },
        ],
        "virtual_servers": [
            {
                "name": "default",
                "path": "/mcp",
                "include": [
                    {"server": "files"},
                    {"server": "everything", "prefix": "ev_"},
                    {"server": "everything_http", "prefix": "evh_"},
                ],
            }
        ],
    }
    gw, url = start_gateway(config, work, name=f"gatehouse-{request.node.name}")
    gw.url = url  # type: ignore[attr-defined]
    gw.work = work  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        gw.stop()


async def test_server_filesystem_and_server_everything_in_containers(container_gateway: Spawned) -> None:
    url = container_gateway.url  # type: ignore[attr-defined]
    work: Path = container_gateway.work  # type: ignore[attr-defined]
    ro, rw = work / "ro", work / "rw"
    with anyio.fail_after(BUDGET):
        async with Client(url, mode="legacy", read_timeout_seconds=60) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"read_text_file", "write_file", "ev_echo", "evh_echo"} <= names, names

            echoed = await c.call_tool("ev_echo", {"message": "from a container"})
            assert "from a container" in text(echoed), text(echoed)
            echoed = await c.call_tool("evh_echo", {"message": "over HTTP from a container"})
            assert "over HTTP from a container" in text(echoed), text(echoed)

            assert text(await c.call_tool("read_text_file", {"path": str(ro / "notes.txt")})) == "granted notes"
            wrote = await c.call_tool("write_file", {"path": str(rw / "out.txt"), "content": "from the container"})
            assert not wrote.is_error, text(wrote)
            assert (rw / "out.txt").read_text() == "from the container"

            before = (ro / "notes.txt").stat()
            try:
                r = await c.call_tool("write_file", {"path": str(ro / "notes.txt"), "content": "overwritten"})
                assert r.is_error, text(r)
            except MCPError:
                pass
            after = (ro / "notes.txt").stat()
            assert (ro / "notes.txt").read_text() == "granted notes"
            assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)

            for hidden in [work / "beside-the-config.txt", work / "data", Path("/etc/shadow"), Path.home() / ".bashrc"]:
                tool = "list_directory" if hidden.is_dir() else "read_text_file"
                try:
                    r = await c.call_tool(tool, {"path": str(hidden)})
                    assert r.is_error, f"{hidden}: {text(r)}"
                    message = text(r)
                except MCPError as e:
                    message = str(e)
                assert any(w in message.lower() for w in ("enoent", "no such file", "not exist", "denied")), f"{hidden}: {message}"
    log = container_gateway.stderr_tail(400)
    assert 'runtime="container"' in log, log
    assert "started HTTP server server=everything_http" in log, log
    assert "own namespace with its loopback only" in log, log
    assert os.environ.get("GATEHOUSE_CONTAINER_HOST")
