//! Outbound credentials end to end: what a downstream MCP API (official TypeScript SDK, itself
//! an OAuth resource server) sees when a user calls it through Gatehouse. Tokens come from a
//! real OpenID Provider (node-oidc-provider) — token exchange, client credentials, an
//! Entra-shaped on-behalf-of grant, and per-user authorization code + PKCE. The caller's own
//! token must never reach the downstream API.

mod common;

use common::idp::{Downstream, Op, bearer_client, free_port};
use common::{Gatehouse, modern, write_config};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://gatehouse.test/mcp";

fn config(op: &Op, downstream: &Downstream, credentials: &str) -> String {
    format!(
        r#"servers:
  - name: api
    url: {url}
    credentials:
{credentials}
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: api }}]
    auth:
      issuer: {issuer}
      audience: {AUDIENCE}
"#,
        url = downstream.url,
        issuer = op.issuer,
    )
}

fn start(yaml: &str, args: &[&str]) -> (Gatehouse, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), yaml);
    let mut all = vec!["--config", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let gw = Gatehouse::start_full(
        &all,
        &[("GH_TEST_SECRET", "gatehouse-secret")],
        tempfile::tempdir().unwrap(),
    );
    (gw, dir)
}

async fn whoami(gw: &Gatehouse, token: &str) -> (u16, Value) {
    modern(
        &bearer_client(token),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "whoami", "arguments": {}}),
    )
    .await
}

fn claims(reply: &Value) -> Value {
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no result: {reply}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn token_exchange_gives_the_downstream_the_user_with_gatehouse_as_actor_never_the_inbound_token()
 {
    let op = Op::start();
    let api = Downstream::start(&op.issuer);
    let creds = format!(
        "      type: token_exchange\n      issuer: {}\n      client_id: gatehouse\n      client_secret: env:GH_TEST_SECRET\n      resource: {}\n      scopes: [downstream:read]\n      actor_token: true\n",
        op.issuer, api.url
    );
    let (gw, _dir) = start(&config(&op, &api, &creds), &[]);
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(status, 200, "{reply}");
    let seen = claims(&reply);
    assert_eq!(seen["sub"], "alice", "{seen}");
    assert_eq!(
        seen["aud"],
        api.url.as_str(),
        "the token is for the downstream API"
    );
    assert_eq!(
        seen["act"]["sub"], "gatehouse",
        "Gatehouse is the actor: {seen}"
    );
    assert_eq!(seen["scope"], "downstream:read");
    let inbound_exp = {
        use base64::Engine;
        let payload = alice.split('.').nth(1).unwrap();
        let v: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        v["exp"].as_i64().unwrap()
    };
    // The OP caps the exchanged token at the subject token's expiry (to its 1 s clock).
    assert!(
        seen["exp"].as_i64().unwrap() <= inbound_exp + 1,
        "never longer-lived than the inbound token"
    );
    // Lists are per user when the server sees each user: bob's has no update_issue, alice's has.
    let tools = |token: String| {
        let gw = &gw;
        async move {
            let (_, v) = modern(
                &bearer_client(&token),
                &gw.url("/mcp"),
                3,
                "tools/list",
                json!({}),
            )
            .await;
            common::tool_names(&v)
        }
    };
    let bob = op.user_token("bob", AUDIENCE, "mcp:tools").await;
    assert!(
        tools(alice.clone())
            .await
            .contains(&"update_issue".to_string())
    );
    assert!(
        !tools(bob.clone())
            .await
            .contains(&"update_issue".to_string())
    );
    assert!(
        tools(alice.clone())
            .await
            .contains(&"update_issue".to_string())
    );
    // A second call reuses the cached exchanged token: still alice, still works.
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(status, 200);
    assert_eq!(claims(&reply)["sub"], "alice");

    let headers = api.seen().await;
    assert!(!headers.is_empty());
    assert!(
        headers.iter().all(|h| !h.contains(&alice)),
        "the caller's own token reached the downstream API"
    );
    // Exchanged tokens are secrets too: none appears in the gateway's log.
    for h in &headers {
        let token = h.trim_start_matches("Bearer ");
        assert!(!gw.logged(token), "an exchanged token was logged");
    }
    assert!(!gw.logged(&alice));
}

#[tokio::test]
async fn each_user_gets_their_own_upstream_session_at_a_session_binding_server() {
    let op = Op::start();
    let api = Downstream::start_with_sessions(&op.issuer);
    let creds = format!(
        "      type: token_exchange\n      issuer: {}\n      client_id: gatehouse\n      client_secret: env:GH_TEST_SECRET\n      resource: {}\n",
        op.issuer, api.url
    );
    let (gw, _dir) = start(&config(&op, &api, &creds), &[]);
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let bob = op.user_token("bob", AUDIENCE, "mcp:tools").await;
    // Stateless clients; the server only speaks the 2025 era, so the gateway holds upstream
    // sessions for them: one per user, each opened with that user's exchanged token.
    for (token, sub) in [
        (&alice, "alice"),
        (&bob, "bob"),
        (&alice, "alice"),
        (&bob, "bob"),
    ] {
        let (status, reply) = whoami(&gw, token).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(claims(&reply)["sub"], sub, "{reply}");
    }
}

#[tokio::test]
async fn a_dead_token_endpoint_fails_the_call_clearly_without_falling_back_to_passthrough() {
    let op = Op::start();
    let api = Downstream::start(&op.issuer);
    let creds = format!(
        "      type: token_exchange\n      token_url: http://127.0.0.1:{}/token\n      client_id: gatehouse\n      client_secret: env:GH_TEST_SECRET\n      resource: {}\n",
        free_port(),
        api.url
    );
    let (gw, _dir) = start(&config(&op, &api, &creds), &[]);
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let (_, reply) = whoami(&gw, &alice).await;
    let message = reply["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"));
    assert!(
        message.contains("token endpoint") && message.contains("unreachable"),
        "{message}"
    );
    // The client gets a stable message with the request id; where the endpoint is (and what
    // the connection error said) is for the log only.
    assert!(
        !message.contains("127.0.0.1") && !message.contains("refused"),
        "{message}"
    );
    assert!(reply["error"]["data"]["requestId"].is_string(), "{reply}");
    assert!(
        api.seen().await.iter().all(|h| !h.contains(&alice)),
        "no fallback to passthrough"
    );
}

