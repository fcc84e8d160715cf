//! The admin HTTP listener's routes.

use std::sync::Arc;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

use crate::metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics};

/// Routes of the admin listener: `GET /metrics` (Prometheus text format 0.0.4) and
/// `GET /healthz` (`ok` while the process serves requests). Serve it on its own address
/// (`admin.listen`); it has no authentication.
pub fn admin_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(CONTENT_TYPE, METRICS_CONTENT_TYPE)], metrics.render()) }
            }),
        )
        .route(
            "/healthz",
            get(|| async { ([(CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n") }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let metrics = Metrics::new();
        metrics.policy_decision(true);
        let router = admin_router(metrics);
        let (status, ct, body) = get(router.clone(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        assert!(body.contains("gatehouse_policy_decisions_total{decision=\"allow\"} 1\n"));
        let (status, _, body) = get(router.clone(), "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
        let (status, _, _) = get(router, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
