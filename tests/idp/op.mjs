// A real OpenID Provider for Gatehouse's identity tests: node-oidc-provider (a certified OP
// implementation) on loopback, with
//   - authorization code + PKCE and refresh tokens (clients drive login over plain HTTP: the
//     interaction endpoints below take a form post, no browser needed),
//   - client credentials,
//   - RFC 7591 dynamic client registration (tests register clients with their own redirect URIs),
//   - RFC 8707 resource indicators: access tokens for a resource are RS256 JWTs with aud = resource
//     (resources under http://opaque.test/ get opaque tokens, for introspection),
//   - RFC 7662 introspection and RFC 7009 revocation,
//   - RFC 8693 token exchange, registered through the provider's grant-type extension API: it
//     mints a token for the downstream resource with the subject token's `sub` and, when an actor
//     token (the client's own client-credentials token) is sent, `act: { sub: <client> }`,
//   - the jwt-bearer grant with requested_token_use=on_behalf_of, shaped like Microsoft Entra's
//     on-behalf-of flow (Entra itself cannot run here).
//
// Usage: node op.mjs [--port N] [--key rsa.pem]
// Prints one JSON line {"issuer": ..., "port": ...} on stdout once listening.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';
import { createLocalJWKSet, jwtVerify } from 'jose';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    key: { type: 'string' },
  },
});

const pem = args.key
  ? readFileSync(args.key, 'utf8')
  : generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' });
const jwk = { ...createPrivateKey(pem).export({ format: 'jwk' }), kid: 'op-key-1', use: 'sig', alg: 'RS256' };
const publicJwk = { kty: jwk.kty, n: jwk.n, e: jwk.e, kid: jwk.kid, use: 'sig', alg: 'RS256' };
const localKeys = createLocalJWKSet({ keys: [publicJwk] });

// Users of this test IdP. Any password is accepted: the tests exercise Gatehouse, not the OP's
// credential checks.
const USERS = {
  alice: { email: 'alice@example.com', groups: ['engineering', 'mcp-users'], roles: ['developer'] },
  bob: { email: 'bob@example.com', groups: ['sales'], roles: [] },
};

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// Scopes every resource server accepts.
const RESOURCE_SCOPES = 'mcp:tools jira:write downstream:read downstream:write';

function resourceServerInfo(resource) {
  const opaque = resource.startsWith('http://opaque.test');
  return {
    scope: RESOURCE_SCOPES,
    audience: resource,
    accessTokenTTL: 300,
    accessTokenFormat: opaque ? 'opaque' : 'jwt',
    ...(opaque ? {} : { jwt: { sign: { alg: 'RS256' } } }),
  };
}

// Grants by account, so the test-only admin endpoint can revoke a user's consent (as an
// administrator would in a real IdP), which invalidates the refresh tokens issued under it.
const grantsOf = new Map();

// `act` claims for tokens minted by token exchange, attached through extraTokenClaims.
const actorOf = new WeakMap();

const port = Number(args.port);
const server = createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [
    {
      client_id: 'mcp-client',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
      scope: `openid email profile offline_access ${RESOURCE_SCOPES}`,
    },
    {
      client_id: 'gatehouse',
      client_secret: 'gatehouse-secret',
      grant_types: ['client_credentials', TOKEN_EXCHANGE, JWT_BEARER, 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
      scope: `openid email offline_access ${RESOURCE_SCOPES}`,
    },
    {
      client_id: 'billing-service',
      client_secret: 'billing-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: RESOURCE_SCOPES,
    },
  ],
  findAccount: async (ctx, id) => {
    if (!USERS[id]) return undefined;
    return {
      accountId: id,
      claims: async () => ({ sub: id, ...USERS[id] }),
    };
  },
  claims: { email: ['email'], profile: ['groups', 'roles'] },
  scopes: ['openid', 'email', 'profile', 'offline_access', ...RESOURCE_SCOPES.split(' ')],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => resourceServerInfo(resource),
    },
  },
  // User identity claims go into access tokens too, as enterprise IdPs do.
  extraTokenClaims: async (ctx, token) => {
    const extra = {};
    if (token.accountId && USERS[token.accountId]) {
      const u = USERS[token.accountId];
      Object.assign(extra, { email: u.email, groups: u.groups, roles: u.roles });
    }
    const act = actorOf.get(token);
    if (act) extra.act = act;
    return extra;
  },
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  pkce: { required: () => true },
  ttl: { AccessToken: 300, AuthorizationCode: 60, RefreshToken: 3600, ClientCredentials: 300, Grant: 3600, Interaction: 600, Session: 3600 },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.proxy = false;

