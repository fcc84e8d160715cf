//! The journal directory: segment files `<instance>-<NNNNNN>.jsonl`, one chain per instance,
//! and `checkpoints/<instance>.jsonl` next to them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::AuditError;
use crate::chain::{GENESIS, line_hash};

/// A new instance id: the UTC start time (sortable) and 24 random bits, e.g.
/// `20261126T170501Z-a1b2c3`.
pub fn new_instance_id() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{compact}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// The file name of segment `n` of `instance`.
pub fn segment_name(instance: &str, n: u32) -> String {
    format!("{instance}-{n:06}.jsonl")
}

/// Splits a segment file name into instance and number.
pub fn parse_segment_name(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (instance, n) = stem.rsplit_once('-')?;
    if n.len() != 6 || instance.is_empty() {
        return None;
    }
    Some((instance, n.parse().ok()?))
}

/// The checkpoints file of `instance`.
pub fn checkpoints_path(dir: &Path, instance: &str) -> PathBuf {
    dir.join("checkpoints").join(format!("{instance}.jsonl"))
}

/// Every chain in `dir`: instance → its segment files by number. Instances sort by start time.
pub fn list(dir: &Path) -> Result<BTreeMap<String, BTreeMap<u32, PathBuf>>, AuditError> {
    let mut out: BTreeMap<String, BTreeMap<u32, PathBuf>> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(AuditError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((instance, n)) = parse_segment_name(name) {
            out.entry(instance.to_string())
                .or_default()
                .insert(n, entry.path());
        }
    }
    // Instances that left only checkpoints (every segment deleted) are chains too.
    if let Ok(entries) = std::fs::read_dir(dir.join("checkpoints")) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(instance) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) {
                out.entry(instance.to_string()).or_default();
            }
        }
    }
    Ok(out)
}

/// The fields of a line the chain needs.
#[derive(Debug, Deserialize)]
pub struct LineHead {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Hash of the previous line.
    pub prev: String,
}

/// Where a chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The instance.
    pub instance: String,
    /// Seq of its last complete line (0: none).
    pub seq: u64,
    /// Hash of that line ([`GENESIS`] when none).
    pub hash: String,
    /// Bytes after the last newline (a line cut by a crash or power loss).
    pub torn_bytes: u64,
}

/// Reads where the chain of `instance` ends (its last segment's last complete line).
pub fn tail(instance: &str, segments: &BTreeMap<u32, PathBuf>) -> Result<Tail, AuditError> {
    let mut t = Tail {
        instance: instance.to_string(),
        seq: 0,
        hash: GENESIS.to_string(),
        torn_bytes: 0,
    };
    // The last segment may be empty (a rotation just before a crash): walk back.
    for path in segments.values().rev() {
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        let mut torn = 0u64;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
                last = Some(std::mem::take(&mut buf));
            } else {
                torn = n as u64;
            }
        }
        if t.torn_bytes == 0 {
            t.torn_bytes = torn;
        }
        if let Some(line) = last {
            if let Ok(head) = serde_json::from_slice::<LineHead>(&line) {
                t.seq = head.seq;
            }
            t.hash = line_hash(&line);
            return Ok(t);
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let a = new_instance_id();
        assert_eq!(a.len(), "20261126T170501Z-a1b2c3".len(), "{a}");
        let name = segment_name(&a, 12);
        assert_eq!(parse_segment_name(&name), Some((a.as_str(), 12)));
        assert_eq!(parse_segment_name("notes.txt"), None);
        assert_eq!(parse_segment_name("x-12.jsonl"), None);
    }
}
