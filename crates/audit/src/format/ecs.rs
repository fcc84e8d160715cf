//! Elastic Common Schema (8.x) documents.
//!
//! Fields ECS has a home for go there (`event.*`, `user.*`, `client.*`, `source.*`,
//! `user_agent.*`, `service.*`, `http.*`, `error.*`, `rule.*`, `trace.id`); the rest of the
//! event is kept under the custom `gatehouse.*` object so nothing a journal line holds is
//! lost on the way to Elasticsearch.

use serde_json::{Map, Value, json};

use super::{coalesced_window, failed, user_name};
use crate::event::{EventKind, Outcome};
use crate::reader::StoredEvent;

/// The ECS version the documents follow (`api` as an `event.category` needs 8.10 or later).
pub const ECS_VERSION: &str = "8.11.0";

/// The ECS document of one event.
pub fn document(s: &StoredEvent) -> Value {
    let e = &s.event;
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(e.time));
    doc.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    let (category, mut types) = categorize(s);
    let mut event = json!({
        "id": s.id,
        "kind": if e.kind == EventKind::Anomaly { "alert" } else { "event" },
        "category": category,
        "action": e.kind.as_str(),
        "outcome": outcome(e.outcome),
        "dataset": "gatehouse.audit",
        "module": "gatehouse",
        "provider": "gatehouse",
        "sequence": s.seq,
    });
    if let Some(us) = e.latency_us {
        event["duration"] = json!(us.saturating_mul(1000));
    }
    if let Some((first, last)) = coalesced_window(e) {
        event["start"] = json!(first);
        event["end"] = json!(last);
    }
    if let Some(r) = e
        .reason
        .as_deref()
        .or(e.policy.as_ref().and_then(|p| p.reason.as_deref()))
    {
        event["reason"] = json!(r);
    }
    if e.outcome == Outcome::Error && !types.contains(&"error") {
        types.push("error");
    }
    event["type"] = json!(types);
    doc.insert("event".into(), event);

    if let Some(p) = &e.principal {
        let mut user = Map::new();
        if !p.subject.is_empty() {
            user.insert("id".into(), json!(p.subject));
        }
        if let Some(n) = user_name(e) {
            user.insert("name".into(), json!(n));
        }
        if let Some(m) = &p.email {
            user.insert("email".into(), json!(m));
        }
        if let Some(t) = &p.tenant {
            user.insert("domain".into(), json!(t));
        }
        if !p.groups.is_empty() {
            user.insert("roles".into(), json!(p.groups));
        }
        if !user.is_empty() {
            doc.insert("user".into(), Value::Object(user));
        }
        if let Some(t) = &p.tenant {
            doc.insert("organization".into(), json!({ "id": t }));
        }
    }
    if let Some(c) = &e.client {
        if let Some(ip) = &c.ip {
            doc.insert("client".into(), json!({ "ip": ip, "address": ip }));
            doc.insert("source".into(), json!({ "ip": ip, "address": ip }));
        }
        if let Some(ua) = &c.user_agent {
            doc.insert("user_agent".into(), json!({ "original": ua }));
        }
    }
    if let Some(server) = &e.server {
        doc.insert("service".into(), json!({ "name": server }));
    }
    if let Some(t) = &e.trace_id {
        doc.insert("trace".into(), json!({ "id": t }));
    }
    let mut http = Map::new();
    if let Some(id) = &e.request_id {
        http.insert("request".into(), json!({ "id": id }));
    }
    if let Some(b) = e.request_bytes {
        let req = http.entry("request").or_insert_with(|| json!({}));
        req["body"] = json!({ "bytes": b });
    }
    if let Some(r) = &e.result {
        let mut resp = json!({ "body": { "bytes": r.bytes } });
        if let Some(st) = r.http_status {
            resp["status_code"] = json!(st);
        }
        http.insert("response".into(), resp);
        if r.error_code.is_some() || r.error_message.is_some() {
            let mut err = Map::new();
            if let Some(c) = r.error_code {
                err.insert("code".into(), json!(c.to_string()));
            }
            if let Some(m) = &r.error_message {
                err.insert("message".into(), json!(m));
            }
            doc.insert("error".into(), Value::Object(err));
        }
    }
    if !http.is_empty() {
        doc.insert("http".into(), Value::Object(http));
    }
    if let Some(p) = &e.policy {
        let mut rule = json!({ "ruleset": p.engine, "version": p.version });
        if !p.policies.is_empty() {
            rule["id"] = json!(p.policies);
            rule["name"] = json!(p.policies.join(","));
        }
        doc.insert("rule".into(), rule);
    }
    if let Some(v) = &e.virtual_server {
        doc.insert("labels".into(), json!({ "virtual_server": v }));
    }
    doc.insert("gatehouse".into(), custom(s));
    Value::Object(doc)
}

