"""End-to-end tests of Gatehouse with the official Python SDK (mcp==2.3.0).

Every test runs twice: once as a 2025-era client (``mode="legacy"``: initialize,
Mcp-Session-Id, SSE) and once as a 2026-07-28 stateless client
(``mode="2026-07-28"``). The gateway fronts server-everything (stdio, a 2025-era
server, prefix ``ev_``), the Rust conformance fixture (Streamable HTTP) and the
cancel probe (stdio, prefix ``py_``); see conftest.py.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]
# Upper bound for one whole test body; pytest-timeout (60 s) is the backstop.
TEST_BUDGET = 45.0
# Upper bound for one request round trip.
READ_TIMEOUT = 20.0

FIXTURE_SIMPLE_TEXT = "This is a simple text response for testing."
FIXTURE_ERROR_TEXT = "This tool intentionally returns an error for testing"
FIXTURE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)

# Tools server-everything registers unconditionally, plus the elicitation tool it
# registers when its client (the gateway) declares the elicitation capability.
EVERYTHING_TOOLS = {
    "echo",
    "get-annotated-message",
    "get-env",
    "get-resource-links",
    "get-resource-reference",
    "get-structured-content",
    "get-sum",
    "get-tiny-image",
    "gzip-file-as-resource",
    "toggle-simulated-logging",
    "toggle-subscriber-updates",
    "trigger-long-running-operation",
    "trigger-elicitation-request",
}
FIXTURE_TOOLS = {
    "test_simple_text",
    "test_image_content",
    "test_error_handling",
    "test_tool_with_progress",
    "test_input_required_result_elicitation",
}
PROBE_TOOLS = {"block", "block_log"}


def dump(blocks: list[Any]) -> list[dict[str, Any]]:
    return [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in blocks]


def texts(result: types.CallToolResult) -> list[str]:
    return [b.text for b in result.content if isinstance(b, types.TextContent)]


def client(url: str, mode: str, **kwargs: Any) -> Client:
    return Client(url, mode=mode, read_timeout_seconds=READ_TIMEOUT, **kwargs)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


# --------------------------------------------------------------------------- listing


async def test_list_tools_shows_both_members(gateway_url: str, mode: str) -> None:
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:
            if mode == "legacy":
                assert c.protocol_version == "2025-11-25"
            else:
                assert c.protocol_version == "2026-07-28"
            tools: list[types.Tool] = []
            cursor: str | None = None
            for _ in range(20):
                page = await c.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
            names = [t.name for t in tools]

    assert len(names) == len(set(names)), f"duplicate tool names: {sorted(names)}"
    name_set = set(names)
    missing = {f"ev_{n}" for n in EVERYTHING_TOOLS} - name_set
    assert not missing, f"server-everything tools missing (with ev_ prefix): {sorted(missing)}"
    assert not (EVERYTHING_TOOLS & name_set), "server-everything tools must only appear prefixed"
    assert FIXTURE_TOOLS <= name_set, f"fixture tools missing: {sorted(FIXTURE_TOOLS - name_set)}"
    assert {f"py_{n}" for n in PROBE_TOOLS} <= name_set

    by_name = {t.name: t for t in tools}
    echo = by_name["ev_echo"]
    assert echo.description == "Echoes back the input string"
    assert echo.input_schema["type"] == "object"
    assert echo.input_schema["properties"]["message"]["type"] == "string"
    assert echo.input_schema.get("required") == ["message"]
    structured = by_name["ev_get-structured-content"]
    assert structured.output_schema is not None
    assert set(structured.output_schema["properties"]) == {"temperature", "conditions", "humidity"}
    simple = by_name["test_simple_text"]
    assert simple.description == "Returns simple text content"


# --------------------------------------------------------------------------- plain calls


async def test_call_everything_tools(gateway_url: str, mode: str) -> None:
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:
            echo = await c.call_tool("ev_echo", {"message": "hi"})
            total = await c.call_tool("ev_get-sum", {"a": 40, "b": 2})
            weather = await c.call_tool("ev_get-structured-content", {"location": "Chicago"})

    assert echo.is_error is False
    assert dump(echo.content) == [{"type": "text", "text": "Echo: hi"}]
    assert total.is_error is False
    assert dump(total.content) == [{"type": "text", "text": "The sum of 40 and 2 is 42."}]
    expected = {"temperature": 36, "conditions": "Light rain / drizzle", "humidity": 82}
    assert weather.is_error is False
    assert weather.structured_content == expected
    assert [json.loads(t) for t in texts(weather)] == [expected]


async def test_call_fixture_tools(gateway_url: str, mode: str) -> None:
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:
            simple = await c.call_tool("test_simple_text", {})
            image = await c.call_tool("test_image_content", {})
            failing = await c.call_tool("test_error_handling", {})

    assert simple.is_error is False
    assert dump(simple.content) == [{"type": "text", "text": FIXTURE_SIMPLE_TEXT}]
    assert dump(image.content) == [{"type": "image", "data": FIXTURE_PNG, "mimeType": "image/png"}]
    assert failing.is_error is True
    assert dump(failing.content) == [{"type": "text", "text": FIXTURE_ERROR_TEXT}]


async def test_unknown_tool_is_an_error(gateway_url: str, mode: str) -> None:
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:
            try:
                result = await c.call_tool("ev_no_such_tool", {})
            except MCPError as error:
                assert error.code in (types.INVALID_PARAMS, types.METHOD_NOT_FOUND), error
            else:
                # A tool execution error is also acceptable, but then it must say so.
                assert result.is_error is True, result
            # The session (or the stateless connection) still works afterwards.
            echo = await c.call_tool("ev_echo", {"message": "still here"})
    assert texts(echo) == ["Echo: still here"]


# --------------------------------------------------------------------------- progress


async def test_progress_from_http_member(gateway_url: str, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:
            result = await c.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)

    assert texts(result) == ["Progress test completed"]
    assert seen == [(0.0, 100.0, "Starting"), (50.0, 100.0, "Halfway"), (100.0, 100.0, "Done")]


async def test_progress_from_stdio_member(gateway_url: str, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:
            result = await c.call_tool(
                "ev_trigger-long-running-operation",
                {"duration": 0.6, "steps": 3},
                progress_callback=on_progress,
            )

    assert texts(result) == ["Long running operation completed. Duration: 0.6 seconds, Steps: 3."]
    assert seen == [(1.0, 3.0, None), (2.0, 3.0, None), (3.0, 3.0, None)]


async def test_concurrent_progress_is_not_crossed(gateway_url: str, mode: str) -> None:
    """Two concurrent calls to the same stdio member each get only their own progress."""
    seen: dict[str, list[float]] = {"a": [], "b": []}
    results: dict[str, types.CallToolResult] = {}

    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:

            async def run(key: str, steps: int) -> None:
                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    assert total == steps, (key, progress, total)
                    seen[key].append(progress)

                results[key] = await c.call_tool(
                    "ev_trigger-long-running-operation",
                    {"duration": 0.8, "steps": steps},
                    progress_callback=on_progress,
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(run, "a", 2)
                tg.start_soon(run, "b", 4)

    assert seen == {"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0, 4.0]}
    assert texts(results["a"]) == ["Long running operation completed. Duration: 0.8 seconds, Steps: 2."]
    assert texts(results["b"]) == ["Long running operation completed. Duration: 0.8 seconds, Steps: 4."]


# --------------------------------------------------------------------------- cancellation


async def test_cancel_long_running_call(gateway_url: str, mode: str) -> None:
    """Cancel a call after its first progress event; the next calls on the same client work."""
    first_progress = anyio.Event()
    progress: list[float] = []
    outcome: dict[str, Any] = {}

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)
        first_progress.set()

    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:
            scope = anyio.CancelScope()

            async def long_call() -> None:
                with scope:
                    outcome["result"] = await c.call_tool(
                        "ev_trigger-long-running-operation",
                        {"duration": 20, "steps": 20},
                        progress_callback=on_progress,
                    )

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call)
                with anyio.fail_after(10):
                    await first_progress.wait()
                scope.cancel()
            elapsed = time.monotonic() - started

            # The caller saw a cancellation, not a result, and did not wait for the tool to finish.
            assert scope.cancelled_caught
            assert "result" not in outcome
            assert elapsed < 10, elapsed
            assert progress[:1] == [1.0]

            # The same client keeps working, on the same member and on another one.
            echo = await c.call_tool("ev_echo", {"message": "after cancel"})
            assert texts(echo) == ["Echo: after cancel"]
            after: list[float] = []

            async def on_after(value: float, total: float | None, message: str | None) -> None:
                after.append(value)

            again = await c.call_tool(
                "ev_trigger-long-running-operation", {"duration": 0.4, "steps": 2}, progress_callback=on_after
            )
            assert texts(again) == ["Long running operation completed. Duration: 0.4 seconds, Steps: 2."]
            assert after == [1.0, 2.0]
            simple = await c.call_tool("test_simple_text", {})
            assert texts(simple) == [FIXTURE_SIMPLE_TEXT]


async def test_cancel_reaches_the_member(gateway_url: str, mode: str) -> None:
    """A client-side cancellation is propagated through the gateway to the stdio member."""
    tag = f"{mode}-{uuid.uuid4().hex[:8]}"
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode) as c:
            # Make sure the member is up, so the cancellation cannot overtake the request.
            await c.call_tool("py_block_log", {})
            with anyio.move_on_after(1.5) as scope:
                await c.call_tool("py_block", {"tag": tag, "seconds": 30})
            assert scope.cancelled_caught, "py_block returned before it was cancelled"

            log = ""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                log = texts(await c.call_tool("py_block_log", {}))[0]
                if f"{tag}:" in log:
                    break
                await anyio.sleep(0.2)
    entries = [e for e in log.split(",") if e.startswith(f"{tag}:")]
    assert entries == [f"{tag}:cancelled"], (
        f"the member never saw the cancellation of py_block (block_log={log!r})"
    )


# --------------------------------------------------------------------------- elicitation


class Elicitor:
    """Elicitation callback that records requests and answers with a fixed result."""

    def __init__(self, result: types.ElicitResult) -> None:
        self.result = result
        self.requests: list[types.ElicitRequestParams] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.requests.append(params)
        return self.result


async def test_elicitation_from_stdio_member(gateway_url: str, mode: str) -> None:
    """server-everything (a 2025-era server) sends elicitation/create; for a 2026-07-28
    client the gateway must carry it across eras (InputRequiredResult)."""
    elicitor = Elicitor(
        types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True, "integer": 7})
    )
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode, elicitation_callback=elicitor) as c:
            result = await c.call_tool("ev_trigger-elicitation-request", {})

    assert len(elicitor.requests) == 1
    request = elicitor.requests[0]
    assert isinstance(request, types.ElicitRequestFormParams)
    assert request.message == "Please provide inputs for the following fields:"
    assert request.requested_schema["required"] == ["name"]
    assert "name" in request.requested_schema["properties"]

    assert result.is_error is False
    got = texts(result)
    assert got[0] == "✅ User provided the requested information!"
    assert got[1] == "User inputs:\n- Name: Ada Lovelace\n- Agreed to terms: true\n- Favorite Integer: 7"
    raw = json.loads(got[2].removeprefix("\nRaw result: "))
    assert raw == {"action": "accept", "content": {"name": "Ada Lovelace", "check": True, "integer": 7}}


async def test_elicitation_decline_from_stdio_member(gateway_url: str, mode: str) -> None:
    elicitor = Elicitor(types.ElicitResult(action="decline"))
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode, elicitation_callback=elicitor) as c:
            result = await c.call_tool("ev_trigger-elicitation-request", {})
    assert len(elicitor.requests) == 1
    got = texts(result)
    assert got[0] == "❌ User declined to provide the requested information."
    assert json.loads(got[1].removeprefix("\nRaw result: ")) == {"action": "decline"}


async def test_elicitation_from_http_member(gateway_url: str, mode: str) -> None:
    """The fixture asks via a 2026-07-28 InputRequiredResult; for a legacy client the
    gateway must turn it into an elicitation/create request on the session."""
    elicitor = Elicitor(types.ElicitResult(action="accept", content={"name": "Grace"}))
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode, elicitation_callback=elicitor) as c:
            result = await c.call_tool("test_input_required_result_elicitation", {})

    assert len(elicitor.requests) == 1
    request = elicitor.requests[0]
    assert isinstance(request, types.ElicitRequestFormParams)
    assert request.message == "What is your name?"
    assert "name" in request.requested_schema["properties"]
    assert result.is_error is False
    assert texts(result) == ["Hello, Grace!"]


async def test_elicitation_decline_from_http_member(gateway_url: str, mode: str) -> None:
    elicitor = Elicitor(types.ElicitResult(action="decline"))
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode, elicitation_callback=elicitor) as c:
            result = await c.call_tool("test_input_required_result_elicitation", {})
    assert len(elicitor.requests) == 1
    assert texts(result) == ["Hello, friend!"]


async def test_elicitation_cancel_from_stdio_member(gateway_url: str, mode: str) -> None:
    elicitor = Elicitor(types.ElicitResult(action="cancel"))
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode, elicitation_callback=elicitor) as c:
            result = await c.call_tool("ev_trigger-elicitation-request", {})
    assert len(elicitor.requests) == 1
    got = texts(result)
    assert got[0] == "⚠️ User cancelled the elicitation dialog."
    assert json.loads(got[1].removeprefix("\nRaw result: ")) == {"action": "cancel"}


# --------------------------------------------------------------------------- sampling


class Sampler:
    """Sampling callback that records requests and answers with a fixed text."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.requests: list[types.CreateMessageRequestParams] = []

    async def __call__(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.requests.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=self.reply),
            model="test-model",
            stop_reason="endTurn",
        )


