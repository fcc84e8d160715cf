//! Inbound identity end to end, against a real OpenID Provider (node-oidc-provider): the
//! resource-server challenge and metadata, user and workload tokens, session binding, and every
//! kind of bad token. Tokens with bad claims are forged with the OP's own signing key (the test
//! generated it), so only the claim under test is wrong.

mod common;

use std::time::Duration;

use common::idp::{Op, bearer_client, public_pem, rsa_key};
use common::tokens::{AUDIENCE, call_with, challenge, config, echo_call, forge, now};
use common::{Gatehouse, Legacy, modern, post, write_config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn start(op_issuer: &str, extra_vs: &str) -> (Gatehouse, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config(op_issuer, extra_vs));
    (Gatehouse::start(&["--config", path.to_str().unwrap()]), dir)
}

fn good_claims(issuer: &str) -> Value {
    json!({"iss": issuer, "sub": "alice", "aud": AUDIENCE, "exp": now() + 300, "iat": now(),
           "scope": "mcp:tools"})
}

#[tokio::test]
async fn user_tokens_from_the_idp_reach_tools_and_a_missing_token_gets_the_challenge() {
    let op = Op::start();
    let (gw, _dir) = start(&op.issuer, "");

    // No token: 401 with the RFC 9728 pointer, and the metadata names the IdP.
    let (status, headers, _) = call_with(&gw, &[]).await;
    assert_eq!(status, 401);
    let ch = challenge(&headers);
    assert!(ch.starts_with("Bearer resource_metadata=\""), "{ch}");
    assert!(ch.contains("scope=\"mcp:tools\""), "{ch}");
    let metadata_url = ch.split('"').nth(1).unwrap();
    assert!(metadata_url.ends_with("/.well-known/oauth-protected-resource/mcp"));
    let meta: Value = reqwest::get(metadata_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["resource"], AUDIENCE);
    assert_eq!(meta["authorization_servers"], json!([op.issuer]));
    assert_eq!(meta["scopes_supported"], json!(["mcp:tools", "jira:write"]));
    // The root well-known URL serves the only protected endpoint.
    let root: Value = reqwest::get(gw.url("/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root, meta);

    // A real user token (authorization code + PKCE at the OP, resource = this endpoint).
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let auth = format!("Bearer {alice}");
    let (status, _, body) = call_with(&gw, &[("authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "hi");
    let (_, list) = modern(
        &bearer_client(&alice),
        &gw.url("/mcp"),
        9,
        "tools/list",
        json!({}),
    )
    .await;
    assert_eq!(
        list["result"]["cacheScope"], "private",
        "authenticated results must not be shared between users: {list}"
    );

    // The handshake era with the same token; the session is bound to alice.
    let session = Legacy::connect_with(bearer_client(&alice), &gw.url("/mcp")).await;
    assert_eq!(session.echo(2, "legacy").await, "legacy");
    let bob = op.user_token("bob", AUDIENCE, "mcp:tools").await;
    let stolen = Legacy {
        url: session.url.clone(),
        session: session.session.clone(),
        http: bearer_client(&bob),
    };
    let (status, _) = stolen.request(3, "tools/list", json!({})).await;
    assert_eq!(status, 404, "another user's session id must be unknown");

    // A workload: a client-credentials token from the same IdP.
    let svc = op
        .client_token("billing-service", "billing-secret", AUDIENCE, "mcp:tools")
        .await;
    let (s, v) = modern(
        &bearer_client(&svc),
        &gw.url("/mcp"),
        4,
        "tools/list",
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(!gw.logged(&alice), "a token must never be logged");
}

#[tokio::test]
async fn each_user_gets_their_own_stdio_server_process() {
    let op = Op::start();
    let (gw, _dir) = start(&op.issuer, "");
    let pid = gw.child.id();
    for user in ["alice", "bob", "alice"] {
        let token = op.user_token(user, AUDIENCE, "mcp:tools").await;
        let (s, _, v) = call_with(&gw, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(
        common::children(pid).len(),
        2,
        "one demo process for alice and one for bob"
    );
}

#[tokio::test]
async fn step_up_is_asked_only_of_callers_who_can_see_the_tool() {
    let op = Op::start();
    let (gw, _dir) = start(&op.issuer, "");
    // Alice has mcp:tools but not jira:write, which the demo's `add` needs.
    let alice = op.user_token("alice", AUDIENCE, "mcp:tools").await;
    let auth = format!("Bearer {alice}");
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let (status, headers, v) = post(
        &common::client(),
        &gw.url("/mcp"),
        &[
            ("authorization", &auth),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "add"),
        ],
        &body,
    )
    .await;
    assert_eq!(status, 403, "{v}");
    let ch = challenge(&headers);
    assert!(ch.contains("error=\"insufficient_scope\""), "{ch}");
    assert!(ch.contains("jira:write"), "{ch}");
    // An unknown tool stays an unknown tool (no scope hint about what exists).
    let mut unknown = body.clone();
    unknown["params"]["name"] = json!("no_such_tool");
    let (status, _, v) = post(
        &common::client(),
        &gw.url("/mcp"),
        &[
            ("authorization", &auth),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "no_such_tool"),
        ],
        &unknown,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool"),
        "{v}"
    );
    // With the scope, the call goes through.
    let writer = op
        .user_token("alice", AUDIENCE, "mcp:tools jira:write")
        .await;
    let (s, v) = modern(
        &bearer_client(&writer),
        &gw.url("/mcp"),
        2,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains('3'),
        "{v}"
    );
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_invalid_token_and_a_logged_reason() {
    let op = Op::start();
    let other_vs = "  - name: other\n    path: /other\n    include: [{ server: demo }]\n    auth:\n      issuer: ISSUER\n      audience: https://gatehouse.test/other\n";
    let (gw, _dir) = start(&op.issuer, &other_vs.replace("ISSUER", &op.issuer));
    let key = &op.key_pem;
    // The OP's key id is op-key-1.
    let kid = Some("op-key-1");
    let iss = op.issuer.as_str();
    let valid = forge(key, kid, good_claims(iss));
    let (s, _, v) = call_with(&gw, &[("authorization", &format!("Bearer {valid}"))]).await;
    assert_eq!(
        s, 200,
        "the forging key is the OP's, so a correct token passes: {v}"
    );

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good_claims(iss);
        f(&mut c);
        forge(key, kid, c)
    };
    let other_key = rsa_key(tempfile::tempdir().unwrap().keep().as_path(), "other.pem");
    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &h,
            &good_claims(iss),
            &EncodingKey::from_secret(&public_pem(key)),
        )
        .unwrap()
    };
    let alg_none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","kid":"op-key-1"}"#),
            b64.encode(good_claims(iss).to_string())
        )
    };
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims = good_claims(iss);
        claims["sub"] = json!("admin");
        format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 600)),
            "expired",
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now() + 600)),
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
            "wrong_issuer",
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("https://elsewhere.test")),
            "wrong_audience",
        ),
        (
            "token for another virtual server",
            with(&|c| c["aud"] = json!("https://gatehouse.test/other")),
            "wrong_audience",
        ),
        (
            "missing kid",
            forge(key, None, good_claims(iss)),
            "missing_kid",
        ),
        (
            "unknown kid",
            forge(&other_key, Some("rotated-away"), good_claims(iss)),
            "unknown_kid",
        ),
        (
            "signed by another key",
            forge(&other_key, kid, good_claims(iss)),
            "bad_signature",
        ),
        ("alg none", alg_none, "algorithm_not_allowed"),
        (
            "HS256 with the RSA public key",
            hs256_with_public_key,
            "algorithm_not_allowed",
        ),
        ("tampered payload", tampered, "bad_signature"),
        (
            "oversized",
            format!("{}.{}.x", "a".repeat(9000), "b".repeat(9000)),
            "oversized_token",
        ),
        (
            "opaque without introspection",
            "opaque-token-value".into(),
            "malformed_token",
        ),
    ];
    for (what, token, reason) in cases {
        let (status, headers, body) =
            call_with(&gw, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(status, 401, "{what}: {body}");
        let ch = challenge(&headers);
        assert!(ch.contains("error=\"invalid_token\""), "{what}: {ch}");
        assert!(
            !body.to_string().contains(&token[..token.len().min(40)]),
            "{what}: the token is echoed"
        );
        assert!(
            common::eventually(Duration::from_secs(5), || gw
                .logged(&format!("reason=\"{reason}\""))
                || gw.logged(&format!("reason={reason}")))
            .await,
            "{what}: the log names the reason {reason}"
        );
    }
    // Clock skew: a token that expired 30 s ago is still accepted (default tolerance 60 s).
    let skewed = with(&|c| c["exp"] = json!(now() - 30));
    let (s, _, v) = call_with(&gw, &[("authorization", &format!("Bearer {skewed}"))]).await;
    assert_eq!(s, 200, "within the clock-skew tolerance: {v}");
    // A token in the query string is refused even when it is valid.
    let url = format!("{}?access_token={valid}", gw.url("/mcp"));
    let (status, headers, _) = post(
        &common::client(),
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        &echo_call(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(challenge(&headers).contains("invalid_request"));
    // Not a Bearer header.
    let (status, _, _) = call_with(&gw, &[("authorization", "Basic YWxpY2U6cHc=")]).await;
    assert_eq!(status, 401);
}

/// `clock_skew` (default 60 s) covers `iat` and `nbf` as it covers `exp`: a token issued a
/// year in the future, or valid only ten minutes from now, is refused with its own reason
/// code, in the log and in the journal; within the tolerance both pass. Signed with the OP's
/// key, so only the claim under test is wrong.
#[tokio::test]
async fn tokens_issued_or_valid_only_in_the_future_are_refused_beyond_the_clock_skew() {
    let op = Op::start();
    let (gw, _dir) = start(&op.issuer, "");
    let iss = op.issuer.as_str();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good_claims(iss);
        f(&mut c);
        forge(&op.key_pem, Some("op-key-1"), c)
    };
    let year = 365 * 24 * 3600;
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (
            "issued a year in the future",
            with(&|c| {
                c["iat"] = json!(now() + year);
                c["exp"] = json!(now() + year + 300);
            }),
            401,
            Some("issued_in_future"),
        ),
        (
            "issued ten minutes in the future",
            with(&|c| c["iat"] = json!(now() + 600)),
            401,
            Some("issued_in_future"),
        ),
        (
            "issued 30 s ahead (a clock within the tolerance)",
            with(&|c| c["iat"] = json!(now() + 30)),
            200,
            None,
        ),
        (
            "valid from ten minutes from now",
            with(&|c| c["nbf"] = json!(now() + 600)),
            401,
            Some("not_yet_valid"),
        ),
        (
            "valid from 30 s from now (within the tolerance)",
            with(&|c| c["nbf"] = json!(now() + 30)),
            200,
            None,
        ),
    ];
    for (what, token, expected, reason) in cases {
        let (status, headers, body) =
            call_with(&gw, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(status, expected, "{what}: {body}");
        if let Some(reason) = reason {
            assert!(
                challenge(&headers).contains("error=\"invalid_token\""),
                "{what}"
            );
            assert!(
                common::eventually(Duration::from_secs(5), || gw
                    .logged(&format!("reason={reason}"))
                    || gw.logged(&format!("reason=\"{reason}\"")))
                .await,
                "{what}: the log names the reason {reason}"
            );
        }
    }
    // The journal records the refusal under its code.
    let audit = gw.data_dir.path().join("audit");
    let recorded = common::eventually(Duration::from_secs(5), || {
        std::fs::read_dir(&audit)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .flat_map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap();
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .collect::<Vec<_>>()
            })
            .any(|e| e["type"] == "auth.failure" && e["reason"] == "issued_in_future")
    })
    .await;
    assert!(
        recorded,
        "an auth.failure event with reason issued_in_future"
    );
}