/// `event.category` and the base of `event.type` for the event's kind.
fn categorize(s: &StoredEvent) -> (Vec<&'static str>, Vec<&'static str>) {
    let e = &s.event;
    match e.kind {
        EventKind::Request => {
            let mut types = vec!["access"];
            match e.policy.as_ref().map(|p| p.decision.as_str()) {
                Some("allow") => types.push("allowed"),
                Some("deny") => types.push("denied"),
                _ if e.outcome == Outcome::Denied => types.push("denied"),
                _ => {}
            }
            (vec!["api"], types)
        }
        EventKind::AuthFailure => (vec!["authentication"], vec!["start"]),
        EventKind::SessionStart => (vec!["session"], vec!["start"]),
        EventKind::SessionEnd => (vec!["session"], vec!["end"]),
        EventKind::ConfigChange => (vec!["configuration"], vec!["change"]),
        EventKind::PolicyChange => (vec!["configuration", "iam"], vec!["change", "admin"]),
        EventKind::JournalStart => (vec!["process"], vec!["start"]),
        EventKind::Anomaly => (vec!["intrusion_detection"], vec!["indicator"]),
        EventKind::Retention => (vec!["file"], vec!["deletion"]),
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "success",
        Outcome::Cancelled => "unknown",
        o if failed(o) => "failure",
        _ => "unknown",
    }
}

/// What ECS has no field for, under `gatehouse.*`.
fn custom(s: &StoredEvent) -> Value {
    let e = &s.event;
    let mut g = Map::new();
    g.insert("instance".into(), json!(s.instance));
    g.insert("seq".into(), json!(s.seq));
    g.insert("type".into(), json!(e.kind.as_str()));
    g.insert("outcome".into(), json!(e.outcome.as_str()));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            g.insert(k.into(), v);
        }
    };
    put(
        "virtual_server",
        e.virtual_server.as_ref().map(|v| json!(v)),
    );
    put("server", e.server.as_ref().map(|v| json!(v)));
    put("method", e.method.as_ref().map(|v| json!(v)));
    put("target", e.target.as_ref().map(|v| json!(v)));
    put("arguments", e.arguments.clone());
    put(
        "arguments_digest",
        e.arguments_digest.as_ref().map(|v| json!(v)),
    );
    put(
        "result",
        e.result.as_ref().map(|r| json!({ "status": r.status })),
    );
    put(
        "policy",
        e.policy.as_ref().map(
            |p| json!({ "decision": p.decision, "obligations": p.obligations, "reason": p.reason }),
        ),
    );
    put("principal", e.principal.as_ref().map(|p| {
        json!({ "kind": p.kind, "issuer": p.issuer, "client_id": p.client_id, "tenant": p.tenant })
    }));
    put(
        "client",
        e.client
            .as_ref()
            .map(|c| json!({ "name": c.name, "version": c.version })),
    );
    put("session", e.session.as_ref().map(|v| json!(v)));
    put("count", e.count.map(|v| json!(v)));
    put("detail", e.detail.clone());
    put("truncated", e.truncated.as_ref().map(|v| json!(v)));
    Value::Object(g)
}