#[tokio::test]
async fn client_credentials_and_entra_style_on_behalf_of_reach_the_downstream() {
    let op = Op::start();
    let api = Downstream::start(&op.issuer);
    let cc = format!(
        "      type: client_credentials\n      issuer: {}\n      client_id: gatehouse\n      client_secret: env:GH_TEST_SECRET\n      resource: {}\n      scopes: [downstream:read]\n",
        op.issuer, api.url
    );
    let (gw, _dir) = start(&config(&op, &api, &cc), &[]);
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(status, 200, "{reply}");
    let seen = claims(&reply);
    assert_eq!(
        seen["sub"], "gatehouse",
        "a workload token names Gatehouse: {seen}"
    );
    assert_eq!(seen["aud"], api.url.as_str());
    drop(gw);

    // On-behalf-of, shaped like Entra's (jwt-bearer grant, requested_token_use=on_behalf_of,
    // scope <resource>/.default), served by the test OP because Entra cannot run here.
    let obo = format!(
        "      type: entra_obo\n      token_url: {}/token\n      client_id: gatehouse\n      client_secret: env:GH_TEST_SECRET\n      scopes: [\"{}/.default\"]\n",
        op.issuer, api.url
    );
    let (gw, _dir) = start(&config(&op, &api, &obo), &[]);
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(status, 200, "{reply}");
    let seen = claims(&reply);
    assert_eq!(seen["sub"], "alice", "{seen}");
    assert_eq!(seen["aud"], api.url.as_str());
    assert!(api.seen().await.iter().all(|h| !h.contains(&alice)));
}

#[tokio::test]
async fn a_static_secret_from_the_environment_reaches_a_legacy_api() {
    let op = Op::start();
    let api = Downstream::start_static("legacy-api-key-123");
    let creds = "      type: static_secret\n      secret: env:GH_API_KEY\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(&op, &api, creds));
    let gw = Gatehouse::start_full(
        &["--config", path.to_str().unwrap()],
        &[("GH_API_KEY", "legacy-api-key-123")],
        tempfile::tempdir().unwrap(),
    );
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(claims(&reply)["api_key"], true);
    assert!(!gw.logged("legacy-api-key-123"), "secrets are never logged");
}