#[tokio::test]
async fn an_unreachable_idp_gives_503_until_keys_load_and_cached_keys_survive_an_outage() {
    // Cold start with the IdP down: the gateway starts and answers 503 with Retry-After.
    let dead = format!("http://127.0.0.1:{}", common::idp::free_port());
    let (gw, _dir) = start(&dead, "");
    let key = rsa_key(_dir.path(), "k.pem");
    let token = forge(&key, Some("op-key-1"), good_claims(&dead));
    let (status, headers, body) =
        call_with(&gw, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.get("retry-after").is_some());
    assert!(
        gw.logged("identity provider keys not loaded yet") || gw.logged("cannot load signing keys")
    );
    drop(gw);

    // Warm: keys cached, then the IdP goes away; a token never seen before still validates.
    let mut op = Op::start();
    let (gw, _dir) = start(&op.issuer, "");
    let first = forge(&op.key_pem, Some("op-key-1"), good_claims(&op.issuer));
    let (s, _, _) = call_with(&gw, &[("authorization", &format!("Bearer {first}"))]).await;
    assert_eq!(s, 200);
    let mut fresh_claims = good_claims(&op.issuer);
    fresh_claims["sub"] = json!("bob");
    let fresh = forge(&op.key_pem, Some("op-key-1"), fresh_claims);
    op.proc.kill();
    let (s, _, v) = call_with(&gw, &[("authorization", &format!("Bearer {fresh}"))]).await;
    assert_eq!(
        s, 200,
        "cached keys keep working while the IdP is down: {v}"
    );
}

#[tokio::test]
async fn unauthenticated_endpoints_are_refused_on_non_loopback_listeners_without_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["up", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without authentication") && err.contains("--insecure"),
        "{err}"
    );
}
