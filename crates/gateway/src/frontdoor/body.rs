//! Reading a request body within its bounds.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use gatehouse_wire::codes;

use super::request::{Refusal, RequestCtx};

/// The body of a request, or the refusal when it exceeds `gateway.max_body_bytes`.
pub(super) async fn read(cx: &RequestCtx, body: Body) -> Result<Bytes, Refusal> {
    let limit = cx.gw.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        tracing::warn!(request_id = %cx.request_id, limit, "request body too large");
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::INVALID_REQUEST,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    })
}
