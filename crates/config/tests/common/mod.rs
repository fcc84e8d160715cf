//! Helpers of the config tests: load a text that must fail, and check its one error's
//! position, field path and rendering.
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::path::Path;

use gatehouse_config::{ConfigError, load_str};

/// The name the texts are loaded under.
pub const FILE: &str = "cfg/g.yaml";

/// Every error of `text` (with `${SET}` set to `1` and nothing else in the environment).
pub fn errors(text: &str) -> Vec<ConfigError> {
    let env = |name: &str| (name == "SET").then(|| "1".to_string());
    match load_str(text, Path::new(FILE), &env) {
        Ok(c) => panic!("expected errors, loaded {c:#?}"),
        Err(e) => e.into_iter().collect(),
    }
}

/// The single error of `text`, checked against the expected position and field path; returns
/// its message.
pub fn one(text: &str, line: usize, column: usize, path: &str) -> String {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = &errs[0];
    assert_eq!(
        (e.line, e.column, e.path.as_str()),
        (line, column, path),
        "{e}"
    );
    assert_eq!(e.file, Path::new(FILE));
    assert!(
        e.to_string()
            .starts_with(&format!("{FILE}:{line}:{column}: {path}: ")),
        "{e}"
    );
    e.message.clone()
}
