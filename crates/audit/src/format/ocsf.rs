//! OCSF API Activity (class 6003, category 6 "Application Activity") documents.
//!
//! Every event kind is laid out as API Activity so one class holds the whole trail; the
//! kinds that are not calls (`journal.start`, `retention`, …) have `activity_id` 99 (Other)
//! and their type in `metadata.event_code`. What OCSF has no attribute for goes in
//! `unmapped`, so nothing a journal line holds is lost.

use serde_json::{Map, Value, json};

use super::{Severity, coalesced_window, epoch_ms, severity, user_name};
use crate::event::{EventKind, Outcome};
use crate::reader::StoredEvent;

/// The OCSF schema version the documents follow.
pub const OCSF_VERSION: &str = "1.3.0";
/// API Activity.
pub const CLASS_UID: u32 = 6003;
/// Application Activity.
pub const CATEGORY_UID: u32 = 6;

/// The OCSF `activity_id` (and its name) for a tool operation: `read` → 2 Read,
/// `write` → 3 Update, `delete` → 4 Delete, `create` → 1 Create; anything else (`execute`,
/// prompts, resources without one, non-call events) → 99 Other.
pub fn activity(operation: Option<&str>) -> (u32, &'static str) {
    match operation {
        Some("create") => (1, "Create"),
        Some("read") => (2, "Read"),
        Some("write" | "update") => (3, "Update"),
        Some("delete") => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// The OCSF document of one event.
pub fn document(s: &StoredEvent) -> Value {
    let e = &s.event;
    let operation = e.target.as_ref().and_then(|t| t.operation.as_deref());
    let operation = match (e.kind, operation) {
        (EventKind::Request, Some(op)) => Some(op),
        // Reading a resource or getting a prompt has no declared operation but is a read.
        (EventKind::Request, None) if e.target.as_ref().is_some_and(|t| t.kind != "tool") => {
            Some("read")
        }
        _ => None,
    };
    let (activity_id, activity_name) = activity(operation);
    let (severity_id, severity_name) = match severity(e) {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
    };
    let (status_id, status) = match e.outcome {
        Outcome::Ok => (1, "Success"),
        Outcome::Cancelled => (99, "Other"),
        _ => (2, "Failure"),
    };
    let mut doc = json!({
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("API Activity: {activity_name}"),
        "time": epoch_ms(&e.time),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": status_id,
        "status": status,
        "status_code": e.outcome.as_str(),
        "message": message(s),
        "metadata": metadata(s),
        "actor": actor(s),
        "api": api(s),
        "src_endpoint": src_endpoint(s),
    });
    let detail = e
        .reason
        .as_deref()
        .or(e.result.as_ref().and_then(|r| r.error_message.as_deref()))
        .or(e.policy.as_ref().and_then(|p| p.reason.as_deref()));
    if let Some(d) = detail {
        doc["status_detail"] = json!(d);
    }
    if let Some(us) = e.latency_us {
        doc["duration"] = json!(us / 1000);
    }
    if let Some(c) = e.count {
        doc["count"] = json!(c);
    }
    if let Some((first, last)) = coalesced_window(e) {
        doc["start_time"] = json!(epoch_ms(first));
        doc["end_time"] = json!(epoch_ms(last));
    }
    if let Some(ua) = e.client.as_ref().and_then(|c| c.user_agent.as_ref()) {
        doc["http_request"] = json!({ "user_agent": ua });
    }
    if let Some(t) = &e.target {
        doc["resources"] = json!([{ "name": t.name, "type": t.kind }]);
    }
    if let Some(v) = &e.virtual_server {
        doc["dst_endpoint"] = json!({ "svc_name": v });
    }
    doc["unmapped"] = unmapped(s);
    doc
}

fn message(s: &StoredEvent) -> String {
    let e = &s.event;
    let mut m = e.kind.as_str().to_string();
    for part in [
        e.method.as_deref(),
        e.target.as_ref().map(|t| t.name.as_str()),
        Some(e.outcome.as_str()),
    ]
    .into_iter()
    .flatten()
    {
        m.push(' ');
        m.push_str(part);
    }
    m
}

fn metadata(s: &StoredEvent) -> Value {
    let e = &s.event;
    let mut m = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "Gatehouse",
            "vendor_name": "Gatehouse",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "uid": s.id,
        "event_code": e.kind.as_str(),
        "log_name": "gatehouse.audit",
        "sequence": s.seq,
        "original_time": e.time,
    });
    if let Some(t) = &e.trace_id {
        m["correlation_uid"] = json!(t);
    }
    if let Some(t) = e.principal.as_ref().and_then(|p| p.tenant.as_ref()) {
        m["tenant_uid"] = json!(t);
    }
    m
}

