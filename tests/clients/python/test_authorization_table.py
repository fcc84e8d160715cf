"""One authorization table for every method, through the official Python SDK, in both eras.

Alice and Bob are users of a real endpoint with `auth` (JWTs signed here, the keys served as
a JWKS) and Cedar policies that let each of them use a few tools and one resource. Behind it:

* ``everything`` — @modelcontextprotocol/server-everything over stdio (2025-11-25 tasks:
  ``tasks/get``, ``tasks/result``, ``tasks/list``, ``tasks/cancel``);
* ``fixture``    — the conformance fixture over Streamable HTTP, serving both eras with one
  task store for every caller (SEP-2663 tasks), as many servers keep.

What the SDK user sees:

* a task id is the caller's own: the creator gets, reads, lists and cancels it under
  policies; another user holding the id gets exactly what an id that never existed gets;
* a subscription is decided as a read: a resource the caller may not read cannot be
  subscribed to (2025) and is left out of a listen acknowledgement (2026-07-28), exactly like
  a resource that does not exist.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import jwt
import mcp_types as types
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import TypeAdapter

from conftest import FIXTURE_BIN, NODE_BIN, SERVER_EVERYTHING_JS, Spawned, spawn, start_gateway

pytestmark = pytest.mark.anyio

AUDIENCE = "https://gatehouse.test/mcp"
TASKS = "io.modelcontextprotocol/tasks"
WATCHED = "test://watched-resource"

POLICY = """\
permit (principal, action == Gatehouse::Action::"call_tool", resource)
when { (principal.sub == "alice" || principal.sub == "bob")
       && (resource.name == "ev_simulate-research-query" || resource.name == "slow_compute") };
permit (principal, action == Gatehouse::Action::"read_resource", resource == Gatehouse::Resource::"default/test://watched-resource");
permit (principal, action == Gatehouse::Action::"call_tool", resource)
when { principal.sub == "bob" && resource.name like "test_trigger_*" };
"""


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Issuer:
    """An issuer of RS256 JWTs whose JWKS is served on loopback (the gateway fetches it)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.key.public_key().public_numbers()
        jwks = {"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": _b64(numbers.n), "e": _b64(numbers.e)}]}
        body = json.dumps(jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200 if self.path == "/jwks" else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                if self.path == "/jwks":
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub: str) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 3600}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    i = Issuer()
    yield i
    i.server.shutdown()


@pytest.fixture(scope="module")
def both_era_fixture(log_dir: Path) -> Iterator[str]:
    proc = spawn("fixture-both", [str(FIXTURE_BIN), "--listen", "127.0.0.1:0", "--era", "both"], log_dir, "listening on ")
    try:
        yield proc.first_line.removeprefix("listening on ").strip()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def secured(issuer: Issuer, both_era_fixture: str, log_dir: Path) -> Iterator[tuple[Spawned, str]]:
    work = log_dir / "gateway-authz"
    work.mkdir(parents=True, exist_ok=True)
    (work / "p.cedar").write_text(POLICY)
    config = {
        "servers": [
            {"name": "everything", "command": NODE_BIN, "args": [str(SERVER_EVERYTHING_JS), "stdio"]},
            {"name": "fixture", "url": both_era_fixture},
        ],
        "virtual_servers": [
            {
                "name": "default",
                "path": "/mcp",
                "include": [{"server": "everything", "prefix": "ev_"}, {"server": "fixture"}],
                "auth": {"issuer": issuer.url, "audience": AUDIENCE, "jwks_url": f"{issuer.url}/jwks"},
            }
        ],
        "policies": {"engine": "cedar", "paths": ["p.cedar"]},
    }
    gw, url = start_gateway(config, work, name="gatehouse-authz")
    try:
        yield gw, url
    finally:
        gw.stop()


def client(issuer: Issuer, url: str, who: str, mode: str, **kwargs: Any) -> Client:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {issuer.token(who)}"}, timeout=60)
    return Client(streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=60, **kwargs)


AnyResult = TypeAdapter(dict[str, Any])

# The SDK's own request types for each method these tests send.
REQUESTS: dict[str, tuple[type, type | None]] = {
    "tools/call": (types.CallToolRequest, types.CallToolRequestParams),
    "tasks/get": (types.GetTaskRequest, types.GetTaskRequestParams),
    "tasks/result": (types.GetTaskPayloadRequest, types.GetTaskPayloadRequestParams),
    "tasks/cancel": (types.CancelTaskRequest, types.CancelTaskRequestParams),
    "tasks/list": (types.ListTasksRequest, None),
}


