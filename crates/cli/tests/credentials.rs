//! Outbound credentials end to end: what a downstream MCP API (official TypeScript SDK, itself
//! an OAuth resource server) sees when a user calls it through Gatehouse. Tokens come from a
//! real OpenID Provider (node-oidc-provider) — token exchange, client credentials, an
//! Entra-shaped on-behalf-of grant, static secrets (per-user OAuth is in `user_oauth.rs`). The
//! caller's own token must never reach the downstream API.

mod common;

use common::idp::{Downstream, Op, bearer_client, free_port};
use common::outbound::{AUDIENCE, claims, config, start, whoami};
use common::{Gatehouse, modern, write_config};
use serde_json::{Value, json};

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