fn actor(s: &StoredEvent) -> Value {
    let e = &s.event;
    let mut actor = Map::new();
    if let Some(p) = &e.principal {
        let mut user = Map::new();
        if !p.subject.is_empty() {
            user.insert("uid".into(), json!(p.subject));
        }
        if let Some(n) = user_name(e) {
            user.insert("name".into(), json!(n));
        }
        if let Some(m) = &p.email {
            user.insert("email_addr".into(), json!(m));
        }
        if !p.groups.is_empty() {
            let groups: Vec<Value> = p.groups.iter().map(|g| json!({ "name": g })).collect();
            user.insert("groups".into(), Value::Array(groups));
        }
        if let Some(t) = &p.tenant {
            user.insert("org".into(), json!({ "uid": t }));
        }
        let (type_id, type_name) = match p.kind.as_str() {
            "user" => (1, "User"),
            "workload" => (3, "System"),
            _ => (0, "Unknown"),
        };
        user.insert("type_id".into(), json!(type_id));
        user.insert("type".into(), json!(type_name));
        actor.insert("user".into(), Value::Object(user));
    }
    if let Some(n) = e.client.as_ref().and_then(|c| c.name.as_ref()) {
        actor.insert("app_name".into(), json!(n));
    }
    if let Some(sess) = &e.session {
        actor.insert("session".into(), json!({ "uid": sess }));
    }
    if let Some(p) = &e.policy {
        actor.insert(
            "authorizations".into(),
            json!([{
                "decision": p.decision,
                "policy": { "uid": p.policies.join(","), "name": p.engine, "version": p.version },
            }]),
        );
    }
    Value::Object(actor)
}

fn api(s: &StoredEvent) -> Value {
    let e = &s.event;
    let mut api = json!({ "operation": e.method.as_deref().unwrap_or(e.kind.as_str()) });
    if let Some(server) = &e.server {
        api["service"] = json!({ "name": server });
    }
    if let Some(id) = &e.request_id {
        api["request"] = json!({ "uid": id });
    }
    if let Some(r) = &e.result {
        let mut resp = json!({ "message": r.status });
        if let Some(c) = r.http_status.map(i64::from).or(r.error_code) {
            resp["code"] = json!(c);
        }
        if let Some(c) = r.error_code {
            resp["error"] = json!(c.to_string());
        }
        if let Some(m) = &r.error_message {
            resp["error_message"] = json!(m);
        }
        api["response"] = resp;
    }
    api
}

fn src_endpoint(s: &StoredEvent) -> Value {
    match s.event.client.as_ref().and_then(|c| c.ip.as_ref()) {
        Some(ip) => json!({ "ip": ip }),
        None => json!({}),
    }
}

fn unmapped(s: &StoredEvent) -> Value {
    let e = &s.event;
    let mut u = Map::new();
    u.insert("instance".into(), json!(s.instance));
    u.insert("outcome".into(), json!(e.outcome.as_str()));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            u.insert(k.into(), v);
        }
    };
    put(
        "virtual_server",
        e.virtual_server.as_ref().map(|v| json!(v)),
    );
    put(
        "operation",
        e.target
            .as_ref()
            .and_then(|t| t.operation.as_ref())
            .map(|v| json!(v)),
    );
    put("arguments", e.arguments.clone());
    put(
        "arguments_digest",
        e.arguments_digest.as_ref().map(|v| json!(v)),
    );
    put("request_bytes", e.request_bytes.map(|v| json!(v)));
    put("response_bytes", e.result.as_ref().map(|r| json!(r.bytes)));
    put("latency_us", e.latency_us.map(|v| json!(v)));
    put(
        "principal",
        e.principal
            .as_ref()
            .map(|p| json!({ "kind": p.kind, "issuer": p.issuer, "client_id": p.client_id })),
    );
    put(
        "client_version",
        e.client
            .as_ref()
            .and_then(|c| c.version.as_ref())
            .map(|v| json!(v)),
    );
    put(
        "obligations",
        e.policy
            .as_ref()
            .filter(|p| !p.obligations.is_empty())
            .map(|p| json!(p.obligations)),
    );
    put(
        "policy_reason",
        e.policy
            .as_ref()
            .and_then(|p| p.reason.as_ref())
            .map(|v| json!(v)),
    );
    put("detail", e.detail.clone());
    put("truncated", e.truncated.as_ref().map(|v| json!(v)));
    Value::Object(u)
}
