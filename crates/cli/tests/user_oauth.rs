//! Per-user delegated OAuth end to end (`user_oauth`): each user authorizes Gatehouse once at
//! a real OpenID Provider (node-oidc-provider, authorization code + PKCE), through the browser
//! flow, `gatehouse login`, or a 2026-07-28 URL elicitation; the downstream API then sees the
//! user's own token, refreshed from the vault (SQLite or PostgreSQL).

mod common;

use common::idp::{Downstream, Op, bearer_client, free_port};
use common::outbound::{AUDIENCE, claims, config, whoami};
use common::{Gatehouse, write_config};
use serde_json::{Value, json};

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
