//! A server's `credentials` secrets: `env:`, `file:` and `store:` references are accepted, a
//! literal or a malformed stored name is refused at its field.

mod common;

use std::path::Path;

use common::one;
use gatehouse_config::{SecretSource, load_str};

const HEAD: &str = "servers:\n  - name: api\n    url: https://api.example.com/mcp\n    credentials:\n      type: static_secret\n";

#[test]
fn a_credential_may_read_a_stored_secret() {
    let c = load_str(
        &format!("{HEAD}      secret: store:api-key\n"),
        Path::new("g.yaml"),
        &|_| None,
    )
    .unwrap();
    let secret = c.servers[0]
        .credentials
        .as_ref()
        .unwrap()
        .secret
        .as_ref()
        .unwrap();
    assert_eq!(secret.source(), Some(SecretSource::Store("api-key")));
}

#[test]
fn a_malformed_stored_name_or_a_literal_is_refused_at_its_field() {
    let msg = one(
        &format!("{HEAD}      secret: \"store:bad name\"\n"),
        6,
        15,
        "servers[0].credentials.secret",
    );
    assert!(
        msg.contains("expected store:NAME with 1-128 characters"),
        "{msg}"
    );
    let msg = one(
        &format!("{HEAD}      secret: hunter2\n"),
        6,
        15,
        "servers[0].credentials.secret",
    );
    assert!(
        msg.contains("expected a secret reference") && !msg.contains("hunter2"),
        "{msg}"
    );
}
