// End-to-end tests of Gatehouse with the official TypeScript SDK
// (@modelcontextprotocol/sdk 1.x, a 2025-era client) over
// StreamableHTTPClientTransport. The gateway fronts server-everything (stdio,
// prefix "ev_") and the Rust conformance fixture (Streamable HTTP); see harness.mjs.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { loadSdk, startStack } from "./harness.mjs";

const TEST_TIMEOUT = 60_000;
const REQUEST_TIMEOUT = 20_000;
const FIXTURE_SIMPLE_TEXT = "This is a simple text response for testing.";

const { Client, StreamableHTTPClientTransport, types } = await loadSdk();

let stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  await stack?.stop();
});

/** Connects a client; `setup(client)` runs before connect (to register handlers). */
async function connect(t, { capabilities = {}, setup } = {}) {
  const client = new Client({ name: "gatehouse-ts-tests", version: "0.0.0" }, { capabilities });
  setup?.(client);
  const transport = new StreamableHTTPClientTransport(new URL(stack.url));
  await client.connect(transport, { timeout: REQUEST_TIMEOUT });
  t.after(async () => {
    // Ends the session (DELETE) and closes the transport.
    await transport.terminateSession().catch(() => {});
    await client.close();
  });
  return client;
}

const texts = (result) => result.content.filter((b) => b.type === "text").map((b) => b.text);

async function callTool(client, name, args = {}, options = {}) {
  return client.callTool({ name, arguments: args }, undefined, { timeout: REQUEST_TIMEOUT, ...options });
}

