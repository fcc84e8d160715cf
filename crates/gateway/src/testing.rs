//! An in-process gateway for tests that need no process: the real router, snapshot, table and
//! backends, with the conformance fixture as a real Streamable HTTP member on loopback.
//! Requests go through the router as `tower` services, so a test runs in milliseconds.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use gatehouse_testkit::{Era, HttpFixture, HttpOptions};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::Gateway;
use crate::seal::Keyring;

/// A gateway fronting the fixture at `/mcp` (virtual server `v`, member `fx`).
pub struct Harness {
    pub gw: Arc<Gateway>,
    _fixture: HttpFixture,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts the fixture and a gateway in front of it, under `policy` (Cedar) when given.
    pub async fn start(policy: Option<&str>) -> Harness {
        let fixture = HttpFixture::start(
            "127.0.0.1:0".parse().unwrap(),
            &HttpOptions {
                era: Era::Both,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = format!(
            "servers:\n  - name: fx\n    url: {}\nvirtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: fx\n",
            fixture.url
        );
        if let Some(p) = policy {
            std::fs::write(dir.path().join("p.cedar"), p).unwrap();
            yaml.push_str("policies:\n  engine: cedar\n  paths: [p.cedar]\n");
        }
        let path = dir.path().join("gatehouse.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let config = gatehouse_config::load_file(&path).unwrap();
        let policies = crate::authz::load(&config).await.unwrap();
        let telemetry =
            gatehouse_telemetry::Telemetry::metrics_only(gatehouse_telemetry::Metrics::new());
        let gw = crate::GatewayParts {
            config,
            keys: Keyring::ephemeral(),
            listen: "127.0.0.1:8080".parse().unwrap(),
            vault: None,
            revocations: None,
            policies,
            audit: None,
            telemetry,
            runtimes: Arc::new(gatehouse_runtime::Runtimes::without_helper()),
            stored: Default::default(),
        }
        .build()
        .unwrap();
        Harness {
            gw,
            _fixture: fixture,
            _dir: dir,
        }
    }

    /// POSTs `body` to `/mcp` with `headers`; the status, headers and the JSON answer (the
    /// last event of an SSE answer).
    pub async fn post(
        &self,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::post("/mcp")
            .header("host", "127.0.0.1:8080")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .gw
            .router()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let value = if text.starts_with('{') {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        } else {
            text.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .next_back()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or(Value::Null)
        };
        (parts.status, parts.headers, value)
    }

    /// A 2026-07-28 request with correct headers and `caps`.
    pub async fn modern(
        &self,
        id: i64,
        method: &str,
        mut params: Value,
        caps: Value,
    ) -> (StatusCode, Value) {
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":caps});
        let name = ["name", "uri", "taskId"]
            .iter()
            .find_map(|k| params.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        let mut headers = vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ];
        if let Some(n) = name.as_deref() {
            headers.push(("mcp-name", n));
        }
        let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        let (status, _, v) = self.post(&headers, &body).await;
        (status, v)
    }
}
