//! ArcSight Common Event Format lines. (Scaffold: the full mapping replaces it.)

use crate::reader::StoredEvent;

/// The CEF line of one event.
pub fn line(e: &StoredEvent) -> String {
    format!(
        "CEF:0|Gatehouse|Gatehouse|{}|{}|{}|3|externalId={}",
        env!("CARGO_PKG_VERSION"),
        e.event.kind.as_str(),
        e.event.kind.as_str(),
        e.id
    )
}
