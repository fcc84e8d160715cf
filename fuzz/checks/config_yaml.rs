//! `gatehouse_config::load_str` on arbitrary text.
//!
//! Invariants: loading ends (libFuzzer's `-timeout` catches a hang, `-rss_limit_mb` a
//! blow-up such as billion-laughs aliases); every error carries a 1-based line and column
//! inside the text (or just past its end), a non-empty message and the file name; loading the
//! same text twice gives the same outcome.

use std::path::Path;

/// `${VAR}` values the loader may read.
fn env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("8080".into()),
        "HOST" => Some("127.0.0.1".into()),
        "EMPTY" => Some(String::new()),
        "TOKEN" => Some("s3cr3t".into()),
        _ => None,
    }
}

/// Runs the check on one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let origin = Path::new("/fuzz/gatehouse.yaml");
    let first = gatehouse_config::load_str(&text, origin, &env);
    let Err(errors) = &first else {
        return;
    };
    assert!(!errors.is_empty(), "an error result without errors");
    // Lines as YAML counts them (CRLF, LF or a lone CR ends one), after a BOM.
    let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let normalised = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalised.split('\n').collect();
    for e in errors.iter() {
        assert!(e.line >= 1 && e.column >= 1, "position not 1-based: {e}");
        assert!(
            e.line <= lines.len(),
            "line past the end ({} lines): {e}",
            lines.len()
        );
        let width = lines[e.line - 1].chars().count();
        assert!(
            e.column <= width + 1,
            "column past the end of its line ({width} characters): {e}"
        );
        assert!(!e.message.is_empty(), "an error without a message at {e}");
        assert_eq!(e.file, origin);
    }
    let second = gatehouse_config::load_str(&text, origin, &env);
    assert_eq!(
        first.as_ref().err(),
        second.as_ref().err(),
        "loading the same text twice gave different errors"
    );
}
