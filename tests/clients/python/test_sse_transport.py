"""The legacy HTTP+SSE transport (2024-11-05), both ways, with real peers.

* Backend: @modelcontextprotocol/server-everything in its `sse` mode is a member with
  `transport: sse`.
* Front door: the official Python SDK's `sse_client` connects to the gateway's
  `<path>/sse` endpoint.

A 2026-07-28 client also calls the SSE member, so the request crosses both eras and both
transports.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client, ClientSession
from mcp.client.sse import sse_client

from conftest import NODE_BIN, SERVER_EVERYTHING_JS, _require, free_port, start_gateway, wait_for_port

pytestmark = pytest.mark.anyio
BUDGET = 60


@pytest.fixture(scope="module")
def everything_sse(log_dir: Path) -> Iterator[str]:
    _require(SERVER_EVERYTHING_JS, "scripts/client-tests installs it into .tools/npm")
    port = free_port()
    log = open(log_dir / "everything-sse.stderr.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [NODE_BIN, str(SERVER_EVERYTHING_JS), "sse"],
        env={**os.environ, "PORT": str(port)},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        wait_for_port(port, "server-everything (sse)")
        yield f"http://127.0.0.1:{port}/sse"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def sse_gateway(everything_sse: str, log_dir: Path) -> Iterator[str]:
    config = {
        "servers": [{"name": "evsse", "url": everything_sse, "transport": "sse"}],
        "virtual_servers": [{"name": "legacy", "path": "/mcp", "include": [{"server": "evsse", "prefix": "sse_"}]}],
    }
    gw, url = start_gateway(config, log_dir / "gateway-sse", name="gatehouse-sse")
    try:
        yield url
    finally:
        gw.stop()


async def test_sse_client_through_gateway_to_sse_server(sse_gateway: str) -> None:
    with anyio.fail_after(BUDGET):
        async with sse_client(f"{sse_gateway}/sse") as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                echo = await session.call_tool("sse_echo", {"message": "over sse"})
    assert init.server_info.name == "gatehouse/legacy"
    names = {t.name for t in tools.tools}
    assert "sse_echo" in names and "sse_get-sum" in names, names
    assert echo.is_error is False
    assert echo.content[0].text == "Echo: over sse"


async def test_stateless_client_reaches_sse_server(sse_gateway: str) -> None:
    with anyio.fail_after(BUDGET):
        async with Client(sse_gateway, mode="2026-07-28") as c:
            total = await c.call_tool("sse_get-sum", {"a": 40, "b": 2})
    assert total.is_error is False
    assert total.content[0].text == "The sum of 40 and 2 is 42."
