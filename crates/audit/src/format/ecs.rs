//! Elastic Common Schema documents. (Scaffold: only the fields every layout needs; the full
//! mapping replaces it.)

use serde_json::{Value, json};

use crate::reader::StoredEvent;

/// The ECS document of one event.
pub fn document(e: &StoredEvent) -> Value {
    json!({
        "@timestamp": e.event.time,
        "event": { "id": e.id, "action": e.event.kind.as_str(), "outcome": e.event.outcome.as_str() },
    })
}