// Mints an access token for `resource` on behalf of `accountId`, no longer-lived than `maxExp`.
async function mint(ctx, { accountId, resource, scope, act, gty, maxExp }) {
  const info = resourceServerInfo(resource);
  const now = Math.floor(Date.now() / 1000);
  if (maxExp) info.accessTokenTTL = Math.max(1, Math.min(info.accessTokenTTL, maxExp - now));
  const allowed = new Set(info.scope.split(' '));
  const granted = (scope || '').split(' ').filter((s) => allowed.has(s)).join(' ') || undefined;
  const token = new provider.AccessToken({
    accountId,
    client: ctx.oidc.client,
    scope: granted,
    gty,
    resourceServer: new provider.ResourceServer(resource, info),
  });
  if (act) actorOf.set(token, act);
  const value = await token.save();
  return {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    ...(granted ? { scope: granted } : {}),
  };
}

async function verifyOwnToken(token, what) {
  try {
    const { payload } = await jwtVerify(token, localKeys, { issuer });
    return payload;
  } catch (e) {
    throw new errors.InvalidGrant(`${what} is invalid: ${e.message}`);
  }
}

provider.registerGrantType(
  TOKEN_EXCHANGE,
  async (ctx) => {
    const p = ctx.oidc.params;
    if (p.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('subject_token_type must be an access token');
    }
    const subject = await verifyOwnToken(p.subject_token, 'subject_token');
    let act;
    if (p.actor_token) {
      // The actor token is the client's own client-credentials token (opaque without a resource).
      const actor = p.actor_token.split('.').length === 3
        ? await verifyOwnToken(p.actor_token, 'actor_token')
        : await provider.ClientCredentials.find(p.actor_token);
      const actorClient = actor && (actor.client_id || actor.clientId);
      if (actorClient !== ctx.oidc.client.clientId) {
        throw new errors.InvalidGrant('actor_token was not issued to this client');
      }
      act = { sub: ctx.oidc.client.clientId };
    }
    const resource = p.resource || p.audience;
    if (!resource) throw new errors.InvalidTarget('resource or audience is required');
    ctx.body = await mint(ctx, {
      accountId: subject.sub,
      resource,
      scope: p.scope,
      act,
      gty: 'token-exchange',
      maxExp: subject.exp,
    });
  },
  ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'audience', 'resource', 'scope', 'requested_token_type'],
);

// Entra-style on-behalf-of: scope "<resource>/.default" names the downstream API.
provider.registerGrantType(
  JWT_BEARER,
  async (ctx) => {
    const p = ctx.oidc.params;
    if (p.requested_token_use !== 'on_behalf_of') {
      throw new errors.InvalidRequest('requested_token_use must be on_behalf_of');
    }
    const subject = await verifyOwnToken(p.assertion, 'assertion');
    const scopes = (p.scope || '').split(' ');
    const dflt = scopes.find((s) => s.endsWith('/.default'));
    if (!dflt) throw new errors.InvalidScope('scope must include <resource>/.default');
    const resource = dflt.slice(0, -'/.default'.length);
    ctx.body = await mint(ctx, {
      accountId: subject.sub,
      resource,
      scope: RESOURCE_SCOPES,
      gty: 'on-behalf-of',
      maxExp: subject.exp,
    });
  },
  ['assertion', 'requested_token_use', 'scope'],
);

// Login, then consent, each one form post to POST /interaction/<uid> (login=<user>); consent
// grants everything the client asked for.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<form method="post"><input name="login"><input name="password" type="password"><button>Sign in</button></form><!-- prompt: ${details.prompt.name} -->`);
    return;
  }
  const body = await new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(new URLSearchParams(data)));
  });
  const login = body.get('login');
  if (!USERS[login]) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end('unknown user');
    return;
  }
  const { params, prompt } = details;
  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  // Consent: grant what the prompt says is missing, to the existing grant if there is one.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const account = details.session.accountId;
  grantsOf.set(account, [...new Set([...(grantsOf.get(account) || []), grantId])]);
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

// Test-only: POST /__test/revoke?account=<user> revokes every grant of that user.
async function revoke(req, res) {
  const account = new URL(req.url, issuer).searchParams.get('account');
  let n = 0;
  for (const id of grantsOf.get(account) || []) {
    const grant = await provider.Grant.find(id);
    if (grant) {
      await grant.destroy();
      await provider.RefreshToken.revokeByGrantId(id);
      n += 1;
    }
  }
  grantsOf.delete(account);
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ revoked: n }));
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'POST' && req.url.startsWith('/__test/revoke')) {
    revoke(req, res).catch((e) => { res.writeHead(500); res.end(String(e)); });
    return;
  }
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e));
    });
    return;
  }
  callback(req, res);
});

provider.on('server_error', (ctx, err) => console.error('op server_error', err));
process.stdout.write(`${JSON.stringify({ issuer, port: server.address().port })}\n`);
