//! The `isolation` block: each mistake is reported at its field, with what to write instead.

mod common;

use std::path::Path;

use common::{errors, one};
use gatehouse_config::{IsolationConfig, RuntimeKind, load_str};

const HEAD: &str = "servers:\n  - name: s\n    command: node\n    isolation:\n";

#[test]
fn a_full_block_loads_with_paths_made_absolute_and_sizes_parsed() {
    let text = format!(
        "{HEAD}      filesystem: {{ read: [data], write: [/tmp/out] }}\n      resources: {{ memory: 512Mi, cpus: 0.5, pids: 64 }}\n      secrets: {{ TOKEN: \"env:TOKEN\" }}\n      secret_files: {{ /run/secrets/t: \"file:t.txt\" }}\n"
    );
    let c = load_str(&text, Path::new("/etc/gh/g.yaml"), &|_| None).unwrap();
    let iso: &IsolationConfig = c.servers[0].isolation.as_ref().unwrap();
    assert_eq!(iso.runtime(), RuntimeKind::Sandbox);
    assert_eq!(iso.filesystem.read, [Path::new("/etc/gh/data")]);
    assert_eq!(iso.resources.memory.0, 512 << 20);
    assert_eq!(iso.resources.pids, 64);
    let file = &iso.secret_files[Path::new("/run/secrets/t")];
    assert_eq!(file.0, "file:/etc/gh/t.txt");
}

#[test]
fn limits_must_be_usable() {
    let msg = one(
        &format!("{HEAD}      resources: {{ memory: 1Mi }}\n"),
        5,
        28,
        "servers[0].isolation.resources.memory",
    );
    assert!(msg.contains("at least 16Mi"), "{msg}");
    let msg = one(
        &format!("{HEAD}      resources: {{ pids: 0 }}\n"),
        5,
        26,
        "servers[0].isolation.resources.pids",
    );
    assert!(msg.contains("at least 1"), "{msg}");
    let msg = one(
        &format!("{HEAD}      resources: {{ memory: 12 MB }}\n"),
        5,
        28,
        "servers[0].isolation.resources.memory",
    );
    assert!(msg.contains("a size such as \"512Mi\""), "{msg}");
}

#[test]
fn secrets_must_be_references_and_are_never_echoed() {
    let msg = one(
        &format!("{HEAD}      secrets: {{ TOKEN: hunter2 }}\n"),
        5,
        25,
        "servers[0].isolation.secrets.TOKEN",
    );
    assert!(
        msg.contains("env:NAME, file:PATH or store:NAME") && !msg.contains("hunter2"),
        "{msg}"
    );
    let msg = one(
        &format!("{HEAD}      secrets: {{ TOKEN: \"store:gh token\" }}\n"),
        5,
        25,
        "servers[0].isolation.secrets.TOKEN",
    );
    assert!(msg.contains("1-128 characters"), "{msg}");
}

#[test]
fn fields_that_mean_nothing_for_the_runtime_are_refused() {
    let msg = one(
        &format!("{HEAD}      runtime: process\n      filesystem: {{ read: [/srv] }}\n"),
        6,
        7,
        "servers[0].isolation.filesystem",
    );
    assert!(msg.contains("no effect with runtime process"), "{msg}");
    let msg = one(
        &format!("{HEAD}      image: localhost/x:1\n"),
        5,
        7,
        "servers[0].isolation.image",
    );
    assert!(msg.contains("only valid with runtime container"), "{msg}");
    let msg = one(
        &format!("{HEAD}      runtime: container\n"),
        4,
        5,
        "servers[0].isolation",
    );
    assert!(msg.contains("runtime container needs an image"), "{msg}");
    let msg = one(
        "servers:\n  - name: r\n    url: http://127.0.0.1:1/mcp\n    isolation: { runtime: process }\n",
        4,
        5,
        "servers[0].isolation",
    );
    assert!(msg.contains("only valid for local servers"), "{msg}");
}

#[test]
fn egress_rules_are_checked_and_allow_lists_are_accepted_only_where_they_are_enforced() {
    let errs = errors(&format!(
        "{HEAD}      network: {{ egress: [\"api.github.com\"] }}\n"
    ));
    let messages: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("without a port"), "{messages:?}");
    // The sandbox enforces allow-lists (its own network namespace and egress proxy).
    let c = load_str(
        &format!(
            "{HEAD}      network: {{ egress: [\"api.github.com:443\", \"10.20.0.0/16:5432\"] }}\n"
        ),
        Path::new("g.yaml"),
        &|_| None,
    )
    .unwrap();
    let egress = &c.servers[0].isolation.as_ref().unwrap().network.egress;
    let policy = gatehouse_config::EgressPolicy::parse(egress).unwrap();
    assert!(policy.allows_name("api.github.com", 443));
    // A plain process cannot be held to a list: refused, not ignored.
    let msg = one(
        &format!(
            "{HEAD}      runtime: process\n      network: {{ egress: [\"a.example:443\"] }}\n"
        ),
        6,
        7,
        "servers[0].isolation.network",
    );
    assert!(msg.contains("no effect with runtime process"), "{msg}");
    // A container joins the same kind of namespace: accepted.
    load_str(
        &format!(
            "{HEAD}      runtime: container\n      image: localhost/x:1\n      network: {{ egress: [\"a.example:443\"] }}\n"
        ),
        Path::new("g.yaml"),
        &|_| None,
    )
    .unwrap();
    // An empty list is the default: no network, and valid.
    load_str(
        &format!("{HEAD}      network: {{ egress: [] }}\n"),
        Path::new("g.yaml"),
        &|_| None,
    )
    .unwrap();
}

