//! How far behind a sink is: the journal lines past its cursor.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use crate::AuditError;
use crate::reader::segment_files;

/// The part of the journal a sink has not delivered yet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lag {
    /// Complete lines past the cursor.
    pub lines: u64,
    /// Bytes past the cursor.
    pub bytes: u64,
    /// The time of the oldest of those lines.
    pub oldest: Option<String>,
}

#[derive(Deserialize)]
struct TimeField {
    time: String,
}

/// The lag of a sink whose cursors are `cursors` (segment file name → bytes delivered).
pub fn lag(dir: &Path, cursors: &HashMap<String, i64>) -> Result<Lag, AuditError> {
    let mut out = Lag::default();
    for segment in segment_files(dir)? {
        let from = cursors.get(&segment.name).copied().unwrap_or(0).max(0) as u64;
        if segment.len <= from {
            continue;
        }
        let io = |source| AuditError::Io {
            path: segment.path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&segment.path).map_err(io)?;
        file.seek(SeekFrom::Start(from)).map_err(io)?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            out.lines += 1;
            out.bytes += n as u64;
            if out.oldest.is_none() {
                out.oldest = serde_json::from_slice::<TimeField>(&buf)
                    .ok()
                    .map(|t| t.time);
            }
        }
    }
    Ok(out)
}
