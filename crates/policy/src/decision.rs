//! What a decision point answers.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// The answer to one [`crate::PolicyRequest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Allowed or denied.
    pub allowed: bool,
    /// The policies that decided: the permits that matched an allowed request, the forbids
    /// that matched a denied one; empty for a default deny.
    pub policies: Vec<String>,
    /// Why a request was denied when no policy says so (default deny, an evaluation error,
    /// a time limit, arguments too large).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the deciding policies ask of the rest of the pipeline (for example, redact an
    /// argument in the audit record).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<Obligation>,
    /// The content hash of the policy set that decided.
    pub version: Arc<str>,
    /// The engine (`cedar`, `rego`, `http`).
    pub engine: &'static str,
    /// How long deciding took.
    #[serde(serialize_with = "micros")]
    pub latency: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Something a deciding policy requires besides the yes or no.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Obligation {
    /// What to do: `redact` (leave an argument out of audit records) is the one Gatehouse
    /// acts on; others are carried to the decision log.
    pub kind: String,
    /// What to do it to (for `redact`: an argument name).
    pub target: String,
}

/// What an engine says, before the policy set adds its version and timing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// Allowed or denied.
    pub allowed: bool,
    /// Deciding policies.
    pub policies: Vec<String>,
    /// Why, for denials no policy explains.
    pub reason: Option<String>,
    /// Obligations of the deciding policies.
    pub obligations: Vec<Obligation>,
}

impl Verdict {
    /// A denial with a reason and no deciding policy.
    pub fn deny(reason: impl Into<String>) -> Verdict {
        Verdict {
            allowed: false,
            reason: Some(reason.into()),
            ..Verdict::default()
        }
    }
}
