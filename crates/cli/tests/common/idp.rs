//! The real OpenID Provider (node-oidc-provider, `tests/idp/op.mjs`) and the downstream MCP API
//! (`tests/idp/downstream.mjs`, official TypeScript SDK) the identity tests run against.
//! `scripts/test` installs their npm packages into `tests/idp/node_modules`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::Value;
use sha2::Digest;

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp")
}

/// A node process printing one JSON line when ready; killed on drop.
pub struct NodeProc {
    child: Child,
    pub ready: Value,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeProc {
    fn start(script: &str, args: &[&str]) -> NodeProc {
        let dir = idp_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "tests/idp/node_modules is missing: run scripts/test (it installs the test IdP's npm packages)"
        );
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{script} did not start: {e}: {line:?}"));
        NodeProc { child, ready }
    }

    /// Stops the process (an outage).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test OpenID Provider.
pub struct Op {
    pub proc: NodeProc,
    pub issuer: String,
    pub key_pem: PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh 2048-bit RSA key (PKCS#8 PEM) from openssl.
pub fn rsa_key(dir: &std::path::Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs")
        .success();
    assert!(ok, "openssl genpkey failed");
    path
}

/// The public half of a PEM private key.
pub fn public_pem(private: &std::path::Path) -> Vec<u8> {
    Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(private)
        .output()
        .expect("openssl runs")
        .stdout
}

impl Op {
    pub fn start() -> Op {
        let dir = tempfile::tempdir().unwrap();
        let key = rsa_key(dir.path(), "op.pem");
        let proc = NodeProc::start("op.mjs", &["--key", key.to_str().unwrap()]);
        let issuer = proc.ready["issuer"].as_str().unwrap().to_string();
        Op {
            proc,
            issuer,
            key_pem: key,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A client-credentials token for `resource`.
    pub async fn client_token(
        &self,
        client: &str,
        secret: &str,
        resource: &str,
        scope: &str,
    ) -> String {
        access_token(
            http()
                .post(self.url("/token"))
                .basic_auth(client, Some(secret))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("resource", resource),
                    ("scope", scope),
                ]),
        )
        .await
    }

    /// Logs `user` in at an authorization URL (as a browser would: follow redirects, post the
    /// login form) and returns the final redirect to the client's redirect URI.
    pub async fn login(&self, authorization_url: &str, user: &str) -> String {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut url = authorization_url.to_string();
        for _ in 0..10 {
            let resp = browser.get(&url).send().await.unwrap();
            let status = resp.status();
            if status.is_redirection() {
                let next = resp.headers()["location"].to_str().unwrap().to_string();
                let next = if next.starts_with('/') {
                    self.url(&next)
                } else {
                    next
                };
                if !next.starts_with(&self.issuer) {
                    return next;
                }
                url = next;
                continue;
            }
            assert!(
                status.is_success(),
                "{url}: {status}: {}",
                resp.text().await.unwrap()
            );
            // The login form: post the user.
            let resp = browser
                .post(&url)
                .form(&[("login", user), ("password", "any")])
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_redirection(), "login: {}", resp.status());
            let next = resp.headers()["location"].to_str().unwrap().to_string();
            url = if next.starts_with('/') {
                self.url(&next)
            } else {
                next
            };
        }
        panic!("the authorization flow did not end in a redirect to the client");
    }

    /// A user's access token for `resource` via authorization code + PKCE (client `mcp-client`).
    pub async fn user_token(&self, user: &str, resource: &str, scope: &str) -> String {
        let verifier = B64.encode(rand_bytes());
        let challenge = B64.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let redirect = "http://127.0.0.1/callback";
        let mut auth = url::Url::parse(&self.url("/auth")).unwrap();
        auth.query_pairs_mut()
            .append_pair("client_id", "mcp-client")
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", &format!("openid {scope}"))
            .append_pair("resource", resource)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "s");
        let back = self.login(auth.as_str(), user).await;
        let code = url::Url::parse(&back)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap_or_else(|| panic!("no code in {back}"))
            .1
            .to_string();
        access_token(http().post(self.url("/token")).form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "mcp-client"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
            ("resource", resource),
        ]))
        .await
    }

    /// Registers a confidential client (RFC 7591) and returns (client_id, client_secret).
    pub async fn register(&self, redirect_uri: &str, grant_types: &[&str]) -> (String, String) {
        let r: Value = http()
            .post(self.url("/reg"))
            .json(&serde_json::json!({
                "redirect_uris": [redirect_uri],
                "grant_types": grant_types,
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "openid offline_access downstream:read",
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            r["client_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
                .to_string(),
            r["client_secret"].as_str().unwrap().to_string(),
        )
    }

    /// Revokes every grant of `user` (their refresh tokens stop working).
    pub async fn revoke_user(&self, user: &str) {
        let r = http()
            .post(self.url(&format!("/__test/revoke?account={user}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).unwrap();
    b
}

/// Sends a token request and returns the `access_token` of the response.
async fn access_token(request: reqwest::RequestBuilder) -> String {
    let r: Value = request.send().await.unwrap().json().await.unwrap();
    r["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {r}"))
        .to_string()
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// The downstream MCP API that records what it sees.
pub struct Downstream {
    pub proc: NodeProc,
    pub url: String,
}

impl Downstream {
    /// Accepts tokens from `issuer` with `aud` = its own URL.
    pub fn start(issuer: &str) -> Downstream {
        let proc = NodeProc::start("downstream.mjs", &["--issuer", issuer]);
        let url = proc.ready["url"].as_str().unwrap().to_string();
        Downstream { proc, url }
    }

    /// Like [`Downstream::start`], with 2025-era sessions bound to the user who opened them.
    pub fn start_with_sessions(issuer: &str) -> Downstream {
        let proc = NodeProc::start("downstream.mjs", &["--issuer", issuer, "--sessions"]);
        let url = proc.ready["url"].as_str().unwrap().to_string();
        Downstream { proc, url }
    }

    /// Accepts exactly one static bearer token (a legacy API key).
    pub fn start_static(token: &str) -> Downstream {
        let proc = NodeProc::start("downstream.mjs", &["--static-token", token]);
        let url = proc.ready["url"].as_str().unwrap().to_string();
        Downstream { proc, url }
    }

    /// The same API on the legacy HTTP+SSE transport (`url` is its `/sse` endpoint), accepting
    /// exactly one static bearer token.
    pub fn start_static_sse(token: &str) -> Downstream {
        let proc = NodeProc::start("downstream.mjs", &["--static-token", token, "--sse"]);
        let url = proc.ready["url"].as_str().unwrap().to_string();
        Downstream { proc, url }
    }

    /// Every Authorization header the API received.
    pub async fn seen(&self) -> Vec<String> {
        let base = self.url.trim_end_matches("/mcp").trim_end_matches("/sse");
        http()
            .get(format!("{base}/seen"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A reqwest client that sends `Authorization: Bearer <token>` on every request.
pub fn bearer_client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder()
        .default_headers(h)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A free loopback port (for a gateway whose URL must be known before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
