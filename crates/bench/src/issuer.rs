//! A minimal token issuer for the identity benchmark: OIDC discovery, a JWKS with one RS256 key,
//! and a token endpoint that answers every request (token exchange included) with a fresh
//! signed token. It exists to be cheap and always up, so the benchmark measures Gatehouse's
//! validation and credential caching, not an IdP; correctness is tested against a real OpenID
//! Provider in `crates/cli/tests/identity.rs` and `credentials.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// The audience the benchmark's authenticated endpoints expect.
pub const AUDIENCE: &str = "https://bench.gatehouse.test/mcp";
const KID: &str = "bench-key";

/// The running issuer: its URL and signing key.
pub struct Issuer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    key: EncodingKey,
    serial: AtomicU64,
}

impl Issuer {
    /// A fresh RS256 token for `sub`, valid for 10 minutes; each call gives a distinct token.
    pub fn token(&self, sub: &str, aud: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.into());
        let claims = json!({"iss": self.url, "sub": sub, "aud": aud, "iat": now, "exp": now + 600,
            "jti": self.serial.fetch_add(1, Ordering::Relaxed), "scope": "mcp:tools",
            "groups": ["bench-users", "g1", "g2"]});
        jsonwebtoken::encode(&header, &claims, &self.key).expect("signing with a valid key")
    }
}

/// Generates an RSA key (with `openssl`) and serves the issuer on an ephemeral loopback port.
pub async fn start() -> anyhow::Result<Arc<Issuer>> {
    let dir = tempfile::tempdir()?;
    let pem_path = dir.path().join("key.pem");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem_path)
        .stderr(std::process::Stdio::null())
        .status()
        .context("running openssl to generate the benchmark's signing key")?
        .success();
    if !ok {
        bail!("openssl genpkey failed");
    }
    let key = EncodingKey::from_rsa_pem(&std::fs::read(&pem_path)?)?;
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
    jwk.common.key_id = Some(KID.into());
    let jwks = serde_json::to_vec(&JwkSet { keys: vec![jwk] })?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let issuer = Arc::new(Issuer {
        url: format!("http://{addr}"),
        key,
        serial: AtomicU64::new(1),
    });
    let discovery = serde_json::to_vec(&json!({
        "issuer": issuer.url,
        "jwks_uri": format!("{}/jwks", issuer.url),
        "token_endpoint": format!("{}/token", issuer.url),
    }))?;
    let (jwks, discovery) = (Bytes::from(jwks), Bytes::from(discovery));
    let serving = issuer.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (issuer, jwks, discovery) = (serving.clone(), jwks.clone(), discovery.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let body = match req.uri().path() {
                        "/.well-known/openid-configuration" => discovery.clone(),
                        "/jwks" => jwks.clone(),
                        _ => Bytes::from(
                            json!({"access_token": issuer.token("bench-user", "http://downstream.bench"),
                                "token_type": "Bearer", "expires_in": 600,
                                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
                            .to_string(),
                        ),
                    };
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .expect("response"),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // The key file is no longer needed once loaded.
    drop(dir);
    Ok(issuer)
}