#[tokio::test]
async fn a_legacy_http_sse_server_gets_the_static_secret_on_its_stream_and_every_message() {
    let op = Op::start();
    let api = Downstream::start_static_sse("sse-api-key-456");
    let creds = "      type: static_secret\n      secret: env:GH_API_KEY\n";
    let yaml = config(&op, &api, creds).replace(
        &format!("    url: {}\n", api.url),
        &format!("    url: {}\n    transport: sse\n", api.url),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &yaml);
    let gw = Gatehouse::start_full(
        &["--config", path.to_str().unwrap()],
        &[("GH_API_KEY", "sse-api-key-456")],
        tempfile::tempdir().unwrap(),
    );
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(claims(&reply)["api_key"], true);
    let seen = api.seen().await;
    assert!(
        seen.len() >= 3,
        "the GET stream and the POSTed messages: {seen:?}"
    );
    assert!(
        seen.iter().all(|h| h == "Bearer sse-api-key-456"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn user_oauth_asks_the_user_to_authorize_once_then_sends_their_own_token() {
    user_oauth_flow(None).await;
}

/// The same flow with the vault in PostgreSQL (the real server on this machine).
#[tokio::test]
async fn user_oauth_keeps_refresh_tokens_in_postgres_too() {
    let db = common::PostgresDb::create("gatehouse_vault");
    user_oauth_flow(Some(&db.url)).await;
}

/// A gateway fronting the downstream API with `user_oauth` credentials, on a port fixed in
/// advance (the redirect URI is registered at the OP before the gateway starts).
struct UserOauthSetup {
    op: Op,
    api: Downstream,
    callback: String,
    client_id: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl UserOauthSetup {
    async fn new(database_url: Option<&str>) -> UserOauthSetup {
        let op = Op::start();
        let api = Downstream::start(&op.issuer);
        let port = free_port();
        let callback = format!("http://127.0.0.1:{port}/oauth/callback");
        let (client_id, secret) = op
            .register(&callback, &["authorization_code", "refresh_token"])
            .await;
        let creds = format!(
            "      type: user_oauth\n      issuer: {}\n      client_id: {client_id}\n      client_secret: env:GH_USER_OAUTH_SECRET\n      resource: {}\n      scopes: [openid, offline_access, downstream:read]\n",
            op.issuer, api.url
        );
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &config(&op, &api, &creds));
        let mut args = vec![
            "--config".to_string(),
            path.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        if let Some(url) = database_url {
            args.extend(["--database-url".into(), url.to_string()]);
        }
        UserOauthSetup {
            op,
            api,
            callback,
            client_id,
            args,
            env: vec![("GH_USER_OAUTH_SECRET".into(), secret)],
            _dir: dir,
        }
    }

    fn start(&self, data_dir: tempfile::TempDir) -> Gatehouse {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Gatehouse::start_full(&args, &env, data_dir)
    }

    /// Stops `gw` and starts it again on the same data directory.
    fn restart(&self, mut gw: Gatehouse) -> Gatehouse {
        let data_dir = std::mem::replace(&mut gw.data_dir, tempfile::tempdir().unwrap());
        drop(gw);
        self.start(data_dir)
    }
}

async fn user_oauth_flow(database_url: Option<&str>) {
    let setup = UserOauthSetup::new(database_url).await;
    let UserOauthSetup {
        op,
        api,
        callback,
        client_id,
        ..
    } = &setup;
    let gw = setup.start(tempfile::tempdir().unwrap());
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;

    // First call: the user has not authorized; the answer carries the URL (URL elicitation).
    let (_, reply) = whoami(&gw, &alice).await;
    assert_eq!(reply["error"]["code"], -32042, "{reply}");
    let url = reply["error"]["data"]["elicitations"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_string();
    assert!(
        url.starts_with(&op.issuer) && url.contains("code_challenge="),
        "{url}"
    );
    assert!(
        api.seen().await.is_empty(),
        "nothing reached the API before authorization"
    );

    // The user logs in at the IdP; the browser lands on Gatehouse's callback.
    let back = op.login(&url, "alice").await;
    assert!(back.starts_with(callback.as_str()), "{back}");
    let page = reqwest::get(&back).await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());

    // Now the call goes through with alice's own delegated token.
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(status, 200, "{reply}");
    let seen = claims(&reply);
    assert_eq!(seen["sub"], "alice");
    assert_eq!(seen["aud"], api.url.as_str());
    assert_eq!(seen["client_id"], client_id.as_str());
    assert!(api.seen().await.iter().all(|h| !h.contains(&alice)));

    // The refresh token survives a restart (encrypted in the store), and is never in the log.
    let gw = setup.restart(gw);
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(
        status, 200,
        "after a restart the stored refresh token is used: {reply}"
    );
    assert_eq!(claims(&reply)["sub"], "alice");

    // An administrator revokes alice's consent at the IdP: the stored refresh token stops
    // working, and alice is asked to authorize again (no stale access).
    op.revoke_user("alice").await;
    let gw = setup.restart(gw);
    let (_, reply) = whoami(&gw, &alice).await;
    assert_eq!(
        reply["error"]["code"], -32042,
        "revoked: authorize again: {reply}"
    );
}

#[tokio::test]
async fn gatehouse_login_authorizes_ahead_of_the_first_call() {
    let setup = UserOauthSetup::new(None).await;
    let gw = setup.start(tempfile::tempdir().unwrap());
    let alice = setup.op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let login = || {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args(["login", "api", "--no-browser", "--timeout", "60s", "--url"])
            .arg(gw.url("/mcp"))
            .env("GATEHOUSE_TOKEN", &alice)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let mut child = login().spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "login ended without printing a URL"
        );
        if let Some(u) = line.trim().strip_prefix("http") {
            break format!("http{u}");
        }
    };
    // The user signs in; the browser returns to the gateway.
    let back = setup.op.login(&url, "alice").await;
    assert_eq!(reqwest::get(&back).await.unwrap().status(), 200);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("Authorized"), "{rest}");

    // The first tool call already goes through.
    let (status, reply) = whoami(&gw, &alice).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(claims(&reply)["sub"], "alice");

    // A second login finds the grant; a bad token is refused with a clear message.
    let again = login().output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("Already authorized"));
    let refused = login()
        .env("GATEHOUSE_TOKEN", "not-a-token")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}

/// A 2026-07-28 `tools/call whoami` from a client that can open URLs, with extra params.
async fn whoami_modern_with_url_elicitation(gw: &Gatehouse, token: &str, extra: Value) -> Value {
    let mut params = json!({"name": "whoami", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}}}});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params});
    let (_, _, v) = common::post(
        &bearer_client(token),
        &gw.url("/mcp"),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "whoami"),
        ],
        &body,
    )
    .await;
    v
}

