// The downstream API of Gatehouse's identity tests: an MCP server built with the official
// TypeScript SDK that is itself an OAuth resource server. It accepts only tokens from the test
// OP whose `aud` is its own URL, records every Authorization header it receives, and has the
// tool `whoami`, which returns the verified claims it saw.
//
// Usage: node downstream.mjs --issuer URL [--port N] [--static-token T] [--sse] [--sessions]
//   --static-token  accept exactly that token instead (a legacy API with an API key)
//   --sse           speak the legacy HTTP+SSE transport (GET /sse, POST /messages), every
//                   request of both authenticated
//   --sessions      keep 2025-era sessions, each bound to the user who opened it (a request on
//                   another user's session gets 403), as careful servers do
// GET /seen lists every bearer token received (so tests can prove the caller's own token never
// arrived). Prints {"url": ...} on stdout once listening.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    port: { type: 'string', default: '0' },
    'static-token': { type: 'string' },
    sse: { type: 'boolean', default: false },
    sessions: { type: 'boolean', default: false },
  },
});

const seen = [];
const server = createServer();
await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;
const url = args.sse ? `${base}/sse` : `${base}/mcp`;
const sseSessions = new Map();
const httpSessions = new Map();
const jwks = args.issuer ? createRemoteJWKSet(new URL(`${args.issuer}/jwks`)) : null;

async function authenticate(req) {
  const header = req.headers.authorization || '';
  seen.push(header);
  const token = header.startsWith('Bearer ') ? header.slice(7) : null;
  if (!token) return null;
  if (args['static-token']) {
    return token === args['static-token'] ? { api_key: true } : null;
  }
  try {
    const { payload } = await jwtVerify(token, jwks, { issuer: args.issuer, audience: url });
    return payload;
  } catch (e) {
    return null;
  }
}

function mcpServer(claims) {
  const mcp = new McpServer({ name: 'downstream-api', version: '1.0.0' });
  mcp.registerTool(
    'whoami',
    { description: 'Returns the identity the downstream API sees.' },
    async () => ({ content: [{ type: 'text', text: JSON.stringify(claims) }] }),
  );
  // Like a real API, it shows each user only what they may use: bob cannot update issues.
  if (claims.sub !== 'bob') mcp.registerTool(
    'update_issue',
    { description: 'A write operation guarded by the jira:write scope at the gateway.' },
    async () => ({ content: [{ type: 'text', text: 'updated' }] }),
  );
  return mcp;
}

server.on('request', async (req, res) => {
  if (req.method === 'GET' && req.url === '/seen') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(seen));
    return;
  }
  const known = args.sse ? req.url.startsWith('/sse') || req.url.startsWith('/messages') : req.url.startsWith('/mcp');
  if (!known) {
    res.writeHead(404).end();
    return;
  }
  const claims = await authenticate(req);
  if (!claims) {
    res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'invalid_token' }));
    return;
  }
  if (args.sse) {
    if (req.method === 'GET') {
      const transport = new SSEServerTransport('/messages', res);
      sseSessions.set(transport.sessionId, transport);
      res.on('close', () => sseSessions.delete(transport.sessionId));
      await mcpServer(claims).connect(transport);
    } else {
      const id = new URL(req.url, base).searchParams.get('sessionId');
      const transport = sseSessions.get(id);
      if (!transport) {
        res.writeHead(404).end();
        return;
      }
      await transport.handlePostMessage(req, res);
    }
    return;
  }
  if (args.sessions) {
    const sid = req.headers['mcp-session-id'];
    if (sid) {
      const s = httpSessions.get(sid);
      if (!s) {
        res.writeHead(404).end();
      } else if (s.sub !== claims.sub) {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'this session belongs to another user' }));
      } else {
        await s.transport.handleRequest(req, res);
      }
      return;
    }
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: true,
      onsessioninitialized: (id) => httpSessions.set(id, { transport, sub: claims.sub }),
    });
    await mcpServer(claims).connect(transport);
    await transport.handleRequest(req, res);
    return;
  }
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => transport.close());
  await mcpServer(claims).connect(transport);
  await transport.handleRequest(req, res);
});

process.stdout.write(`${JSON.stringify({ url })}\n`);