#[test]
fn the_root_folder_cannot_be_granted() {
    let msg = one(
        &format!("{HEAD}      filesystem: {{ write: [/] }}\n"),
        5,
        29,
        "servers[0].isolation.filesystem.write[0]",
    );
    assert!(msg.contains("would undo the sandbox"), "{msg}");
}

#[test]
fn a_lockfile_goes_with_npx_or_uvx_in_the_sandbox_and_is_made_absolute() {
    let text = "servers:\n  - name: s\n    command: npx\n    args: [\"-y\", \"pkg@1.0.0\"]\n    isolation:\n      lockfile: locks/package-lock.json\n";
    let c = load_str(text, Path::new("/etc/gh/g.yaml"), &|_| None).unwrap();
    let iso = c.servers[0].isolation.as_ref().unwrap();
    assert_eq!(
        iso.lockfile.as_deref(),
        Some(Path::new("/etc/gh/locks/package-lock.json"))
    );
    let msg = one(
        &format!("{HEAD}      lockfile: package-lock.json\n"),
        5,
        7,
        "servers[0].isolation.lockfile",
    );
    assert!(
        msg.contains("only used when the command is npx or uvx"),
        "{msg}"
    );
    let msg = one(
        "servers:\n  - name: s\n    command: uvx\n    args: [pkg]\n    isolation:\n      runtime: process\n      lockfile: requirements.txt\n",
        7,
        7,
        "servers[0].isolation.lockfile",
    );
    assert!(msg.contains("no effect with runtime process"), "{msg}");
}

#[test]
fn a_container_needs_an_image_and_takes_a_runtime_class() {
    let text = format!(
        "{HEAD}      runtime: container\n      image: localhost/mcp:1\n      runtime_class: runsc\n      filesystem: {{ read: [/srv/data] }}\n      secret_files: {{ /run/secrets/t: \"env:T\" }}\n"
    );
    let c = load_str(&text, Path::new("/etc/gh/g.yaml"), &|_| None).unwrap();
    let iso = c.servers[0].isolation.as_ref().unwrap();
    assert_eq!(iso.runtime(), RuntimeKind::Container);
    assert_eq!(iso.runtime_class.as_deref(), Some("runsc"));
    let msg = one(
        &format!("{HEAD}      runtime: container\n      image: \" \"\n"),
        6,
        14,
        "servers[0].isolation.image",
    );
    assert!(msg.contains("empty image name"), "{msg}");
    let msg = one(
        &format!(
            "{HEAD}      runtime: container\n      image: localhost/mcp:1\n      preset: node\n"
        ),
        7,
        7,
        "servers[0].isolation.preset",
    );
    assert!(msg.contains("no effect with runtime container"), "{msg}");
}

#[test]
fn an_http_server_in_a_container_names_its_port_and_path() {
    let text = format!(
        "{HEAD}      runtime: container\n      image: localhost/mcp:1\n      http: {{ port: 8080 }}\n"
    );
    let c = load_str(&text, Path::new("/etc/gh/g.yaml"), &|_| None).unwrap();
    let http = c.servers[0]
        .isolation
        .as_ref()
        .unwrap()
        .http
        .as_ref()
        .unwrap();
    assert_eq!((http.port, http.path.as_str()), (8080, "/mcp"));
    let msg = one(
        &format!("{HEAD}      http: {{ port: 8080 }}\n"),
        5,
        7,
        "servers[0].isolation.http",
    );
    assert!(msg.contains("only valid with runtime container"), "{msg}");
    let msg = one(
        &format!(
            "{HEAD}      runtime: container\n      image: localhost/mcp:1\n      http: {{ port: 0 }}\n"
        ),
        7,
        21,
        "servers[0].isolation.http.port",
    );
    assert!(msg.contains("1 to 65535"), "{msg}");
    let msg = one(
        &format!(
            "{HEAD}      runtime: container\n      image: localhost/mcp:1\n      http: {{ port: 80, path: mcp }}\n"
        ),
        7,
        31,
        "servers[0].isolation.http.path",
    );
    assert!(msg.contains("absolute URL path"), "{msg}");
}