async def test_sampling_from_stdio_member(gateway_url: str, mode: str) -> None:
    """server-everything sends sampling/createMessage (2025 era); a 2026-07-28 client
    receives it as an InputRequiredResult input request."""
    sampler = Sampler("Paris")
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode, sampling_callback=sampler) as c:
            result = await c.call_tool("ev_trigger-sampling-request", {"prompt": "capital of France?", "maxTokens": 17})

    assert len(sampler.requests) == 1
    request = sampler.requests[0]
    assert request.max_tokens == 17
    assert request.system_prompt == "You are a helpful test server."
    assert [m.role for m in request.messages] == ["user"]
    contents = [m.content if isinstance(m.content, list) else [m.content] for m in request.messages]
    assert [dump(c) for c in contents] == [
        [{"type": "text", "text": "Resource trigger-sampling-request context: capital of France?"}]
    ]
    got = texts(result)
    assert len(got) == 1 and got[0].startswith("LLM sampling result: \n"), got
    assert json.loads(got[0].removeprefix("LLM sampling result: \n")) == {
        "model": "test-model",
        "stopReason": "endTurn",
        "role": "assistant",
        "content": {"type": "text", "text": "Paris"},
    }


async def test_sampling_from_http_member(gateway_url: str, mode: str) -> None:
    """The fixture asks for sampling via InputRequiredResult; a legacy client receives
    it as a sampling/createMessage request on its session."""
    sampler = Sampler("Paris")
    with anyio.fail_after(TEST_BUDGET):
        async with client(gateway_url, mode, sampling_callback=sampler) as c:
            result = await c.call_tool("test_input_required_result_sampling", {})
    assert len(sampler.requests) == 1
    assert texts(result) == ["Sampling response: Paris"]
