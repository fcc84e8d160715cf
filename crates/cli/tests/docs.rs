//! The user docs kept honest: the README stays short, every YAML example loads, and every
//! relative link leads somewhere. Docs are where users copy configuration from; an example
//! that no longer loads, or a link to a moved page, costs them more than it costs us to check.
//!
//! The rule for YAML examples (also in docs/README.md, "Examples in these docs"), by the
//! fenced code block's info string:
//!
//! - `yaml` or `yml`: a Gatehouse configuration file. Every top-level section is optional, so a
//!   block showing only `audit:` is a whole configuration. It is loaded with
//!   `gatehouse_config::load_str` and must load with no error. `${VAR}` resolves to a
//!   placeholder, except a variable the block writes with a default (`${VAR:-x}`), which is
//!   unset so the default applies. The loader reads no file the config names, so example paths
//!   need not exist.
//! - `yaml policy-tests`: a policy test file (`*.tests.yaml`), loaded as test cases.
//! - `yaml skip-check REASON`: not loaded; the reason is required.
//!
//! Any other word after `yaml` is an error, so a typo cannot switch a check off.

#[path = "common/markdown.rs"]
mod markdown;

use std::path::{Path, PathBuf};

use markdown::{anchors, broken, fence, link_targets, read, root};

/// The README's budget: the two commands, a tour and links; the rest belongs in docs/.
const README_MAX_LINES: usize = 250;

/// Stands in for every `${VAR}` without a default, so examples need no environment.
const PLACEHOLDER: &str = "example-value";

/// README.md and every Markdown file under docs/, as paths relative to the root.
fn doc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a readable directory entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(
                    path.strip_prefix(base)
                        .expect("under the root")
                        .to_path_buf(),
                );
            }
        }
    }
    let root = root();
    let mut out = vec![PathBuf::from("README.md")];
    walk(&root.join("docs"), &root, &mut out);
    out.sort();
    out
}

/// One fenced code block.
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// Spaces before the fence (a block inside a list item is indented).
    indent: usize,
    /// The info string after the fence, e.g. `yaml policy-tests`.
    info: String,
    /// The content, with the fence's indentation removed.
    text: String,
}

/// Every fenced code block of a Markdown text, in order.
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(char, usize, Block)> = None;
    for (i, line) in text.lines().enumerate() {
        match open.take() {
            None => {
                if let Some((ch, len, indent, info)) = fence(line) {
                    let block = Block {
                        line: i + 1,
                        indent,
                        info: info.to_string(),
                        text: String::new(),
                    };
                    open = Some((ch, len, block));
                }
            }
            Some((ch, len, mut block)) => {
                let closes = fence(line)
                    .is_some_and(|(c, l, _, info)| c == ch && l >= len && info.is_empty());
                if closes {
                    out.push(block);
                } else {
                    let strip = line.len() - line.trim_start_matches(' ').len();
                    block.text.push_str(&line[strip.min(block.indent)..]);
                    block.text.push('\n');
                    open = Some((ch, len, block));
                }
            }
        }
    }
    out
}

/// What a YAML block is, from its info string.
#[derive(Debug, PartialEq)]
enum Kind {
    Config,
    PolicyTests,
    Skipped,
}

/// `None` for a block that is not YAML; an error for a YAML block with an unknown tag.
fn yaml_kind(info: &str) -> Option<Result<Kind, String>> {
    let mut words = info.split_whitespace();
    let lang = words.next()?;
    if lang != "yaml" && lang != "yml" {
        return None;
    }
    let rest: Vec<&str> = words.collect();
    Some(match rest.as_slice() {
        [] => Ok(Kind::Config),
        ["policy-tests"] => Ok(Kind::PolicyTests),
        ["skip-check", _reason, ..] => Ok(Kind::Skipped),
        ["skip-check"] => Err("`yaml skip-check` needs a reason after it".to_string()),
        _ => Err(format!(
            "unknown tag {:?}: expected `yaml`, `yaml policy-tests` or `yaml skip-check REASON`",
            rest.join(" ")
        )),
    })
}

/// Names the block writes as `${NAME:-default}`: left unset, so their defaults are used.
fn names_with_defaults(text: &str) -> Vec<String> {
    text.split("${")
        .skip(1)
        .filter_map(|s| s.split_once(":-").map(|(name, _)| name))
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_string)
        .collect()
}

