//! The `http` engine against a stand-in for OPA's REST data API.
//!
//! A mock, and why: no OPA can run here — OPA ships as a binary on GitHub releases, which
//! this machine cannot reach, and the PyPI bindings of its Go engine need Python 3.14. The
//! stand-in implements the documented contract (`POST /v1/data/<package path>` with
//! `{"input": …}` answers `{"result": <package document>}`, or `{}` when the package is
//! undefined) and evaluates the shared matrix's Rego corpus with regorus, so the table of
//! cases must come out exactly as in process. Failure modes (down, slow, 500, malformed,
//! undefined package) must all deny with a reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use gatehouse_config::{DurationSpec, PoliciesConfig, PolicyEngineKind};
use gatehouse_policy::Policies;
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

#[derive(Clone, Copy)]
enum Mode {
    Opa,
    Fail500,
    Malformed,
    Undefined,
    Slow,
}

async fn serve(mode: Mode) -> SocketAddr {
    let rego = std::fs::read_to_string(fixture("matrix/rego/rbac.rego")).unwrap();
    let state = Arc::new((mode, rego));
    let app = axum::Router::new()
        .route(
            "/v1/data/gatehouse",
            post(
                |State(s): State<Arc<(Mode, String)>>, Json(body): Json<Value>| async move {
                    match s.0 {
                        Mode::Fail500 => {
                            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
                                .into_response();
                        }
                        Mode::Malformed => {
                            return (axum::http::StatusCode::OK, "{not json").into_response();
                        }
                        Mode::Undefined => {
                            return (axum::http::StatusCode::OK, "{}").into_response();
                        }
                        Mode::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
                        Mode::Opa => {}
                    }
                    let mut engine = regorus::Engine::new();
                    engine.add_policy("rbac.rego".into(), s.1.clone()).unwrap();
                    engine.set_input(regorus::Value::from(body["input"].clone()));
                    let doc = engine
                        .eval_query("data.gatehouse".into(), false)
                        .unwrap()
                        .result[0]
                        .expressions[0]
                        .value
                        .to_json_str()
                        .unwrap();
                    (axum::http::StatusCode::OK, format!("{{\"result\":{doc}}}")).into_response()
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn config(url: String, timeout: Option<&str>) -> PoliciesConfig {
    PoliciesConfig {
        engine: PolicyEngineKind::Http,
        paths: vec![fixture("matrix/matrix.tests.yaml").display().to_string()],
        url: Some(url),
        timeout: timeout.map(|t| t.parse::<DurationSpec>().unwrap()),
    }
}

#[tokio::test]
async fn an_external_opa_decides_the_shared_matrix_like_the_in_process_engines() {
    let addr = serve(Mode::Opa).await;
    let policies = Policies::compile(&config(format!("http://{addr}"), None)).unwrap();
    let report = policies.run_tests().await.unwrap();
    assert!(report.outcomes.len() >= 19);
    assert_eq!(report.failed(), 0, "{}", report.table());
    let pay = report
        .outcomes
        .iter()
        .find(|o| o.case.name.starts_with("finance pays a small"))
        .unwrap();
    assert_eq!(pay.decision.engine, "http");
    assert_eq!(pay.decision.obligations.len(), 1);
}

#[tokio::test]
async fn every_failure_of_the_policy_server_denies_with_a_reason() {
    let cases = [
        (Mode::Fail500, "answered HTTP 500"),
        (Mode::Malformed, "malformed"),
        (Mode::Undefined, "no package gatehouse"),
        (Mode::Slow, "unavailable"),
    ];
    for (mode, why) in cases {
        let addr = serve(mode).await;
        let policies = Policies::compile(&config(format!("http://{addr}"), Some("200ms"))).unwrap();
        let report = policies.run_tests().await.unwrap();
        for o in &report.outcomes {
            assert!(!o.decision.allowed, "{why}: {} was allowed", o.case.name);
            let reason = o.decision.reason.clone().unwrap_or_default();
            assert!(reason.contains(why), "{why}: {reason}");
        }
    }
    // Nothing listening at all.
    let policies = Policies::compile(&config("http://127.0.0.1:9".into(), Some("200ms"))).unwrap();
    let report = policies.run_tests().await.unwrap();
    assert!(report.outcomes.iter().all(|o| !o.decision.allowed));
    assert!(
        report.outcomes[0]
            .decision
            .reason
            .as_deref()
            .unwrap()
            .contains("unavailable")
    );
}