async def raw(c: Client, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Sends `method` as the SDK's typed request over the SDK's own session (its transport,
    session id, `_meta` and headers) and returns the result as JSON; raises MCPError.

    The SDK's public `send_request` checks a `tools/call` result against `CallToolResult`, so
    a task-augmented call's `CreateTaskResult` would not pass: this goes one layer down, to
    the same stamping and dispatch `send_request` uses, without that check."""
    request_type, params_type = REQUESTS[method]
    typed = params_type.model_validate(params) if params_type is not None else None
    request = request_type(method=method, params=typed)
    data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    opts: dict[str, Any] = {}
    session = c.session
    session._stamp(data, opts)  # noqa: SLF001 - see the docstring
    headers = opts.setdefault("headers", {})
    name = (data.get("params") or {}).get("name") or (data.get("params") or {}).get("taskId")
    if name is not None and "mcp-name" not in {k.lower() for k in headers}:
        headers["Mcp-Name"] = name
    return await session._dispatcher.send_raw_request(method, data.get("params"), opts)  # noqa: SLF001


async def error_of(c: Client, method: str, params: dict[str, Any]) -> tuple[int, str]:
    try:
        result = await raw(c, method, params)
    except MCPError as e:
        return e.code, str(e)
    pytest.fail(f"{method} succeeded: {result}")


async def test_a_2025_task_is_its_creators_to_get_read_list_and_cancel(secured: tuple[Spawned, str], issuer: Issuer) -> None:
    _, url = secured
    async with client(issuer, url, "bob", "legacy") as bob, client(issuer, url, "alice", "legacy") as alice:
        created = await raw(
            bob,
            "tools/call",
            {"name": "ev_simulate-research-query", "arguments": {"topic": "gateways"}, "task": {"ttl": 60000}},
        )
        handle = created["task"]["taskId"]
        assert handle.startswith("gatehouse-task."), created
        never = await error_of(alice, "tasks/get", {"taskId": "gatehouse-task.0.AAAA"})
        assert never[0] == -32602
        # Alice holds Bob's handle: it is no task of hers, in every method.
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            assert await error_of(alice, method, {"taskId": handle}) == never, method
        assert (await raw(alice, "tasks/list", {}))["tasks"] == []
        # Bob, under policies, gets, lists, reads and (another one) cancels his own.
        got = await raw(bob, "tasks/get", {"taskId": handle})
        assert got["taskId"] == handle and got["status"] in ("working", "completed"), got
        listed = await raw(bob, "tasks/list", {})
        assert [t["taskId"] for t in listed["tasks"]] == [handle], listed
        with anyio.fail_after(30):
            while (await raw(bob, "tasks/get", {"taskId": handle}))["status"] != "completed":
                await anyio.sleep(0.5)
        result = await raw(bob, "tasks/result", {"taskId": handle})
        assert "gateways" in json.dumps(result["content"]), result
        second = await raw(
            bob,
            "tools/call",
            {"name": "ev_simulate-research-query", "arguments": {"topic": "later"}, "task": {"ttl": 60000}},
        )
        cancelled = await raw(bob, "tasks/cancel", {"taskId": second["task"]["taskId"]})
        assert cancelled["status"] == "cancelled", cancelled


async def test_a_2026_task_in_a_shared_store_is_its_creators(secured: tuple[Spawned, str], issuer: Issuer) -> None:
    _, url = secured
    ext = [advertise(TASKS)]
    async with client(issuer, url, "bob", "2026-07-28", extensions=ext) as bob, client(
        issuer, url, "alice", "2026-07-28", extensions=ext
    ) as alice:
        created = await raw(bob, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 30, "label": "bob's"}})
        assert created["resultType"] == "task", created
        handle = created["taskId"]
        never = await error_of(alice, "tasks/get", {"taskId": "gatehouse-task.0.AAAA"})
        for method in ("tasks/get", "tasks/cancel"):
            assert await error_of(alice, method, {"taskId": handle}) == never, method
        # The fixture keeps one store for everyone: the task still runs, untouched by Alice.
        got = await raw(bob, "tasks/get", {"taskId": handle})
        assert (got["taskId"], got["status"]) == (handle, "working"), got
        await raw(bob, "tasks/cancel", {"taskId": handle})


async def test_subscriptions_are_decided_as_reads_in_both_eras(secured: tuple[Spawned, str], issuer: Issuer) -> None:
    _, url = secured
    async with client(issuer, url, "alice", "legacy") as legacy:
        with pytest.raises(MCPError) as denied:
            await legacy.subscribe_resource("test://static-text")
        with pytest.raises(MCPError) as unknown:
            await legacy.subscribe_resource("test://no-such-resource")
        assert denied.value.code == unknown.value.code == -32602
        await legacy.subscribe_resource(WATCHED)
    async with client(issuer, url, "alice", "2026-07-28") as modern:
        async with modern.listen(resource_subscriptions=[WATCHED, "test://static-text", "test://no-such-resource"]) as sub:
            honored = sub.honored
            subs = honored.resource_subscriptions if hasattr(honored, "resource_subscriptions") else honored["resourceSubscriptions"]
            assert list(subs or []) == [WATCHED], honored
