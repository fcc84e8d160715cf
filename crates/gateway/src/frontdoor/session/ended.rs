//! What follows when the gateway ends sessions itself (idle, TTL, a cap) or learns that another
//! process deleted one: the `session.end` audit event and the release of what the session
//! holds outside this process.

use std::sync::Arc;

use gatehouse_audit::{AuditEvent, ClientRecord, EventKind, Outcome};
use serde_json::{Value, json};

use super::Session;
use crate::Gateway;

/// Releases sessions returned by [`super::SessionStore::sweep`]: writes a `session.end` event
/// for each one the gateway ended itself, and releases what it holds at the members of its
/// virtual server — its resource subscriptions (also those the gateway holds at stateless
/// members for it) and its upstream sessions — as a DELETE does (unless a DELETE on another
/// process already did).
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
        // After a DELETE elsewhere, the process that served it released what the session held.
        if let Some(vs) = vs
            && reason.by_gateway()
        {
            let caller = gatehouse_identity::Caller::for_principal(session.principal.clone());
            session.release(vs, &caller).await;
        }
    }
}

impl Session {
    /// Releases what an ended session held at the members of `vs`: its resource subscriptions
    /// (also those the gateway holds at stateless members for it) and its upstream sessions.
    pub async fn release(
        &self,
        vs: &crate::snapshot::VirtualServer,
        caller: &gatehouse_identity::Caller,
    ) {
        let ctx = self.call_ctx(caller);
        crate::subscriptions::release_all(vs, &ctx, &self.subscriptions).await;
        crate::upstream::close_sessions(vs, &self.claims.up).await;
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