/// Loads one YAML block as its kind says; the errors are positioned in the Markdown file.
fn check_yaml(doc: &Path, block: &Block, kind: &Kind) -> Result<(), String> {
    // The loader's line 1 is the line after the opening fence.
    let at = |line: usize, column: usize| {
        format!(
            "{}:{}:{}",
            doc.display(),
            block.line + line,
            column + block.indent
        )
    };
    let problems: Vec<String> = match kind {
        Kind::Skipped => return Ok(()),
        Kind::Config => {
            let defaults = names_with_defaults(&block.text);
            let env =
                |name: &str| (!defaults.iter().any(|d| d == name)).then(|| PLACEHOLDER.to_string());
            match gatehouse_config::load_str(&block.text, doc, &env) {
                Ok(_) => return Ok(()),
                Err(errors) => errors
                    .iter()
                    .map(|e| format!("{}: {}: {}", at(e.line, e.column), e.path, e.message))
                    .collect(),
            }
        }
        Kind::PolicyTests => {
            match gatehouse_config::load_yaml::<Vec<gatehouse_policy::TestCase>>(&block.text, doc) {
                Ok(cases) if cases.is_empty() => vec![format!("{}: no test cases", at(1, 1))],
                Ok(_) => return Ok(()),
                Err(errors) => errors
                    .iter()
                    .map(|e| format!("{}: {}: {}", at(e.line, e.column), e.path, e.message))
                    .collect(),
            }
        }
    };
    Err(format!(
        "the ```{} block at {}:{} does not load:\n  {}",
        block.info,
        doc.display(),
        block.line,
        problems.join("\n  ")
    ))
}

#[test]
fn readme_is_short() {
    let lines = read(Path::new("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, at most {README_MAX_LINES} allowed: keep the two commands, \
         the tour and the documentation list there, and move the rest into the docs/ page for \
         its task (docs/README.md lists them), linked from the README's Documentation list"
    );
}

#[test]
fn every_yaml_example_in_docs_loads() {
    let mut failures = Vec::new();
    let (mut yaml_blocks, mut fences_seen) = (0, 0);
    for doc in doc_files() {
        let text = read(&doc);
        // Counted independently of the parser, so a parser that misses blocks fails here.
        fences_seen += text
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                l.starts_with("```yaml") || l.starts_with("```yml")
            })
            .count();
        for block in blocks(&text) {
            match yaml_kind(&block.info) {
                None => {}
                Some(Err(why)) => {
                    failures.push(format!("{}:{}: {why}", doc.display(), block.line));
                    yaml_blocks += 1;
                }
                Some(Ok(kind)) => {
                    yaml_blocks += 1;
                    if let Err(e) = check_yaml(&doc, &block, &kind) {
                        failures.push(e);
                    }
                }
            }
        }
    }
    assert_eq!(
        yaml_blocks, fences_seen,
        "the block parser found {yaml_blocks} YAML blocks but {fences_seen} lines open one"
    );
    assert!(
        yaml_blocks > 0,
        "no YAML examples found in README.md and docs/"
    );
    assert!(
        failures.is_empty(),
        "{} YAML example(s) in the docs do not load (the rule is at the top of \
         crates/cli/tests/docs.rs and in docs/README.md):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn docs_links_resolve() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for doc in doc_files() {
        let text = read(&doc);
        let mut in_code = false;
        for (i, line) in text.lines().enumerate() {
            if fence(line).is_some() {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            for target in link_targets(line) {
                // Links to other sites (https:, mailto:) are not checked here.
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                if let Some(why) = broken(&doc, &target) {
                    failures.push(format!("{}:{}: ({target}): {why}", doc.display(), i + 1));
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no relative links found in README.md and docs/"
    );
    assert!(
        failures.is_empty(),
        "{} relative link(s) in the docs do not resolve:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_parsers_find_what_they_should() {
    // The helpers above decide what is checked; a helper that finds nothing passes everything.
    let md = "# Top\n\n- item\n\n  ```yaml policy-tests\n  - name: x\n  ```\n\n```yml\na: 1\n```\n";
    let found = blocks(md);
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].line, found[0].indent), (5, 2));
    assert_eq!(found[0].text, "- name: x\n");
    assert_eq!(yaml_kind(&found[0].info), Some(Ok(Kind::PolicyTests)));
    assert_eq!(yaml_kind("yaml"), Some(Ok(Kind::Config)));
    assert_eq!(yaml_kind("sh"), None);
    assert!(matches!(yaml_kind("yaml fragmnet"), Some(Err(_))));
    assert!(matches!(yaml_kind("yaml skip-check"), Some(Err(_))));
    assert_eq!(
        link_targets("see [a](b.md#c) and `[x](y)` and [d](https://e \"t\")"),
        ["b.md#c", "https://e"]
    );
    assert_eq!(
        anchors(
            "# Audit and telemetry (`cargo bench -p x`)\n## Server→client, again\n## Server→client, again\n"
        ),
        [
            "audit-and-telemetry-cargo-bench--p-x",
            "serverclient-again",
            "serverclient-again-1"
        ]
    );
    assert_eq!(names_with_defaults("a: ${A:-1} ${B} ${C:-}"), ["A", "C"]);
}
