"""Remote members over HTTPS: a CA bundle to trust the server, and a client certificate for
servers that require mutual TLS. The server is the official Python SDK behind uvicorn with
`CERT_REQUIRED`; certificates are made with the openssl CLI for each run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from conftest import HERE, free_port, start_gateway, wait_for_port

pytestmark = pytest.mark.anyio


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in [("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")]:
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


@pytest.fixture(scope="module")
def mtls_server(log_dir: Path) -> Iterator[tuple[str, Path]]:
    pki = log_dir / "pki"
    pki.mkdir(exist_ok=True)
    make_pki(pki)
    port = free_port()
    log = open(log_dir / "tls-server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "tls_server.py"), str(port), str(pki / "server.pem"), str(pki / "server.key"), str(pki / "ca.pem")],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for_port(port, "TLS server")
        yield f"https://127.0.0.1:{port}/mcp", pki
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def tls_gateway(mtls_server: tuple[str, Path], log_dir: Path) -> Iterator[str]:
    url, pki = mtls_server
    config = {
        "servers": [
            {"name": "mtls", "url": url, "timeout": "10s",
             "tls": {"ca": str(pki / "ca.pem"), "cert": str(pki / "client.pem"), "key": str(pki / "client.key")}},
            # Same server, trusted but without a client certificate: the server refuses it.
            {"name": "nocert", "url": url, "timeout": "10s", "tls": {"ca": str(pki / "ca.pem")}},
        ],
        "virtual_servers": [{"name": "tls", "path": "/mcp", "include": [
            {"server": "mtls", "prefix": "ok_"}, {"server": "nocert", "prefix": "no_"}]}],
    }
    gw, gw_url = start_gateway(config, log_dir / "gateway-tls", name="gatehouse-tls")
    try:
        yield gw_url
    finally:
        gw.stop()


async def test_mtls_member_is_reached_and_a_member_without_client_cert_is_refused(tls_gateway: str) -> None:
    with anyio.fail_after(60):
        async with Client(tls_gateway, mode="2026-07-28") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            result = await c.call_tool("ok_whoami", {})
            with pytest.raises(MCPError) as refused:
                await c.call_tool("no_whoami", {})
    assert "ok_whoami" in names
    assert "no_whoami" not in names, "the member whose TLS handshake fails has no tools"
    assert result.content[0].text == "served over mutual TLS"
    assert "nocert" in str(refused.value), str(refused.value)
