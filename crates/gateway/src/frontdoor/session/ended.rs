//! What follows when the gateway ends sessions itself (idle, TTL, a cap) or learns that another
//! process deleted one: the `session.end` audit event and the release of what the session
//! holds outside this process.

use std::sync::Arc;

use gatehouse_audit::{AuditEvent, ClientRecord, EventKind, Outcome};
use serde_json::{Value, json};

use super::Session;
use crate::Gateway;
use crate::snapshot::VirtualServer;

/// Releases sessions returned by [`super::SessionStore::sweep`]: writes a `session.end` event
/// for each one the gateway ended itself, closes its upstream sessions at the members of its
/// virtual server (unless a DELETE on another process already did) and logs the end.
///
/// Subscriptions the session holds (`Session::subscriptions`) are not released here yet; the
/// DELETE path in `stream.rs` shows how (an unsubscribe through dispatch per URI).
pub async fn release_ended(gw: &Gateway, ended: Vec<Arc<Session>>) {
    let snapshot = gw.snapshot();
    for session in ended {
        let Some(reason) = session.end_reason() else {
            continue;
        };
        let vs = snapshot.virtual_servers.get(&session.claims.vs);
        let vs_name = vs.map(|v| v.name.as_str()).unwrap_or_default();
        if reason.by_gateway() {
            if let Some(a) = &gw.audit {
                a.journal()
                    .append_detached(&end_event(&session, vs_name, reason.as_str()));
            }
            tracing::info!(virtual_server = %vs_name, session = %session.audit_digest(), reason = reason.as_str(), "session ended by the gateway");
        }
        // After a DELETE elsewhere, the process that served it closed the upstream sessions.
        if let Some(vs) = vs
            && reason.by_gateway()
        {
            session.close_upstream_sessions(vs).await;
        }
    }
}

impl Session {
    /// Ends the client's own upstream sessions at the members of `vs` (each within the
    /// member's timeout; a member that does not answer holds nothing up).
    pub async fn close_upstream_sessions(&self, vs: &VirtualServer) {
        for m in &vs.members {
            if let Some(up) = self.claims.up.get(&m.server.config.name) {
                let _ = tokio::time::timeout(
                    m.server.backend.timeout(),
                    m.server.backend.close_session(up),
                )
                .await;
            }
        }
    }
}

/// The `session.end` event of a session the gateway ended for `reason`.
fn end_event(session: &Session, vs_name: &str, reason: &str) -> AuditEvent {
    let text = |k: &str| {
        session
            .claims
            .info
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut e = AuditEvent::new(EventKind::SessionEnd, Outcome::Ok);
    e.principal = Some(crate::observe::principal_record(&session.principal));
    e.client = Some(ClientRecord {
        name: text("name"),
        version: text("version"),
        ip: session.owner.strip_prefix("anonymous@").map(str::to_string),
        user_agent: None,
    });
    e.virtual_server = (!vs_name.is_empty()).then(|| vs_name.to_string());
    e.session = Some(session.audit_digest());
    e.reason = Some(reason.to_string());
    e.detail = Some(json!({ "ended_by": "gateway", "iat": session.claims.iat }));
    e
}
