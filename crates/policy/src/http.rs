//! An external OPA, asked over its REST data API: `POST <url>/v1/data/gatehouse` with
//! `{"input": <request>}`; the answer's `result.allow` decides, `result.decided_by` and
//! `result.obligations` are read as in process. Anything else — unreachable, slow, a non-200,
//! a malformed answer — denies with the reason.

use std::time::Duration;

use serde::Deserialize;

use crate::PolicyError;
use crate::decision::{Obligation, Verdict};
use crate::request::PolicyRequest;

/// The client of one OPA.
#[derive(Debug)]
pub struct HttpEngine {
    endpoint: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: Option<PackageDocument>,
}

#[derive(Deserialize)]
struct PackageDocument {
    #[serde(default)]
    allow: Option<serde_json::Value>,
    #[serde(default)]
    decided_by: Vec<String>,
    #[serde(default)]
    obligations: Vec<Obligation>,
}

impl HttpEngine {
    /// A client for the OPA at `base` with a per-decision `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<HttpEngine, PolicyError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| PolicyError::Http(e.to_string()))?;
        Ok(HttpEngine {
            endpoint: format!("{}/v1/data/gatehouse", base.trim_end_matches('/')),
            client,
        })
    }

    /// Asks the OPA.
    pub async fn decide(&self, req: &PolicyRequest) -> Verdict {
        let sent = self
            .client
            .post(&self.endpoint)
            .json(&serde_json::json!({ "input": req }))
            .send()
            .await;
        let response = match sent {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                return Verdict::deny(format!(
                    "the policy server answered HTTP {} at {}",
                    r.status(),
                    self.endpoint
                ));
            }
            Err(e) => {
                return Verdict::deny(format!(
                    "the policy server at {} is unavailable: {e}",
                    self.endpoint
                ));
            }
        };
        let answer: Answer = match response.json().await {
            Ok(a) => a,
            Err(e) => {
                return Verdict::deny(format!("the policy server's answer is malformed: {e}"));
            }
        };
        let Some(doc) = answer.result else {
            return Verdict::deny(
                "the policy server has no package gatehouse (default deny)".to_string(),
            );
        };
        let allowed = doc.allow == Some(serde_json::Value::Bool(true));
        let mut policies = doc.decided_by;
        policies.sort();
        Verdict {
            allowed,
            reason: (!allowed).then(|| "data.gatehouse.allow is not true (default deny)".into()),
            policies,
            obligations: if allowed { doc.obligations } else { Vec::new() },
        }
    }
}
