//! `audit.sinks`: an elasticsearch sink's credentials are an API key or basic auth, and the
//! mistakes are reported where they are.

mod common;

use common::one;

const HEAD: &str =
    "audit:\n  sinks:\n    - name: es\n      type: elasticsearch\n      url: http://es:9200\n";

#[test]
fn elasticsearch_takes_an_api_key_or_basic_auth_not_both() {
    let m = one(
        &format!("{HEAD}      token: env:SET\n      username: u\n      password: env:SET\n"),
        6,
        7,
        "audit.sinks[0].token",
    );
    assert!(m.contains("either token") && m.contains("not both"), "{m}");
    let m = one(
        &format!("{HEAD}      username: u\n"),
        6,
        7,
        "audit.sinks[0].username",
    );
    assert!(m.contains("needs password"), "{m}");
    let m = one(
        &format!("{HEAD}      password: env:SET\n"),
        6,
        7,
        "audit.sinks[0].password",
    );
    assert!(m.contains("needs username"), "{m}");
    for ok in [
        "",
        "      token: env:SET\n",
        "      username: u\n      password: env:SET\n",
    ] {
        let text = format!("{HEAD}{ok}");
        let env = |name: &str| (name == "SET").then(|| "1".to_string());
        gatehouse_config::load_str(&text, std::path::Path::new("gatehouse.yaml"), &env)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"));
    }
}
