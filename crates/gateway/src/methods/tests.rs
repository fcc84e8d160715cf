//! The table against the methods it must know — rmcp's request and notification types,
//! matched exhaustively so a new variant fails to compile, and both eras' method names kept as
//! test data — and the construction that makes the table the only way to a member.

use rmcp::model::{ClientNotification, ClientRequest};

use super::*;

/// Every method of an rmcp message union (`ClientRequest`, `ClientNotification`), read from its
/// JSON Schema: each variant's `method` is a constant. rmcp's unions are `#[non_exhaustive]`,
/// so no match outside rmcp can be exhaustive; reading the schema instead means a variant
/// rmcp adds shows up here without anyone listing it, and fails the test if the table lacks it.
fn rmcp_methods<T: schemars::JsonSchema>() -> Vec<String> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).expect("schema serialises");
    let defs = schema.get("$defs").cloned().unwrap_or_default();
    let resolve = |v: &serde_json::Value| -> serde_json::Value {
        match v.get("$ref").and_then(serde_json::Value::as_str) {
            Some(r) => defs
                .get(r.trim_start_matches("#/$defs/"))
                .cloned()
                .unwrap_or_default(),
            None => v.clone(),
        }
    };
    let variants = schema
        .get("anyOf")
        .and_then(serde_json::Value::as_array)
        .expect("a union of variants");
    let mut out = Vec::new();
    for variant in variants {
        let variant = resolve(variant);
        let Some(method) = variant.get("properties").and_then(|p| p.get("method")) else {
            continue;
        };
        // A custom variant's method is any string: no constant.
        if let Some(c) = resolve(method)
            .get("const")
            .and_then(serde_json::Value::as_str)
        {
            out.push(c.to_string());
        }
    }
    out
}

/// `(kind, method)` lines of a test-data file.
fn data(text: &str) -> Vec<(MessageKind, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(' ') {
            Some(("request", m)) => (MessageKind::Request, m),
            Some(("notification", m)) => (MessageKind::Notification, m),
            _ => panic!("bad test-data line {l:?}"),
        })
        .collect()
}

