//! Replays the committed inputs of a fuzz target — its seeds (`fuzz/corpus/<target>/`) and
//! the inputs that once failed (`fuzz/regressions/<target>/`) — through the target's check,
//! so `cargo nextest run --workspace` keeps every fixed bug fixed.

use std::path::{Path, PathBuf};

/// Runs `check` on every file of the target's corpus and regressions folders; a failure
/// names the file. Panics when there is no input at all (a moved folder must not pass).
pub fn replay(manifest_dir: &str, target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(manifest_dir).join("../../fuzz");
    let mut inputs: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz.join(kind).join(target)).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "no inputs for fuzz target {target} under {}",
        fuzz.display()
    );
    for path in &inputs {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target {target} fails on {}",
            path.display()
        );
    }
}
