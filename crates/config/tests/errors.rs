//! Every kind of error carries the right path, line and column.

mod common;

use std::path::Path;

use common::{errors, one};
use gatehouse_config::{load_file, load_str};

const SERVERS: &str = "servers:\n  - name: echo\n    url: http://127.0.0.1:1/mcp\n  - name: files\n    command: npx\n";

#[test]
fn unknown_field_lists_keys_and_suggests() {
    let msg = one(
        "servers:\n  - name: files\n    comand: npx\n",
        3,
        5,
        "servers[0].comand",
    );
    assert!(
        msg.starts_with("unknown field \"comand\", expected one of: "),
        "{msg}"
    );
    assert!(msg.contains("url") && msg.contains("idle_timeout"), "{msg}");
    assert!(msg.ends_with("did you mean \"command\"?"), "{msg}");
    let msg = one("gateway:\n  xyzzy: 1\n", 2, 3, "gateway.xyzzy");
    assert!(!msg.contains("did you mean"), "{msg}");
}

#[test]
fn wrong_type_points_at_value() {
    let msg = one(
        "gateway:\n  max_body_bytes: lots\n",
        2,
        19,
        "gateway.max_body_bytes",
    );
    assert_eq!(msg, "found string \"lots\", expected an integer");
    let msg = one(
        "servers:\n  - name: a\n    command: x\n    timeout: 30\n",
        4,
        14,
        "servers[0].timeout",
    );
    assert_eq!(
        msg,
        "found integer 30, expected a duration such as \"30s\", \"500ms\" or \"5m\""
    );
    let msg = one("servers: {}\n", 1, 10, "servers");
    assert_eq!(msg, "found a mapping, expected a sequence");
}

#[test]
fn bad_enum_value_lists_choices() {
    let msg = one(
        "servers:\n  - name: a\n    url: http://h/\n    transport: websocket\n",
        4,
        16,
        "servers[0].transport",
    );
    assert!(
        msg.contains("expected one of: \"streamable_http\", \"sse\""),
        "{msg}"
    );
    let msg = one(
        "servers:\n  - name: a\n    url: http://h/\n    protocol: 2025-06-19\n",
        4,
        15,
        "servers[0].protocol",
    );
    assert!(
        msg.contains("\"2025-06-18\"") && msg.contains("\"auto\""),
        "{msg}"
    );
    assert!(msg.contains("did you mean \"2025-06-18\"?"), "{msg}");
}

#[test]
fn missing_field_points_at_parent_mapping() {
    let msg = one(
        &format!("{SERVERS}virtual_servers:\n  - name: v\n    include: []\n"),
        7,
        5,
        "virtual_servers[0]",
    );
    assert_eq!(msg, "missing required field \"path\"");
}

#[test]
fn invalid_name_pattern() {
    let msg = one(
        "servers:\n  - name: bad name!\n    command: x\n",
        2,
        11,
        "servers[0].name",
    );
    assert!(msg.contains("1 to 64 characters"), "{msg}");
}

#[test]
fn yaml_level_errors() {
    let msg = one(
        "gateway:\n  listen: a\n  listen: b\n",
        3,
        3,
        "gateway.listen",
    );
    assert!(
        msg.contains("duplicate key \"listen\" (first defined at line 2"),
        "{msg}"
    );
    let msg = one(
        "servers:\n  - &a {name: x, command: y}\n  - *a\n",
        3,
        5,
        "servers[1]",
    );
    assert!(msg.contains("alias"), "{msg}");
    let errs = errors("servers:\n  - name: [x\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("invalid YAML"), "{}", errs[0]);
    assert!(errs[0].line >= 2, "{}", errs[0]);
}

#[test]
fn unreadable_file_is_one_positioned_error() {
    let path = Path::new("/nonexistent/gatehouse.yaml");
    let err = load_file(path).unwrap_err();
    assert_eq!(err.len(), 1);
    let e = &err.errors()[0];
    assert_eq!((e.line, e.column), (1, 1));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/gatehouse.yaml:1:1: "),
        "{e}"
    );
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn url_and_command_rules() {
    let msg = one("servers:\n  - name: a\n", 2, 5, "servers[0]");
    assert!(msg.contains("neither url nor command"), "{msg}");
    let msg = one(
        "servers:\n  - name: a\n    url: http://h/\n    command: x\n",
        4,
        5,
        "servers[0].command",
    );
    assert!(msg.contains("both url and command"), "{msg}");
    let errs = errors(
        "servers:\n  - name: a\n    command: x\n    transport: sse\n    tls: {}\n  - name: b\n    url: http://h/\n    cwd: /tmp\n",
    );
    let got: Vec<_> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (4, "servers[0].transport"),
            (5, "servers[0].tls"),
            (8, "servers[1].cwd")
        ]
    );
    assert!(errs[0].message.contains("only valid for remote servers"));
    assert!(errs[2].message.contains("only valid for local servers"));
}

