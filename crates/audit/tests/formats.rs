//! The SIEM layouts (ECS, OCSF API Activity, CEF) on a full event, on minimal ones, and on
//! hostile strings. CEF lines are parsed back with an independent parser written from the
//! CEF specification's escaping rules, so an escaping mistake shows as a forged field.

use std::collections::BTreeMap;

use gatehouse_audit::format::{cef, ecs, ocsf, render};
use gatehouse_audit::{
    ArgumentsDigest, AuditEvent, ClientRecord, EventKind, Outcome, PolicyRecord, PrincipalRecord,
    ResultRecord, StoredEvent, TargetRecord,
};
use gatehouse_config::EventFormat;
use serde_json::{Value, json};

fn stored(e: &AuditEvent, seq: u64) -> (StoredEvent, String) {
    let mut v = serde_json::to_value(e).unwrap();
    let o = v.as_object_mut().unwrap();
    o.insert("seq".into(), json!(seq));
    o.insert("prev".into(), json!("0".repeat(64)));
    o.insert("id".into(), json!(format!("inst1-{seq}")));
    o.insert("instance".into(), json!("inst1"));
    let line = v.to_string();
    (StoredEvent::parse(line.as_bytes()).unwrap(), line)
}

fn full() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Denied);
    e.time = "2026-03-04T05:06:07.123456Z".into();
    e.request_id = Some("req-42".into());
    e.principal = Some(PrincipalRecord {
        kind: "user".into(),
        subject: "sub-123".into(),
        issuer: "https://idp.example".into(),
        email: Some("ada@example.com".into()),
        tenant: Some("acme".into()),
        groups: vec!["eng".into(), "admins".into()],
        client_id: Some("cli-1".into()),
    });
    e.client = Some(ClientRecord {
        name: Some("claude-code".into()),
        version: Some("1.2.3".into()),
        ip: Some("10.1.2.3".into()),
        user_agent: Some("agent/9".into()),
    });
    e.virtual_server = Some("prod".into());
    e.server = Some("github".into());
    e.method = Some("tools/call".into());
    e.target = Some(TargetRecord {
        kind: "tool".into(),
        name: "delete_repo".into(),
        operation: Some("delete".into()),
    });
    e.arguments = Some(json!({"repo": "[redacted]"}));
    e.arguments_digest = Some(ArgumentsDigest {
        bytes: 17,
        sha256: "ab".repeat(32),
        prefix: None,
    });
    e.request_bytes = Some(321);
    e.result = Some(ResultRecord {
        status: "error".into(),
        error_code: Some(-32003),
        error_message: Some("denied by policy".into()),
        bytes: 88,
        http_status: Some(403),
    });
    e.latency_us = Some(2500);
    e.policy = Some(PolicyRecord {
        decision: "deny".into(),
        policies: vec!["no-deletes".into()],
        version: "v7".into(),
        engine: "cedar".into(),
        reason: Some("deletes need approval".into()),
        obligations: vec!["notify:sec".into()],
    });
    e.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
    e.session = Some("sess-digest".into());
    e.count = Some(1);
    e.reason = Some("policy".into());
    e.detail = Some(json!({"extra": true}));
    e
}

