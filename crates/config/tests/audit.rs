//! The `audit` block and `servers[].audit`: defaults, relative paths, and every invalid value
//! reported with file, line, column and field path.

mod common;

use std::path::Path;
use std::time::Duration;

use common::one;
use gatehouse_config::{ArgumentsMode, Durability, OnFailure, load_str};

#[test]
fn the_journal_is_on_by_default_and_paths_are_relative_to_the_config() {
    let config = load_str("servers: []\n", Path::new(common::FILE), &|_| None).unwrap();
    let a = &config.audit;
    assert!(a.enabled);
    assert_eq!(a.durability, Durability::Process);
    assert_eq!(a.on_failure, OnFailure::Refuse);
    assert_eq!(a.arguments, ArgumentsMode::Redacted);
    assert_eq!(a.max_argument_bytes, 4096);
    assert_eq!(a.coalesce.get(), Duration::from_secs(10));
    assert!(a.dir.is_none() && a.signing_key.is_none());

    let text = "
audit:
  dir: journal
  signing_key: keys/audit.pem
  durability: fsync
  on_failure: serve
  arguments: hashed
  secret_keys: [ssn]
servers:
  - name: hr
    command: hr-mcp
    audit: { arguments: full, redact: [\"$.employee.ssn\", \"$.notes[*].body\"] }
";
    let config = load_str(text, Path::new("/etc/gatehouse/a.yaml"), &|_| None).unwrap();
    let a = &config.audit;
    assert_eq!(a.dir.as_deref(), Some(Path::new("/etc/gatehouse/journal")));
    assert_eq!(
        a.signing_key.as_deref(),
        Some(Path::new("/etc/gatehouse/keys/audit.pem"))
    );
    assert_eq!(
        (a.durability, a.on_failure),
        (Durability::Fsync, OnFailure::Serve)
    );
    assert_eq!(a.arguments, ArgumentsMode::Hashed);
    let hr = &config.servers[0].audit;
    assert_eq!(hr.arguments, Some(ArgumentsMode::Full));
    assert_eq!(hr.redact.len(), 2);
}

#[test]
fn invalid_values_are_reported_where_they_are() {
    let m = one(
        "audit:\n  durability: sometimes\n",
        2,
        15,
        "audit.durability",
    );
    assert!(m.contains("process") && m.contains("fsync"), "{m}");
    let m = one(
        "audit:\n  arguments: everything\n",
        2,
        14,
        "audit.arguments",
    );
    assert!(m.contains("redacted"), "{m}");
    let m = one(
        "audit:\n  segment_bytes: 100\n",
        2,
        18,
        "audit.segment_bytes",
    );
    assert!(m.contains("65536"), "{m}");
    let m = one("audit:\n  coalesce: 0s\n", 2, 13, "audit.coalesce");
    assert!(m.contains("zero"), "{m}");
    let m = one(
        "audit:\n  secret_keys: [ok, \"\"]\n",
        2,
        21,
        "audit.secret_keys[1]",
    );
    assert!(m.contains("empty"), "{m}");
    let m = one(
        "servers:\n  - name: s\n    command: x\n    audit:\n      redact: [\"fields.a\"]\n",
        5,
        16,
        "servers[0].audit.redact[0]",
    );
    assert!(m.contains("starting with $"), "{m}");
    let m = one("audit:\n  enabeld: false\n", 2, 3, "audit.enabeld");
    assert!(m.contains("unknown field"), "{m}");
}