describe("gatehouse via @modelcontextprotocol/sdk StreamableHTTPClientTransport", { timeout: TEST_TIMEOUT * 8 }, () => {
  test("initialize negotiates the 2025-11-25 era and a session", { timeout: TEST_TIMEOUT }, async (t) => {
    const client = await connect(t);
    const transport = client.transport;
    assert.ok(transport.sessionId, "the gateway must assign an Mcp-Session-Id");
    assert.equal(transport.protocolVersion, "2025-11-25");
    assert.ok(client.getServerCapabilities()?.tools, "tools capability must be advertised");
    assert.ok(client.getServerVersion()?.name, "serverInfo.name must be set");
  });

  test("tools/list shows both members, server-everything prefixed with ev_", { timeout: TEST_TIMEOUT }, async (t) => {
    const client = await connect(t, { capabilities: { elicitation: {} } });
    const tools = [];
    let cursor;
    for (let i = 0; i < 20; i++) {
      const page = await client.listTools(cursor ? { cursor } : {}, { timeout: REQUEST_TIMEOUT });
      tools.push(...page.tools);
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    const names = tools.map((tool) => tool.name);
    assert.equal(new Set(names).size, names.length, `duplicate names in ${names}`);
    for (const name of [
      "ev_echo",
      "ev_get-sum",
      "ev_get-structured-content",
      "ev_trigger-long-running-operation",
      "ev_trigger-elicitation-request",
      "test_simple_text",
      "test_tool_with_progress",
      "test_error_handling",
      "test_input_required_result_elicitation",
    ]) {
      assert.ok(names.includes(name), `${name} missing from ${names.join(", ")}`);
    }
    for (const bare of ["echo", "get-sum", "trigger-long-running-operation"]) {
      assert.ok(!names.includes(bare), `${bare} must only be listed with its ev_ prefix`);
    }
    const echo = tools.find((tool) => tool.name === "ev_echo");
    assert.equal(echo.description, "Echoes back the input string");
    assert.equal(echo.inputSchema.type, "object");
    assert.equal(echo.inputSchema.properties.message.type, "string");
    assert.deepEqual(echo.inputSchema.required, ["message"]);
  });

  test("calls a server-everything tool (stdio member)", { timeout: TEST_TIMEOUT }, async (t) => {
    const client = await connect(t);
    const echo = await callTool(client, "ev_echo", { message: "hi" });
    assert.deepEqual(echo.content, [{ type: "text", text: "Echo: hi" }]);
    assert.ok(!echo.isError);
    const sum = await callTool(client, "ev_get-sum", { a: 40, b: 2 });
    assert.deepEqual(sum.content, [{ type: "text", text: "The sum of 40 and 2 is 42." }]);
    const weather = await callTool(client, "ev_get-structured-content", { location: "New York" });
    const expected = { temperature: 33, conditions: "Cloudy", humidity: 82 };
    assert.deepEqual(weather.structuredContent, expected);
    assert.deepEqual(texts(weather).map((s) => JSON.parse(s)), [expected]);
  });

  test("calls a fixture tool (Streamable HTTP member)", { timeout: TEST_TIMEOUT }, async (t) => {
    const client = await connect(t);
    const simple = await callTool(client, "test_simple_text");
    assert.deepEqual(simple.content, [{ type: "text", text: FIXTURE_SIMPLE_TEXT }]);
    assert.ok(!simple.isError);
    const failing = await callTool(client, "test_error_handling");
    assert.equal(failing.isError, true);
    assert.deepEqual(failing.content, [
      { type: "text", text: "This tool intentionally returns an error for testing" },
    ]);
  });

  test("progress notifications reach onprogress (fixture)", { timeout: TEST_TIMEOUT }, async (t) => {
    const client = await connect(t);
    const seen = [];
    const result = await callTool(client, "test_tool_with_progress", {}, { onprogress: (p) => seen.push(p) });
    assert.deepEqual(texts(result), ["Progress test completed"]);
    assert.deepEqual(
      seen.map(({ progress, total, message }) => ({ progress, total, message })),
      [
        { progress: 0, total: 100, message: "Starting" },
        { progress: 50, total: 100, message: "Halfway" },
        { progress: 100, total: 100, message: "Done" },
      ],
    );
  });

  test("progress notifications reach onprogress (server-everything)", { timeout: TEST_TIMEOUT }, async (t) => {
    const client = await connect(t);
    const seen = [];
    const result = await callTool(
      client,
      "ev_trigger-long-running-operation",
      { duration: 0.6, steps: 3 },
      { onprogress: (p) => seen.push(p) },
    );
    assert.deepEqual(texts(result), ["Long running operation completed. Duration: 0.6 seconds, Steps: 3."]);
    assert.deepEqual(
      seen.map(({ progress, total }) => ({ progress, total })),
      [
        { progress: 1, total: 3 },
        { progress: 2, total: 3 },
        { progress: 3, total: 3 },
      ],
    );
  });

  test("an aborted call rejects and the session keeps working", { timeout: TEST_TIMEOUT }, async (t) => {
    const client = await connect(t);
    const controller = new AbortController();
    const started = Date.now();
    const call = callTool(
      client,
      "ev_trigger-long-running-operation",
      { duration: 20, steps: 20 },
      { signal: controller.signal, onprogress: () => controller.abort("test cancels") },
    );
    await assert.rejects(call, (err) => {
      assert.match(String(err?.message ?? err), /test cancels|abort/i);
      return true;
    });
    assert.ok(Date.now() - started < 10_000, "the abort must not wait for the tool to finish");
    const echo = await callTool(client, "ev_echo", { message: "after abort" });
    assert.deepEqual(texts(echo), ["Echo: after abort"]);
    const seen = [];
    const again = await callTool(
      client,
      "ev_trigger-long-running-operation",
      { duration: 0.4, steps: 2 },
      { onprogress: (p) => seen.push(p.progress) },
    );
    assert.deepEqual(texts(again), ["Long running operation completed. Duration: 0.4 seconds, Steps: 2."]);
    assert.deepEqual(seen, [1, 2]);
  });

  test("elicitation from server-everything reaches the ElicitRequest handler", { timeout: TEST_TIMEOUT }, async (t) => {
    const requests = [];
    const client = await connect(t, {
      capabilities: { elicitation: {} },
      setup: (c) =>
        c.setRequestHandler(types.ElicitRequestSchema, async (request) => {
          requests.push(request.params);
          return { action: "accept", content: { name: "Ada Lovelace", check: true, integer: 7 } };
        }),
    });
    const result = await callTool(client, "ev_trigger-elicitation-request");
    assert.equal(requests.length, 1);
    assert.equal(requests[0].message, "Please provide inputs for the following fields:");
    assert.deepEqual(requests[0].requestedSchema.required, ["name"]);
    const got = texts(result);
    assert.equal(got[0], "✅ User provided the requested information!");
    assert.equal(got[1], "User inputs:\n- Name: Ada Lovelace\n- Agreed to terms: true\n- Favorite Integer: 7");
    assert.deepEqual(JSON.parse(got[2].replace(/^\nRaw result: /, "")), {
      action: "accept",
      content: { name: "Ada Lovelace", check: true, integer: 7 },
    });
  });

  test("elicitation from the fixture's InputRequiredResult crosses eras to the handler", { timeout: TEST_TIMEOUT }, async (t) => {
    const requests = [];
    const client = await connect(t, {
      capabilities: { elicitation: {} },
      setup: (c) =>
        c.setRequestHandler(types.ElicitRequestSchema, async (request) => {
          requests.push(request.params);
          return { action: "accept", content: { name: "Grace" } };
        }),
    });
    const result = await callTool(client, "test_input_required_result_elicitation");
    assert.equal(requests.length, 1);
    assert.equal(requests[0].message, "What is your name?");
    assert.ok(requests[0].requestedSchema.properties.name, "schema must ask for name");
    assert.deepEqual(texts(result), ["Hello, Grace!"]);
    assert.ok(!result.isError);
  });
});