#[test]
fn invalid_urls() {
    let msg = one(
        "servers:\n  - name: a\n    url: ftp://h/x\n",
        3,
        10,
        "servers[0].url",
    );
    assert!(msg.contains("scheme \"ftp\""), "{msg}");
    let msg = one(
        "servers:\n  - name: a\n    url: not a url\n",
        3,
        10,
        "servers[0].url",
    );
    assert!(msg.contains("not a valid URL"), "{msg}");
}

#[test]
fn duplicate_and_dangling_references() {
    let text = format!(
        "{SERVERS}  - name: echo\n    command: y\nvirtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: echo\n      - server: fles\n      - server: echo\n  - name: v\n    path: /mcp\n    include: [{{server: files}}]\n"
    );
    let errs = errors(&text);
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.line, e.column, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (6, 11, "servers[2].name"),
            (13, 17, "virtual_servers[0].include[1].server"),
            (14, 17, "virtual_servers[0].include[2].server"),
            (15, 11, "virtual_servers[1].name"),
            (16, 11, "virtual_servers[1].path"),
        ],
        "{errs:#?}"
    );
    assert!(errs[0].message.contains("duplicate server name \"echo\""));
    assert!(errs[1].message.contains("unknown server \"fles\""));
    assert!(errs[1].message.contains("did you mean \"files\"?"));
    assert!(errs[2].message.contains("already included by include[0]"));
    assert!(errs[3].message.contains("duplicate virtual server name"));
    assert!(errs[4].message.contains("duplicate path \"/mcp\""));
}

#[test]
fn reserved_and_malformed_paths() {
    for (path, why) in [
        ("/healthz", "reserved"),
        ("/.well-known/x", "reserved"),
        ("/mcp/", "trailing"),
        ("mcp", "starting with"),
    ] {
        let msg = one(
            &format!(
                "{SERVERS}virtual_servers:\n  - name: v\n    path: {path}\n    include: [{{server: echo}}]\n"
            ),
            8,
            11,
            "virtual_servers[0].path",
        );
        assert!(msg.contains(why), "{path}: {msg}");
    }
}

#[test]
fn member_tool_rules() {
    let text = format!(
        "{SERVERS}virtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: files\n        tools: [read, list]\n        rename: {{ lst: ls, read: list }}\n        describe: {{ write: nope }}\n"
    );
    let errs = errors(&text);
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.line, e.column, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (12, 19, "virtual_servers[0].include[0].rename.lst"),
            (12, 34, "virtual_servers[0].include[0].rename.read"),
            (13, 21, "virtual_servers[0].include[0].describe.write"),
        ],
        "{errs:#?}"
    );
    assert!(errs[0].message.contains("not in this member's tools list"));
    assert!(errs[0].message.contains("did you mean \"list\"?"));
    assert!(
        errs[1].message.contains("already uses"),
        "{}",
        errs[1].message
    );
}

#[test]
fn duplicate_exposed_names_across_members_and_invalid_names() {
    let text = format!(
        "{SERVERS}virtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: echo\n        tools: [search]\n      - server: files\n        tools: [search, \"bad name\"]\n        rename: {{ search: search }}\n"
    );
    let errs = errors(&text);
    let got: Vec<_> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (13, "virtual_servers[0].include[1].tools[1]"),
            (14, "virtual_servers[0].include[1].rename.search"),
        ],
        "{errs:#?}"
    );
    assert!(
        errs[0]
            .message
            .contains("exposed tool name \"bad name\" is invalid")
    );
    assert!(
        errs[1].message.contains("include[0]"),
        "{}",
        errs[1].message
    );
    // Members without an allow-list are not compared: their tools are unknown.
    let ok = format!(
        "{SERVERS}virtual_servers:\n  - name: v\n    path: /mcp\n    include:\n      - server: echo\n      - server: files\n        tools: [search]\n"
    );
    assert!(load_str(&ok, Path::new("g.yaml"), &|_| None).is_ok());
}

