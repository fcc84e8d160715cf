//! The index, the usage rollups and the anomaly detectors depend on each other only one way:
//! all three read a journal line through the typed view in `line`, and the index drives the
//! other two. A cycle among them (as the string-keyed `LineFields` once made) fails here.
//!
//! This reads the crate's source: module dependencies are a property of the code, not of
//! anything it does at run time. Comment lines are skipped, so a doc link is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules judged, and their files.
const MODULES: [(&str, &[&str]); 4] = [
    ("index", &["src/index.rs"]),
    ("usage", &["src/usage.rs"]),
    (
        "anomaly",
        &[
            "src/anomaly/mod.rs",
            "src/anomaly/observe.rs",
            "src/anomaly/baseline.rs",
        ],
    ),
    ("line", &["src/line.rs"]),
];

/// Which of the judged modules each one refers to (`crate::<module>` in code).
fn graph() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeMap::new();
    for (module, files) in MODULES {
        let mut uses = BTreeSet::new();
        for file in files {
            let path = root.join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for line in text
                .lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"))
            {
                for (other, _) in MODULES {
                    if other != module && line.contains(&format!("crate::{other}")) {
                        uses.insert(other);
                    }
                }
            }
        }
        out.insert(module, uses);
    }
    out
}

/// A cycle through `from`, if any (depth-first).
fn cycle(
    graph: &BTreeMap<&'static str, BTreeSet<&'static str>>,
    from: &'static str,
    path: &mut Vec<&'static str>,
) -> Option<Vec<&'static str>> {
    if let Some(i) = path.iter().position(|m| *m == from) {
        let mut c = path[i..].to_vec();
        c.push(from);
        return Some(c);
    }
    path.push(from);
    for next in &graph[from] {
        if let Some(c) = cycle(graph, next, path) {
            return Some(c);
        }
    }
    path.pop();
    None
}

#[test]
fn index_usage_and_anomaly_share_the_line_view_without_a_cycle() {
    let g = graph();
    for (module, _) in MODULES {
        if let Some(c) = cycle(&g, module, &mut Vec::new()) {
            panic!("import cycle: {} (graph: {g:?})", c.join(" → "));
        }
    }
    for module in ["index", "usage", "anomaly"] {
        assert!(
            g[module].contains("line"),
            "{module} reads journal lines through the typed view (graph: {g:?})"
        );
    }
    assert!(
        g["line"].is_empty(),
        "the view depends on none of its readers"
    );
}
