//! The minimal Rust echo backend: a stateless 2026-07-28 MCP server over Streamable HTTP that
//! answers `server/discover`, `tools/list` and `tools/call` (echo) with JSON bodies. As lean as
//! a server can be, so the benchmark measures the gateway, not the backend.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = msg.get("id").cloned();
    let result = match msg.get("method").and_then(Value::as_str) {
        Some("server/discover") => {
            json!({"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"bench-echo","version":"1"},"ttlMs":0,"cacheScope":"public"})
        }
        Some("tools/list") => {
            json!({"resultType":"complete","tools":[{"name":"echo","description":"echo","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}}],"ttlMs":0,"cacheScope":"public"})
        }
        Some("tools/call") => {
            let text = msg
                .pointer("/params/arguments/text")
                .cloned()
                .unwrap_or(Value::Null);
            json!({"resultType":"complete","content":[{"type":"text","text":text}]})
        }
        _ => {
            if id.is_none() {
                return Ok(Response::builder()
                    .status(202)
                    .body(Full::new(Bytes::new()))
                    .expect("response"));
            }
            let out = json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"method not found"}});
            return Ok(json_response(&out));
        }
    };
    Ok(json_response(
        &json!({"jsonrpc":"2.0","id":id,"result":result}),
    ))
}

fn json_response(v: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).expect("json"))))
        .expect("response")
}

/// Starts the echo backend on an ephemeral loopback port.
pub async fn start() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    Ok(addr)
}