#[test]
fn every_method_of_both_eras_and_of_rmcp_is_in_the_table() {
    let eras = [
        (Era::Handshake, include_str!("data/methods-2025-11-25.txt")),
        (Era::Stateless, include_str!("data/methods-2026-07-28.txt")),
    ];
    let mut missing = Vec::new();
    for (era, text) in eras {
        for (kind, method) in data(text) {
            if !matches!(lookup(method, kind, era), Lookup::Known(_)) {
                missing.push(format!("{era:?} {kind:?} {method}"));
            }
        }
    }
    let requests = rmcp_methods::<ClientRequest>();
    let notifications = rmcp_methods::<ClientNotification>();
    assert!(
        requests.len() >= 20 && requests.contains(&"tools/call".to_string()),
        "rmcp's requests were read: {requests:?}"
    );
    assert!(
        notifications.contains(&"notifications/cancelled".to_string()),
        "rmcp's notifications were read: {notifications:?}"
    );
    for (kind, methods) in [
        (MessageKind::Request, requests),
        (MessageKind::Notification, notifications),
    ] {
        for method in &methods {
            let known = [Era::Handshake, Era::Stateless]
                .into_iter()
                .any(|era| matches!(lookup(method, kind, era), Lookup::Known(_)));
            if !known {
                missing.push(format!("rmcp {kind:?} {method}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "methods the table forgets: {missing:#?}"
    );
}

#[test]
fn the_table_has_one_row_per_method_kind_and_era() {
    for (i, a) in TABLE.iter().enumerate() {
        for b in &TABLE[i + 1..] {
            let overlap = a.method == b.method
                && a.kind == b.kind
                && [Era::Handshake, Era::Stateless]
                    .iter()
                    .any(|&e| a.eras.includes(e) && b.eras.includes(e));
            assert!(!overlap, "{} appears twice for one era", a.method);
        }
    }
}

#[test]
fn item_methods_and_what_the_other_era_lacks() {
    assert_eq!(
        lookup("tools/call", MessageKind::Request, Era::Stateless),
        Lookup::Known(Handling::Item(ItemMethod::CallTool))
    );
    assert_eq!(
        lookup("resources/subscribe", MessageKind::Request, Era::Stateless),
        Lookup::OtherEra,
        "2026-07-28 has no resources/subscribe"
    );
    assert_eq!(
        lookup("tasks/result", MessageKind::Request, Era::Handshake),
        Lookup::Known(Handling::Task(TaskMethod::Result))
    );
    assert_eq!(
        lookup("tools/call", MessageKind::Notification, Era::Handshake),
        Lookup::Unknown,
        "a request method sent as a notification is unknown"
    );
    assert_eq!(
        lookup("tools/cal", MessageKind::Request, Era::Handshake),
        Lookup::Unknown
    );
}

/// Every `.rs` file of the gateway's sources, with its path relative to `src/`.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .expect("under src")
                    .display()
                    .to_string();
                out.push((rel, std::fs::read_to_string(&path).expect("readable")));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

/// The invariant "no member is reached but through the table", checked on the source: only
/// this module builds a `Decided`; only `upstream.rs` and the catalog (its own list fetches)
/// call the backend functions that send to a member; and each of those takes a `Decided`.
#[test]
fn only_the_table_creates_decisions() {
    let files = sources();
    assert!(files.len() > 20, "found the sources");
    let mut offenders = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| p != "methods/tests.rs") {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        if !path.starts_with("methods/") && code.contains("Decided {") {
            offenders.push(format!("{path} builds a Decided"));
        }
        let sends = [
            ".backend.call(",
            ".call(&decided",
            ".call(decided",
            ".backend.notify(",
            ".open_session(",
            ".close_session(",
            ".open_stream(",
        ];
        let allowed = ["upstream.rs", "catalog.rs"];
        if !path.starts_with("backend/") && !allowed.contains(&path.as_str()) {
            for s in sends {
                if code.contains(s) {
                    offenders.push(format!("{path} sends to a member with {s}"));
                }
            }
        }
        if path == "catalog.rs" && code.matches(".call(&decided").count() != 1 {
            offenders.push("catalog.rs calls a member other than for its list fetch".into());
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
    let backend = files
        .iter()
        .find(|(p, _)| p == "backend/mod.rs")
        .map(|(_, t)| t.as_str())
        .expect("backend/mod.rs");
    for f in [
        "pub async fn call(",
        "pub async fn notify(",
        "pub async fn open_session(",
    ] {
        let sig = backend
            .split(f)
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or_else(|| panic!("{f} not found in backend/mod.rs"));
        assert!(
            sig.contains("decided: &Decided"),
            "Backend::{f} must take the table's decision: {sig}"
        );
    }
}

mod in_process {
    use serde_json::json;

    use crate::testing::Harness;

    const ONLY_SIMPLE_TEXT: &str = r#"permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"v/test_simple_text");
permit (principal, action == Gatehouse::Action::"call_tool", resource == Gatehouse::Tool::"v/slow_compute");
"#;

    fn tasks() -> serde_json::Value {
        json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})
    }

    #[tokio::test]
    async fn a_denied_item_looks_missing_and_unknown_methods_are_refused_under_policies() {
        let h = Harness::start(Some(ONLY_SIMPLE_TEXT)).await;
        let (_, list) = h.modern(1, "tools/list", json!({}), json!({})).await;
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["test_simple_text", "slow_compute"], "{list}");
        let (_, denied) = h
            .modern(
                2,
                "tools/call",
                json!({"name": "test_error_handling", "arguments": {}}),
                json!({}),
            )
            .await;
        let (_, missing) = h
            .modern(
                3,
                "tools/call",
                json!({"name": "no_such_tool", "arguments": {}}),
                json!({}),
            )
            .await;
        assert_eq!(denied["error"]["code"], missing["error"]["code"]);
        assert_eq!(
            denied["error"]["message"]
                .as_str()
                .unwrap()
                .replace("test_error_handling", "X"),
            missing["error"]["message"]
                .as_str()
                .unwrap()
                .replace("no_such_tool", "X"),
        );
        let (status, custom) = h.modern(4, "vendor/anything", json!({}), json!({})).await;
        assert_eq!(
            (status.as_u16(), custom["error"]["code"].clone()),
            (404, json!(-32601)),
            "{custom}"
        );
    }

    #[tokio::test]
    async fn unknown_methods_reach_a_sole_member_without_policies() {
        let h = Harness::start(None).await;
        let (_, custom) = h.modern(1, "vendor/anything", json!({}), json!({})).await;
        // Relayed: the fixture itself answers that it does not know the method.
        assert_eq!(custom["error"]["code"], -32601, "{custom}");
        assert!(
            !custom["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("Method not found: vendor/anything"),
            "the gateway's own refusal, not the member's: {custom}"
        );
    }

    #[tokio::test]
    async fn task_ids_are_sealed_for_their_creator_and_open_again() {
        let h = Harness::start(Some(ONLY_SIMPLE_TEXT)).await;
        let (_, created) = h
            .modern(
                1,
                "tools/call",
                json!({"name": "slow_compute", "arguments": {"seconds": 5}}),
                tasks(),
            )
            .await;
        let handle = created["result"]["taskId"].as_str().unwrap().to_string();
        assert!(handle.starts_with(crate::tasks::HANDLE_PREFIX), "{created}");
        let (_, got) = h
            .modern(2, "tasks/get", json!({"taskId": handle}), tasks())
            .await;
        assert_eq!(got["result"]["taskId"], handle.as_str(), "{got}");
        let (status, gated) = h
            .modern(3, "tasks/get", json!({"taskId": handle}), json!({}))
            .await;
        assert_eq!(
            (status.as_u16(), gated["error"]["code"].clone()),
            (400, json!(-32021)),
            "{gated}"
        );
        let (_, cancelled) = h
            .modern(4, "tasks/cancel", json!({"taskId": handle}), tasks())
            .await;
        assert!(cancelled["error"].is_null(), "{cancelled}");
    }
}

/// `docs/reference/methods.md` is generated from the table; this keeps it in step
/// (`GATEHOUSE_BLESS=1` rewrites it).
#[test]
fn the_reference_docs_list_the_table() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference/methods.md");
    let want = reference_markdown();
    if std::env::var_os("GATEHOUSE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date: run GATEHOUSE_BLESS=1 cargo test -p gatehouse-gateway methods",
        path.display()
    );
}