#[test]
fn ecs_maps_every_field_of_a_full_event() {
    let (s, _) = stored(&full(), 7);
    let d = ecs::document(&s);
    assert_eq!(d["@timestamp"], "2026-03-04T05:06:07.123456Z");
    assert_eq!(d["ecs"]["version"], ecs::ECS_VERSION);
    let ev = &d["event"];
    assert_eq!(ev["id"], "inst1-7");
    assert_eq!(ev["kind"], "event");
    assert_eq!(ev["category"], json!(["api"]));
    assert_eq!(ev["type"], json!(["access", "denied"]));
    assert_eq!(ev["action"], "mcp.request");
    assert_eq!(ev["outcome"], "failure");
    assert_eq!(ev["duration"], 2_500_000);
    assert_eq!(ev["dataset"], "gatehouse.audit");
    assert_eq!(ev["reason"], "policy");
    assert_eq!(d["user"]["id"], "sub-123");
    assert_eq!(d["user"]["name"], "ada@example.com");
    assert_eq!(d["user"]["email"], "ada@example.com");
    assert_eq!(d["user"]["domain"], "acme");
    assert_eq!(d["user"]["roles"], json!(["eng", "admins"]));
    assert_eq!(d["client"]["ip"], "10.1.2.3");
    assert_eq!(d["source"]["ip"], "10.1.2.3");
    assert_eq!(d["user_agent"]["original"], "agent/9");
    assert_eq!(d["service"]["name"], "github");
    assert_eq!(d["trace"]["id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(d["http"]["response"]["status_code"], 403);
    assert_eq!(d["http"]["response"]["body"]["bytes"], 88);
    assert_eq!(d["http"]["request"]["id"], "req-42");
    assert_eq!(d["http"]["request"]["body"]["bytes"], 321);
    assert_eq!(d["error"]["code"], "-32003");
    assert_eq!(d["error"]["message"], "denied by policy");
    assert_eq!(d["rule"]["id"], json!(["no-deletes"]));
    assert_eq!(d["rule"]["ruleset"], "cedar");
    assert_eq!(d["labels"]["virtual_server"], "prod");
    let g = &d["gatehouse"];
    assert_eq!(g["instance"], "inst1");
    assert_eq!(g["target"]["name"], "delete_repo");
    assert_eq!(g["target"]["operation"], "delete");
    assert_eq!(g["method"], "tools/call");
    assert_eq!(g["arguments"]["repo"], "[redacted]");
    assert_eq!(g["arguments_digest"]["bytes"], 17);
    assert_eq!(g["policy"]["obligations"], json!(["notify:sec"]));
    assert_eq!(g["principal"]["issuer"], "https://idp.example");
    assert_eq!(g["principal"]["client_id"], "cli-1");
    assert_eq!(g["client"]["name"], "claude-code");
    assert_eq!(g["session"], "sess-digest");
    assert_eq!(g["detail"]["extra"], true);
}

#[test]
fn ocsf_is_api_activity_with_every_field() {
    let (s, _) = stored(&full(), 7);
    let d = ocsf::document(&s);
    assert_eq!(d["class_uid"], 6003);
    assert_eq!(d["category_uid"], 6);
    assert_eq!(d["activity_id"], 4, "delete → Delete");
    assert_eq!(d["type_uid"], 600304);
    assert_eq!(d["time"], 1_772_600_767_123i64);
    assert_eq!(d["severity_id"], 3);
    assert_eq!(d["status_id"], 2);
    assert_eq!(d["status"], "Failure");
    assert_eq!(d["status_detail"], "policy");
    assert_eq!(d["duration"], 2);
    let u = &d["actor"]["user"];
    assert_eq!(u["uid"], "sub-123");
    assert_eq!(u["email_addr"], "ada@example.com");
    assert_eq!(u["groups"], json!([{"name": "eng"}, {"name": "admins"}]));
    assert_eq!(u["org"]["uid"], "acme");
    assert_eq!(d["actor"]["app_name"], "claude-code");
    assert_eq!(d["actor"]["session"]["uid"], "sess-digest");
    assert_eq!(d["actor"]["authorizations"][0]["decision"], "deny");
    assert_eq!(d["api"]["operation"], "tools/call");
    assert_eq!(d["api"]["service"]["name"], "github");
    assert_eq!(d["api"]["request"]["uid"], "req-42");
    assert_eq!(d["api"]["response"]["code"], 403);
    assert_eq!(d["api"]["response"]["error"], "-32003");
    assert_eq!(d["api"]["response"]["error_message"], "denied by policy");
    assert_eq!(d["src_endpoint"]["ip"], "10.1.2.3");
    assert_eq!(d["http_request"]["user_agent"], "agent/9");
    assert_eq!(
        d["resources"],
        json!([{"name": "delete_repo", "type": "tool"}])
    );
    let m = &d["metadata"];
    assert_eq!(m["version"], ocsf::OCSF_VERSION);
    assert_eq!(m["product"]["name"], "Gatehouse");
    assert_eq!(m["uid"], "inst1-7");
    assert_eq!(m["correlation_uid"], "0af7651916cd43dd8448eb211c80319c");
    let un = &d["unmapped"];
    assert_eq!(un["virtual_server"], "prod");
    assert_eq!(un["arguments"]["repo"], "[redacted]");
    assert_eq!(un["request_bytes"], 321);
    assert_eq!(un["obligations"], json!(["notify:sec"]));
    assert_eq!(un["principal"]["issuer"], "https://idp.example");
}

#[test]
fn ocsf_activity_follows_the_tool_operation() {
    for (op, id) in [
        (Some("read"), 2),
        (Some("write"), 3),
        (Some("delete"), 4),
        (Some("create"), 1),
        (Some("execute"), 99),
        (None, 99),
    ] {
        let mut e = full();
        e.target.as_mut().unwrap().operation = op.map(str::to_string);
        let d = ocsf::document(&stored(&e, 1).0);
        assert_eq!(d["activity_id"], id, "{op:?}");
        assert_eq!(d["type_uid"], 600300 + id, "{op:?}");
    }
}

#[test]
fn minimal_events_lay_out_without_absent_fields() {
    let mut start = AuditEvent::new(EventKind::JournalStart, Outcome::Ok);
    start.time = "2026-01-01T00:00:00.000000Z".into();
    let (s, _) = stored(&start, 0);
    let d = ecs::document(&s);
    assert_eq!(d["event"]["category"], json!(["process"]));
    assert_eq!(d["event"]["outcome"], "success");
    for absent in ["user", "client", "http", "error", "rule", "trace"] {
        assert!(d.get(absent).is_none(), "ecs {absent}: {d}");
    }
    let o = ocsf::document(&s);
    assert_eq!(o["activity_id"], 99);
    assert_eq!(o["status_id"], 1);
    assert_eq!(o["time"], 1_767_225_600_000i64);
    assert_eq!(o["api"]["operation"], "journal.start");
    assert!(o["actor"].as_object().unwrap().is_empty());
    let c = cef::line(&s);
    assert!(c.starts_with("CEF:0|Gatehouse|Gatehouse|"), "{c}");
    let (h, ext) = parse_cef(&c);
    assert_eq!(h[4], "journal.start/ok");
    assert_eq!(h[6], "3");
    assert_eq!(ext["externalId"], "inst1-0");
    assert!(!ext.contains_key("suser"));

    // An authentication failure has no principal, only the client.
    let mut fail = AuditEvent::new(EventKind::AuthFailure, Outcome::Unauthenticated);
    fail.client = Some(ClientRecord {
        ip: Some("192.0.2.9".into()),
        ..Default::default()
    });
    fail.count = Some(12);
    fail.reason = Some("invalid_token".into());
    let (s, _) = stored(&fail, 3);
    let d = ecs::document(&s);
    assert_eq!(d["event"]["category"], json!(["authentication"]));
    assert_eq!(d["event"]["outcome"], "failure");
    assert_eq!(d["source"]["ip"], "192.0.2.9");
    assert!(d.get("user").is_none());
    let o = ocsf::document(&s);
    assert_eq!(o["status_id"], 2);
    assert_eq!(o["count"], 12);
    assert_eq!(o["severity_id"], 3);
    let (h, ext) = parse_cef(&cef::line(&s));
    assert_eq!(h[4], "auth.failure/unauthenticated");
    assert_eq!(h[6], "7");
    assert_eq!(ext["src"], "192.0.2.9");
    assert_eq!(ext["cnt"], "12");
    assert_eq!(ext["reason"], "invalid_token");
}

#[test]
fn anomalies_are_alerts() {
    let e = AuditEvent::new(EventKind::Anomaly, Outcome::Ok);
    let (s, _) = stored(&e, 1);
    assert_eq!(ecs::document(&s)["event"]["kind"], "alert");
    assert_eq!(ocsf::document(&s)["severity_id"], 4);
    assert_eq!(parse_cef(&cef::line(&s)).0[6], "9");
}

#[test]
fn cef_maps_a_full_event() {
    let (s, _) = stored(&full(), 7);
    let (h, ext) = parse_cef(&cef::line(&s));
    assert_eq!(h[1], "Gatehouse");
    assert_eq!(h[4], "mcp.request/denied");
    assert_eq!(h[5], "mcp.request tools/call delete_repo denied");
    assert_eq!(h[6], "7");
    let want = [
        ("rt", "1772600767123"),
        ("externalId", "inst1-7"),
        ("suser", "ada@example.com"),
        ("suid", "sub-123"),
        ("spriv", "eng,admins"),
        ("src", "10.1.2.3"),
        ("act", "deny"),
        ("outcome", "denied"),
        ("requestMethod", "tools/call"),
        ("requestClientApplication", "agent/9"),
        ("destinationServiceName", "github"),
        ("in", "321"),
        ("out", "88"),
        ("msg", "denied by policy"),
        ("cs1", "prod"),
        ("cs1Label", "virtualServer"),
        ("cs2", "tool:delete_repo (delete)"),
        ("cs4", "0af7651916cd43dd8448eb211c80319c"),
        ("cs5", "req-42"),
        ("cs6", "acme"),
        ("cn1", "2500"),
        ("cn2", "403"),
    ];
    for (k, v) in want {
        assert_eq!(ext.get(k).map(String::as_str), Some(v), "{k}");
    }
}

#[test]
fn hostile_strings_cannot_forge_cef_fields_or_headers() {
    let mut e = full();
    let evil = "a|b\\c=d\nsuser=root\r cs1=evil";
    e.target.as_mut().unwrap().name = evil.into();
    e.reason = Some(evil.into());
    e.client.as_mut().unwrap().ip = Some("not-an-ip act=allow".into());
    let (s, _) = stored(&e, 1);
    let line = cef::line(&s);
    assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
    let (h, ext) = parse_cef(&line);
    assert_eq!(h.len(), 8, "{line}");
    assert_eq!(
        h[5],
        "mcp.request tools/call a|b\\c=d suser=root  cs1=evil denied"
    );
    assert_eq!(ext["reason"], evil);
    assert_eq!(ext["suser"], "ada@example.com", "not forged");
    assert_eq!(ext["cs1"], "prod", "not forged");
    assert_eq!(ext["act"], "deny");
    assert!(!ext.contains_key("src"), "a non-address is left out");
    // JSON layouts carry hostile strings as data.
    let d: Value = serde_json::from_str(&render(EventFormat::Ecs, &s, b"")).unwrap();
    assert_eq!(d["event"]["reason"], evil);
    let o: Value = serde_json::from_str(&render(EventFormat::Ocsf, &s, b"")).unwrap();
    assert_eq!(o["resources"][0]["name"], evil);
}

#[test]
fn jsonl_is_the_journal_line_byte_for_byte() {
    let (s, line) = stored(&full(), 2);
    assert_eq!(render(EventFormat::Jsonl, &s, line.as_bytes()), line);
}

/// Splits a CEF line into its 7 header fields (+ the extension text) and its extensions,
/// undoing the escapes.
fn parse_cef(line: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if header.len() == 7 {
            cur.push(c);
            continue;
        }
        match c {
            '\\' => cur.push(chars.next().unwrap()),
            '|' => header.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    let ext_text = cur.clone();
    header.push(cur);
    // Extensions: a key is the word before an unescaped '='.
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut raw = String::new();
    let mut chars = ext_text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let n = chars.next().unwrap();
                raw.push(match n {
                    'n' => '\n',
                    'r' => '\r',
                    other => other,
                });
                // Escaped characters are value characters, never boundaries.
                raw.push('\u{0}');
            }
            '=' => {
                let (value, key) = match raw.rfind(' ') {
                    Some(i) => (raw[..i].to_string(), raw[i + 1..].to_string()),
                    None => (String::new(), raw.clone()),
                };
                if let Some(last) = pairs.last_mut() {
                    last.1 = value;
                }
                pairs.push((key.replace('\u{0}', ""), String::new()));
                raw.clear();
            }
            c => raw.push(c),
        }
    }
    if let Some(last) = pairs.last_mut() {
        last.1 = raw;
    }
    let map = pairs
        .into_iter()
        .map(|(k, v)| (k, v.replace('\u{0}', "")))
        .collect();
    (header, map)
}
