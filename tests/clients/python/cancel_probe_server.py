"""A tiny stdio MCP server used as a third gateway member by the client tests.

It makes cancellation observable from the member's side: `block` sleeps until
it is cancelled (or its timeout passes) and records how it ended; `block_log`
returns that record, so a test can assert that a client's cancellation crossed
the gateway and reached the member.
"""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("cancel-probe")

# One entry per finished `block` call: "<tag>:cancelled" or "<tag>:completed".
_LOG: list[str] = []


@server.tool()
async def block(tag: str, seconds: float = 30.0) -> str:
    """Sleeps `seconds` unless cancelled first; records the outcome under `tag`."""
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _LOG.append(f"{tag}:cancelled")
        raise
    _LOG.append(f"{tag}:completed")
    return f"{tag} completed"


@server.tool()
async def block_log() -> str:
    """Returns the outcomes of all finished `block` calls, comma-separated."""
    return ",".join(_LOG)


if __name__ == "__main__":
    server.run("stdio")
