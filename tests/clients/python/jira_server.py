"""A Jira-like stdio MCP server (official Python SDK) for the policy tests.

Tools carry honest annotations (reads are read-only, deletes destructive) so a test can show
the difference between trusting them and classifying operations in the gateway config.
Every write is recorded and readable with `audit_log`, so a test can prove a denied call
never reached the server.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("jira")

_ISSUES: dict[str, dict[str, str]] = {
    "OPS-1": {"summary": "disk full on build agent", "status": "open"},
    "OPS-2": {"summary": "rotate certificates", "status": "open"},
}
_WRITES: list[str] = []

READ = ToolAnnotations(readOnlyHint=True)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False)
DELETE = ToolAnnotations(readOnlyHint=False, destructiveHint=True)


@server.tool(annotations=READ)
def search_issues(query: str = "") -> str:
    """Lists issues whose summary contains `query`."""
    return "\n".join(f"{k}: {v['summary']} [{v['status']}]" for k, v in _ISSUES.items() if query in v["summary"])


@server.tool(annotations=READ)
def get_issue(key: str) -> str:
    """Shows one issue."""
    issue = _ISSUES.get(key)
    return f"{key}: {issue['summary']} [{issue['status']}]" if issue else f"{key}: no such issue"


@server.tool(annotations=WRITE)
def update_issue(key: str, status: str) -> str:
    """Changes an issue's status."""
    _WRITES.append(f"update {key} {status}")
    _ISSUES.setdefault(key, {"summary": "", "status": ""})["status"] = status
    return f"{key} is now {status}"


@server.tool(annotations=DELETE)
def delete_issue(key: str) -> str:
    """Deletes an issue."""
    _WRITES.append(f"delete {key}")
    _ISSUES.pop(key, None)
    return f"{key} deleted"


@server.tool(annotations=READ)
def audit_log() -> str:
    """Every write this server has executed, one per line (test observability)."""
    return "\n".join(_WRITES)


if __name__ == "__main__":
    server.run("stdio")
