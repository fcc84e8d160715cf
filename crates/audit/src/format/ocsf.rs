//! OCSF API Activity (class 6003) documents. (Scaffold: the full mapping replaces it.)

use serde_json::{Value, json};

use crate::reader::StoredEvent;

/// The OCSF document of one event.
pub fn document(e: &StoredEvent) -> Value {
    json!({ "class_uid": 6003, "metadata": { "uid": e.id } })
}
