"""Gateway process lifecycle as seen from outside: stopping it leaves no member processes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from conftest import alive, children_of, gateway_config, start_gateway

pytestmark = pytest.mark.anyio


async def test_sigterm_stops_stdio_members(fixture_url: str, log_dir: Path) -> None:
    gw, url = start_gateway(gateway_config(fixture_url), log_dir / "gateway-lifecycle", name="gatehouse-lifecycle")
    try:
        with anyio.fail_after(30):
            async with Client(url, mode="legacy", read_timeout_seconds=20) as c:
                # Touch both stdio members so they are running.
                await c.call_tool("ev_echo", {"message": "x"})
                await c.call_tool("py_block_log", {})
        members = children_of(gw.pid)
        assert len(members) >= 2, f"expected the two stdio members as children of the gateway, found {members}"

        gw.proc.send_signal(signal.SIGTERM)
        try:
            code = gw.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("gatehouse did not exit within 15 s of SIGTERM")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in members):
            time.sleep(0.1)
        left = sorted(p for p in members if alive(p))
        assert not left, f"stdio members still running after gatehouse exited: {left}"
        assert code == 0, f"gatehouse exited with {code} on SIGTERM:\n{gw.stderr_tail()}"
    finally:
        gw.stop()
