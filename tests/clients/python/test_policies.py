"""Authorization through a real MCP client (official Python SDK) and a real stdio server.

The gateway fronts a Jira-like server (jira_server.py) under a Cedar policy set kept in
files next to the config. The tests show what a user of the SDK sees:

* lists hold only what the policies permit, and a denied call fails exactly like a call to a
  tool that does not exist — and never reaches the server;
* "read Jira tickets but do not update them" is a two-line policy;
* a policy edit takes effect on the next call without a restart;
* a policy that does not parse or fails schema validation is rejected, and the previous set
  keeps serving.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from conftest import Spawned, start_gateway

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
JIRA = HERE / "jira_server.py"
BUDGET = 60

# The example of docs/policy.md, verbatim: read Jira tickets but do not update them.
READ_ONLY_JIRA = """\
permit (principal, action == Gatehouse::Action::"call_tool", resource in Gatehouse::Server::"jira")
when { resource.operation == "read" };
"""

ALLOW_UPDATES = """\
@id("updates-allowed")
permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"default/update_issue");
"""


def config(policy_dir: Path) -> dict:
    return {
        "servers": [
            {
                "name": "jira",
                "command": sys.executable,
                "args": [str(JIRA)],
                "trust_annotations": True,
            }
        ],
        "virtual_servers": [{"name": "default", "path": "/mcp", "include": [{"server": "jira"}]}],
        "policies": {"engine": "cedar", "paths": [f"{policy_dir.name}/*.cedar"]},
    }


async def tool_names(c: Client) -> set[str]:
    return {t.name for t in (await c.list_tools()).tools}


def text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


async def call_error(c: Client, name: str, args: dict) -> tuple[int, str]:
    try:
        result = await c.call_tool(name, args)
    except MCPError as e:
        return e.code, str(e)
    pytest.fail(f"{name} was allowed: {text(result)}")


def wait_for_log(gw: Spawned, needle: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in gw.stderr_tail(400):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def jira_gateway(log_dir: Path, request: pytest.FixtureRequest):
    work = log_dir / f"policies-{request.node.name}"
    policy_dir = work / "policies"
    policy_dir.mkdir(parents=True)
    (policy_dir / "jira.cedar").write_text(READ_ONLY_JIRA)
    gw, url = start_gateway(config(policy_dir), work, name=f"gatehouse-{request.node.name}")
    gw.url = url  # type: ignore[attr-defined]
    gw.policy_dir = policy_dir  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        gw.stop()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_read_only_jira_lists_reads_and_denies_updates_like_missing_tools(jira_gateway: Spawned, mode: str) -> None:
    url = jira_gateway.url  # type: ignore[attr-defined]
    with anyio.fail_after(BUDGET):
        async with Client(url, mode=mode, read_timeout_seconds=20) as c:
            assert await tool_names(c) == {"search_issues", "get_issue", "audit_log"}
            assert "OPS-1: disk full" in text(await c.call_tool("get_issue", {"key": "OPS-1"}))

            denied = await call_error(c, "update_issue", {"key": "OPS-1", "status": "closed"})
            missing = await call_error(c, "no_such_tool", {"key": "OPS-1"})
            # Same code, same message shape: a denial does not reveal that the tool exists.
            assert denied[0] == missing[0] == types.INVALID_PARAMS
            assert denied[1] == missing[1].replace("no_such_tool", "update_issue")
            await call_error(c, "delete_issue", {"key": "OPS-1"})

            assert text(await c.call_tool("audit_log", {})) == "", "a denied call reached the server"
    assert wait_for_log(jira_gateway, "policy decision")
    log = jira_gateway.stderr_tail(400)
    assert "allowed=false" in log and "update_issue" in log, log


async def test_policy_edits_apply_live_and_bad_policies_are_rejected(jira_gateway: Spawned) -> None:
    url = jira_gateway.url  # type: ignore[attr-defined]
    policy_dir: Path = jira_gateway.policy_dir  # type: ignore[attr-defined]
    with anyio.fail_after(BUDGET):
        async with Client(url, mode="legacy", read_timeout_seconds=20) as c:
            await call_error(c, "update_issue", {"key": "OPS-2", "status": "closed"})

            # A new file permitting updates: the next call sees it, no restart.
            (policy_dir / "updates.cedar").write_text(ALLOW_UPDATES)
            deadline = time.monotonic() + 15
            while "update_issue" not in await tool_names(c):
                assert time.monotonic() < deadline, f"policy edit not applied:\n{jira_gateway.stderr_tail()}"
                await anyio.sleep(0.3)
            assert text(await c.call_tool("update_issue", {"key": "OPS-2", "status": "closed"})) == "OPS-2 is now closed"

            # A syntax error: rejected, the previous set keeps serving.
            (policy_dir / "broken.cedar").write_text("permit (principal, action resource);\n")
            assert wait_for_log(jira_gateway, "broken.cedar:1:"), jira_gateway.stderr_tail()
            assert "update_issue" in await tool_names(c)
            assert "is now open" in text(await c.call_tool("update_issue", {"key": "OPS-2", "status": "open"}))

            # A schema violation (an entity type Gatehouse does not have): rejected too.
            (policy_dir / "broken.cedar").write_text(
                'permit (principal in Gatehouse::Team::"jira-admins", action, resource);\n'
            )
            assert wait_for_log(jira_gateway, "Gatehouse::Team"), jira_gateway.stderr_tail()
            assert "update_issue" in await tool_names(c)

            # Removing the bad file and the permission: updates are denied again.
            (policy_dir / "broken.cedar").unlink()
            (policy_dir / "updates.cedar").unlink()
            deadline = time.monotonic() + 15
            while "update_issue" in await tool_names(c):
                assert time.monotonic() < deadline, f"policy removal not applied:\n{jira_gateway.stderr_tail()}"
                await anyio.sleep(0.3)
            await call_error(c, "update_issue", {"key": "OPS-2", "status": "closed"})
            assert text(await c.call_tool("audit_log", {})) == "update OPS-2 closed\nupdate OPS-2 open"
    assert "policy set rejected; the previous one keeps serving" in jira_gateway.stderr_tail(400)