#[test]
fn gateway_semantics() {
    let errs = errors(
        "version: 2\ngateway:\n  listen: localhost\n  max_body_bytes: 0\n  request_timeout: 0s\n  allowed_origins: [\"https://a.example/\"]\n",
    );
    let got: Vec<_> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "version"),
            (3, "gateway.listen"),
            (4, "gateway.max_body_bytes"),
            (5, "gateway.request_timeout"),
            (6, "gateway.allowed_origins[0]"),
        ],
        "{errs:#?}"
    );
}

#[test]
fn limits_must_be_positive_and_leave_room_for_one_body() {
    let errs = errors(concat!(
        "gateway:\n",
        "  max_body_bytes: 2048\n",
        "  max_body_bytes_in_flight: 1024\n",
        "  body_timeout: 0s\n",
        "  sse_queue_bytes: 0\n",
        "  connections: {max: 0, max_per_ip: 10, header_timeout: 0s}\n",
        "  sessions:\n",
        "    max_per_principal: 0\n",
        "  stderr: {max_lines_per_second: 0}\n",
        "audit:\n",
        "  max_field_bytes: 8\n",
    ));
    let mut got: Vec<_> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
    got.sort();
    assert_eq!(
        got,
        [
            (3, "gateway.max_body_bytes_in_flight"),
            (4, "gateway.body_timeout"),
            (5, "gateway.sse_queue_bytes"),
            (6, "gateway.connections.header_timeout"),
            (6, "gateway.connections.max"),
            (8, "gateway.sessions.max_per_principal"),
            (9, "gateway.stderr.max_lines_per_second"),
            (11, "audit.max_field_bytes"),
        ],
        "{errs:#?}"
    );
}

#[test]
fn several_schema_errors_are_all_reported_in_order() {
    let errs = errors(concat!(
        "servers:\n",
        "  - name: a\n",
        "    comand: x\n",
        "    timeout: soon\n",
        "  - nmae: b\n",
        "virtual_servers:\n",
        "  - name: v\n",
        "    path: 5\n",
        "    include: [{server: a, tools: nope}]\n",
        "gatewy: {}\n",
    ));
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.line, e.column, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (3, 5, "servers[0].comand"),
            (4, 14, "servers[0].timeout"),
            (5, 5, "servers[1]"),
            (5, 5, "servers[1].nmae"),
            (8, 11, "virtual_servers[0].path"),
            (9, 34, "virtual_servers[0].include[0].tools"),
            (10, 1, "gatewy"),
        ],
        "{errs:#?}"
    );
    assert!(
        errs[1].message.contains("expected a duration"),
        "{}",
        errs[1]
    );
    assert!(errs[6].message.contains("did you mean \"gateway\"?"));
    let text = errs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.starts_with("cfg/g.yaml:3:5: servers[0].comand: unknown field"),
        "{text}"
    );
}

#[test]
fn policies_block_is_checked_with_positions() {
    let msg = one("policies:\n  engine: http\n", 2, 3, "policies");
    assert!(msg.contains("engine http needs url"), "{msg}");
    let msg = one(
        "policies:\n  engine: cedar\n  paths: [p.cedar]\n  url: http://127.0.0.1:8181\n",
        4,
        3,
        "policies.url",
    );
    assert!(msg.contains("only valid with engine http"), "{msg}");
    let msg = one("policies:\n  engine: rego\n", 2, 3, "policies");
    assert!(msg.contains("engine rego needs paths"), "{msg}");
    let msg = one(
        "policies:\n  engine: http\n  url: ftp://x\n",
        3,
        8,
        "policies.url",
    );
    assert!(msg.contains("expected an http(s) URL"), "{msg}");
    let msg = one(
        "servers:\n  - name: s\n    command: x\n    operations: { t: readonly }\n",
        4,
        22,
        "servers[0].operations.t",
    );
    assert!(msg.contains("read"), "{msg}");
}