#[tokio::test]
async fn a_2026_client_is_asked_to_authorize_with_an_mrtr_url_elicitation() {
    let setup = UserOauthSetup::new(None).await;
    let gw = setup.start(tempfile::tempdir().unwrap());
    let alice = setup.op.user_token("alice", AUDIENCE, "mcp:tools").await;

    let first = whoami_modern_with_url_elicitation(&gw, &alice, json!({})).await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let request = &first["result"]["inputRequests"]["authorize"];
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["mode"], "url");
    let url = request["params"]["url"].as_str().unwrap();
    let state = first["result"]["requestState"].clone();

    // Declining runs nothing.
    let declined = whoami_modern_with_url_elicitation(
        &gw,
        &alice,
        json!({"requestState": state, "inputResponses": {"authorize": {"action": "decline"}}}),
    )
    .await;
    assert!(
        declined["error"]["message"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{declined}"
    );

    // The user authorizes in the browser, the client retries with the state: the call runs.
    let back = setup.op.login(url, "alice").await;
    assert_eq!(reqwest::get(&back).await.unwrap().status(), 200);
    let done = whoami_modern_with_url_elicitation(
        &gw,
        &alice,
        json!({"requestState": state, "inputResponses": {"authorize": {"action": "accept"}}}),
    )
    .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(claims(&done)["sub"], "alice");

    // The state is bound to alice: bob cannot replay it.
    let bob = setup.op.user_token("bob", AUDIENCE, "mcp:tools").await;
    let replay = whoami_modern_with_url_elicitation(
        &gw,
        &bob,
        json!({"requestState": state, "inputResponses": {"authorize": {"action": "accept"}}}),
    )
    .await;
    assert!(
        replay["error"]["message"]
            .as_str()
            .unwrap()
            .contains("different request"),
        "{replay}"
    );
}

#[tokio::test]
async fn a_stdio_server_gets_its_static_secret_in_the_environment_never_in_argv() {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp/env-server.mjs");
    let yaml = format!(
        "servers:\n  - name: local\n    command: node\n    args: [\"{}\"]\n    credentials:\n      type: static_secret\n      secret: env:GH_STDIO_SECRET\n      env: API_KEY\nvirtual_servers:\n  - name: tools\n    path: /mcp\n    include: [{{ server: local }}]\n",
        script.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &yaml);
    let gw = Gatehouse::start_full(
        &["--config", path.to_str().unwrap()],
        &[("GH_STDIO_SECRET", "stdio-secret-789")],
        tempfile::tempdir().unwrap(),
    );
    let (status, reply) = modern(
        &common::client(),
        &gw.url("/mcp"),
        1,
        "tools/call",
        json!({"name": "env", "arguments": {}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let seen = claims(&reply);
    assert_eq!(seen["api_key"], "stdio-secret-789");
    assert!(
        !seen["argv"].to_string().contains("stdio-secret-789"),
        "{seen}"
    );
    assert!(!gw.logged("stdio-secret-789"));
}
