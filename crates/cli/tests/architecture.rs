//! ARCHITECTURE.md kept honest, the way rust-analyzer's tidy tests keep theirs: every crate is
//! in the code map, every test and file it cites exists, and no link leaves the repository.
//! The document is where a newcomer starts; a stale name there sends them nowhere.

#[path = "common/markdown.rs"]
mod markdown;

use std::collections::BTreeSet;
use std::path::Path;

use markdown::{broken, fence, link_targets, root};

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md is readable")
}

/// Folders that hold no source of the project: build output, installed tools, results.
const SKIPPED: &[&str] = &[
    ".git",
    "target",
    "node_modules",
    ".tools",
    ".venv",
    ".gatehouse",
    "results",
    "artifacts",
    "coverage",
];

/// Every file of the repository, as paths relative to its root with `/` separators.
fn repository_files() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if SKIPPED.contains(&name.to_string_lossy().as_ref()) {
                continue;
            }
            // Symlinks (e.g. .tools into the tools cache) lead outside the repository.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                walk(&path, base, out);
            } else if kind.is_file() {
                let rel = path.strip_prefix(base).expect("under the root");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

/// The text between the heading `## {title}` and the next `## ` heading.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let start = doc
        .find(&format!("\n## {title}"))
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no `## {title}` section"));
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The `code spans` of a Markdown text, with the 1-based line each starts on. Spans may wrap
/// onto the next line, as Markdown allows; a wrapped span's line break reads as a space.
fn code_spans(text: &str) -> Vec<(usize, String)> {
    // Fenced blocks are diagrams and examples, not spans: blank them, keeping line numbers.
    let mut fenced = false;
    let mut prose = String::with_capacity(text.len());
    for l in text.lines() {
        if fence(l).is_some() {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(l);
        }
        prose.push('\n');
    }
    let mut spans = Vec::new();
    let mut line = 1;
    for (i, piece) in prose.split('`').enumerate() {
        if i % 2 == 1 && !piece.is_empty() {
            spans.push((line, piece.replace('\n', " ")));
        }
        line += piece.matches('\n').count();
    }
    spans
}

fn is_identifier(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Names of the functions defined in the repository's Rust and Python files (tests included).
fn function_names(files: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in files {
        let keyword = if file.ends_with(".rs") {
            "fn "
        } else if file.ends_with(".py") {
            "def "
        } else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(root().join(file)) else {
            continue;
        };
        for piece in text.split(keyword).skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn every_crate_is_in_the_code_map() {
    let doc = architecture();
    let map = section(&doc, "Code map");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        let entry = entry.expect("crates/ entry");
        if !entry.path().join("Cargo.toml").is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !map.contains(&format!("### `crates/{name}`")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "crates without a `### `crates/<name>`` paragraph in ARCHITECTURE.md's code map \
         (say what each owns and what it must not do): {missing:?}"
    );
}

/// Test names in the invariants section are the snake_case code spans with two or more
/// underscores (shorter ones are config keys and actions such as `call_tool`); each must be a
/// function of the repository, so a renamed or deleted test cannot stay cited as a guard.
#[test]
fn every_test_the_invariants_cite_exists() {
    let doc = architecture();
    let invariants = section(&doc, "Invariants and the tests that guard them");
    let defined = function_names(&repository_files());
    let missing: Vec<_> = code_spans(invariants)
        .into_iter()
        .filter(|(_, s)| is_identifier(s) && s.matches('_').count() >= 2)
        .filter(|(_, s)| !defined.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's invariants cite tests that no Rust or Python file defines \
         (line within the section, name): {missing:?}"
    );
}

/// Every file path the document names in a code span (`crates/cli/tests/faults.rs`,
/// `frontdoor/session/tests.rs`, `docs/limits.md`) is the end of a path in the repository.
#[test]
fn every_file_it_names_exists() {
    let doc = architecture();
    let files = repository_files();
    const EXTENSIONS: &[&str] = &[".rs", ".py", ".ts", ".md", ".toml", ".sh", ".sql", ".yaml"];
    let mut missing = Vec::new();
    for (line, span) in code_spans(&doc) {
        let looks_like_path = EXTENSIONS.iter().any(|e| span.ends_with(e))
            && !span.contains(' ')
            && !span.contains('*');
        if !looks_like_path {
            continue;
        }
        let leaves = span.starts_with("../") || span.starts_with('/');
        let found = !leaves
            && files
                .iter()
                .any(|f| f == &span || f.ends_with(&format!("/{span}")));
        if !found {
            missing.push((line, span));
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names files that are not in the repository (line, path): {missing:?}"
    );
}

/// Links resolve inside the repository: no URL to the outside, no path above the root, no
/// missing file or heading.
#[test]
fn no_link_leaves_the_repository() {
    let doc = architecture();
    let mut bad = Vec::new();
    let mut fenced = false;
    for (n, line) in doc.lines().enumerate() {
        if fence(line).is_some() {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for target in link_targets(line) {
            let why = if target.contains("://") || target.starts_with("mailto:") {
                Some("leaves the repository".to_string())
            } else {
                broken(Path::new("ARCHITECTURE.md"), &target)
            };
            if let Some(why) = why {
                bad.push(format!("line {}: ({target}): {why}", n + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "ARCHITECTURE.md links outside the repository or to nothing:\n{}",
        bad.join("\n")
    );
}
