//! Finding the external tools the integration tests run against.
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

/// The tool named by env `var`, else the first of `candidates` that exists (a bare name is
/// looked up on `PATH`). `None` means "skip": only allowed while `GATEHOUSE_REQUIRE_TOOLS`
/// is unset, so CI (scripts/test sets it) fails instead of silently skipping.
pub fn tool(var: &str, candidates: &[&str], install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| candidates.iter().find_map(|c| locate(c)));
    match found {
        Some(p) if p.is_file() => Some(p),
        other => {
            let what = other.map_or_else(
                || "not found".to_string(),
                |p| format!("{} is missing", p.display()),
            );
            if std::env::var_os("GATEHOUSE_REQUIRE_TOOLS").is_some() {
                panic!("{var}: {what}, and GATEHOUSE_REQUIRE_TOOLS is set ({install_hint})");
            }
            eprintln!(
                "\n*** SKIPPING: {var}: {what}. {install_hint} (scripts/test installs it and sets GATEHOUSE_REQUIRE_TOOLS=1) ***\n"
            );
            None
        }
    }
}

/// The rotel collector that `pip install rotel` put into the project's `.tools/rotel` venv
/// (the wheel ships it as `site-packages/rotel/rotel-agent`).
pub fn rotel_in_tools() -> Option<String> {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/rotel/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

fn locate(candidate: &str) -> Option<PathBuf> {
    let p = PathBuf::from(candidate);
    if p.components().count() > 1 {
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(candidate))
        .find(|p| p.is_file())
}
