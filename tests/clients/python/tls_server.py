"""An MCP server built with the official Python SDK, served over HTTPS that requires a client
certificate (mTLS), for the gateway's TLS tests.

Usage: tls_server.py PORT CERT KEY CA
"""

from __future__ import annotations

import ssl
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("tls-probe")


@server.tool()
def whoami() -> str:
    """Proves the call arrived over mutual TLS."""
    return "served over mutual TLS"


if __name__ == "__main__":
    port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    uvicorn.run(
        server.streamable_http_app(),
        host="127.0.0.1",
        port=port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_ca_certs=ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        log_level="warning",
    )
