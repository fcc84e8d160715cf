"""Real MCP servers sandboxed by default, through the official Python SDK.

@modelcontextprotocol/server-filesystem is started with `/` as its own allowed root, so
its own path checks allow everything: what it can see is decided by the sandbox alone. Its
isolation grants one folder read-only and one read-write. Through the gateway the SDK sees:

* the granted folders, listed and read; a file written into the write grant arrives on the
  host (checked from outside);
* the gateway's data directory, the config's folder, /etc/shadow and the user's home are not
  there at all;
* a write into the read-only grant fails, and the file is unchanged on the host.

server-everything (the default members of the other tests) runs sandboxed too, with no
isolation block: the whole suite passing through it is the compatibility check.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from conftest import NODE_BIN, ROOT, Spawned, start_gateway

pytestmark = pytest.mark.anyio

SERVER_FILESYSTEM_JS = Path(
    os.environ.get("SERVER_FILESYSTEM_JS")
    or ROOT / ".tools/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
)
BUDGET = 60


def text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


async def refused(c: Client, name: str, args: dict) -> str:
    """The error a call ends with (a tool error or a JSON-RPC error); fails if it succeeded."""
    try:
        result = await c.call_tool(name, args)
    except MCPError as e:
        return str(e)
    assert result.is_error, f"{name} {args} succeeded: {text(result)}"
    return text(result)


@pytest.fixture
def files_gateway(log_dir: Path, request: pytest.FixtureRequest):
    if not SERVER_FILESYSTEM_JS.exists():
        pytest.fail(f"missing {SERVER_FILESYSTEM_JS} (scripts/client-tests installs it)")
    work = log_dir / f"isolation-{request.node.name}"
    ro, rw = work / "ro", work / "rw"
    ro.mkdir(parents=True)
    rw.mkdir()
    (ro / "notes.txt").write_text("granted notes")
    (work / "beside-the-config.txt").write_text("not granted")
    config = {
        "servers": [
            {
                "name": "files",
                "command": NODE_BIN,
                "args": [str(SERVER_FILESYSTEM_JS), "/"],
                "isolation": {"filesystem": {"read": [str(ro)], "write": [str(rw)]}},
            }
        ],
        "virtual_servers": [{"name": "default", "path": "/mcp", "include": [{"server": "files"}]}],
    }
    gw, url = start_gateway(config, work, name=f"gatehouse-{request.node.name}")
    gw.url = url  # type: ignore[attr-defined]
    gw.work = work  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        gw.stop()


async def test_server_filesystem_sees_only_its_grants(files_gateway: Spawned) -> None:
    url = files_gateway.url  # type: ignore[attr-defined]
    work: Path = files_gateway.work  # type: ignore[attr-defined]
    ro, rw = work / "ro", work / "rw"
    with anyio.fail_after(BUDGET):
        async with Client(url, mode="legacy", read_timeout_seconds=30) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"read_text_file", "write_file", "list_directory"} <= names, names

            assert text(await c.call_tool("read_text_file", {"path": str(ro / "notes.txt")})) == "granted notes"
            assert "notes.txt" in text(await c.call_tool("list_directory", {"path": str(ro)}))

            wrote = await c.call_tool("write_file", {"path": str(rw / "out.txt"), "content": "from the sandbox"})
            assert not wrote.is_error, text(wrote)
            assert (rw / "out.txt").read_text() == "from the sandbox"

            before = (ro / "notes.txt").stat()
            await refused(c, "write_file", {"path": str(ro / "notes.txt"), "content": "overwritten"})
            after = (ro / "notes.txt").stat()
            assert (ro / "notes.txt").read_text() == "granted notes"
            assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)

            # The home folder shows at most the way to the server's own package (the tools
            # folder may live there); nothing else of it.
            home = Path.home()
            package = SERVER_FILESYSTEM_JS.resolve()
            leads = {package.relative_to(home).parts[0]} if package.is_relative_to(home) else set()
            shown = await c.call_tool("list_directory", {"path": str(home)})
            names = set() if shown.is_error else {line.split("] ", 1)[1] for line in text(shown).splitlines() if "] " in line}
            assert names <= leads, f"the sandbox shows {names - leads} of {home}"
            assert len(list(home.iterdir())) > len(leads), "the home folder has more to hide"

            for hidden in [work / "beside-the-config.txt", work / "data", Path("/etc/shadow"), home / ".bashrc"]:
                message = await refused(c, "list_directory" if hidden.is_dir() else "read_text_file", {"path": str(hidden)})
                assert "not granted" not in message, f"{hidden}: {message}"
                assert any(w in message.lower() for w in ("enoent", "no such file", "not exist", "denied")), f"{hidden}: {message}"
    log = files_gateway.stderr_tail(400)
    assert 'runtime="sandbox"' in log and "landlock ABI" in log, log
