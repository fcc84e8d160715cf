//! Tokens that are not user JWTs: opaque tokens checked by introspection, SPIFFE and
//! Kubernetes workload tokens against their trust bundles, and the listener's own TLS.

mod common;

use std::time::Duration;

use common::idp::{Op, bearer_client, rsa_key};
use common::tokens::{AUDIENCE, call_with, challenge, config, echo_call, forge, now};
use common::{Gatehouse, modern, write_config};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

#[tokio::test]
async fn opaque_tokens_are_checked_by_introspection_at_the_idp() {
    let op = Op::start();
    let audience = "http://opaque.test/mcp";
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"servers:
  - name: demo
    command: {bin}
    args: [demo-server]
virtual_servers:
  - name: tools
    path: /mcp
    include: [{{ server: demo }}]
    auth:
      issuer: {issuer}
      audience: {audience}
      introspection:
        client_id: gatehouse
        client_secret: env:GH_INTROSPECTION_SECRET
"#,
        bin = common::bin().display(),
        issuer = op.issuer
    );
    let path = write_config(dir.path(), &yaml);
    let gw = Gatehouse::start_full(
        &["--config", path.to_str().unwrap()],
        &[("GH_INTROSPECTION_SECRET", "gatehouse-secret")],
        tempfile::tempdir().unwrap(),
    );
    // The OP issues opaque tokens for this resource.
    let opaque = op
        .client_token("billing-service", "billing-secret", audience, "mcp:tools")
        .await;
    assert_eq!(
        opaque.split('.').count(),
        1,
        "expected an opaque token: {opaque}"
    );
    let (s, v) = modern(
        &bearer_client(&opaque),
        &gw.url("/mcp"),
        1,
        "tools/list",
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // A token the IdP does not know is inactive.
    let (status, headers, _) =
        call_with(&gw, &[("authorization", "Bearer made-up-opaque-token")]).await;
    assert_eq!(status, 401);
    assert!(challenge(&headers).contains("invalid_token"));
    assert!(common::eventually(Duration::from_secs(5), || gw.logged("inactive_token")).await);
}

#[tokio::test]
async fn spiffe_and_kubernetes_workload_tokens_are_checked_against_their_trust_bundles() {
    let op = Op::start();
    let dir = tempfile::tempdir().unwrap();
    let spiffe_key = rsa_key(dir.path(), "spiffe.pem");
    let k8s_key = rsa_key(dir.path(), "k8s.pem");
    let bundle = |key: &std::path::Path, kid: &str| {
        let enc = EncodingKey::from_rsa_pem(&std::fs::read(key).unwrap()).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.into());
        serde_json::to_string(&json!({ "keys": [jwk] })).unwrap()
    };
    std::fs::write(
        dir.path().join("spiffe-bundle.json"),
        bundle(&spiffe_key, "svid-1"),
    )
    .unwrap();
    std::fs::write(dir.path().join("k8s-jwks.json"), bundle(&k8s_key, "k8s-1")).unwrap();
    let workloads = "      workloads:\n        - { type: jwt_svid, jwks_file: spiffe-bundle.json, trust_domain: example.org }\n        - { type: kubernetes, issuer: \"https://kubernetes.default.svc\", jwks_file: k8s-jwks.json }\n";
    let path = write_config(
        dir.path(),
        &format!("{}{workloads}", config(&op.issuer, "")),
    );
    let gw = Gatehouse::start(&["--config", path.to_str().unwrap()]);
    let call = |token: String| {
        let gw = &gw;
        async move {
            call_with(gw, &[("authorization", &format!("Bearer {token}"))])
                .await
                .0
        }
    };
    let svid = |sub: &str| {
        forge(
            &spiffe_key,
            Some("svid-1"),
            json!({"sub": sub, "aud": AUDIENCE, "exp": now() + 300, "scope": "mcp:tools"}),
        )
    };
    assert_eq!(
        call(svid("spiffe://example.org/ns/billing/sa/api")).await,
        200
    );
    assert_eq!(
        call(svid("spiffe://evil.example/ns/billing/sa/api")).await,
        401,
        "an ID outside the trust domain"
    );
    assert!(common::eventually(Duration::from_secs(5), || gw.logged("wrong_trust_domain")).await);
    let sa = forge(
        &k8s_key,
        Some("k8s-1"),
        json!({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:billing:api",
               "aud": AUDIENCE, "exp": now() + 300, "scope": "mcp:tools"}),
    );
    assert_eq!(call(sa).await, 200);
    // A workload token signed by the wrong bundle's key is refused.
    let crossed = forge(
        &k8s_key,
        Some("svid-1"),
        json!({"sub": "spiffe://example.org/x", "aud": AUDIENCE, "exp": now() + 300}),
    );
    assert_eq!(call(crossed).await, 401);
}

#[tokio::test]
async fn the_listener_serves_tls_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // A test CA and a server certificate it signed for 127.0.0.1.
    let openssl = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?} failed");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=gatehouse.test",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    std::fs::write(
        dir.path().join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    let yaml = format!(
        "gateway:\n  tls: {{ cert: cert.pem, key: key.pem }}\nservers:\n  - name: demo\n    command: {}\n    args: [demo-server]\nvirtual_servers:\n  - name: demo\n    path: /mcp\n    include: [{{ server: demo }}]\n",
        common::bin().display()
    );
    let path = write_config(dir.path(), &yaml);
    let gw = Gatehouse::start(&["--config", path.to_str().unwrap()]);
    assert!(gw.base.starts_with("https://"), "{}", gw.base);
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap();
    let (s, v) = modern(&https, &gw.url("/mcp"), 1, "tools/list", json!({})).await;
    assert_eq!(s, 200, "{v}");
    // Plain HTTP on the TLS port gets no MCP answer.
    let plain = gw.url("/mcp").replace("https://", "http://");
    let r = common::client()
        .post(&plain)
        .header("content-type", "application/json")
        .body(echo_call().to_string())
        .send()
        .await;
    assert!(r.is_err() || !r.unwrap().status().is_success());

    // A key that does not exist stops the start with the file named.
    let bad = write_config(dir.path(), &yaml.replace("key.pem", "missing.pem"));
    let out = std::process::Command::new(common::bin())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--config",
            bad.to_str().unwrap(),
            "--data-dir",
        ])
        .arg(dir.path().join("data2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway.tls") && err.contains("missing.pem"),
        "{err}"
    );
}
