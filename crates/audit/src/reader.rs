//! Reading the journal from a cursor: the segment files in journal order, and the complete
//! lines of one file from a byte offset. The index, every sink and `audit export` read the
//! journal this way, so a line being written (no newline yet) is never read half.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::AuditError;
use crate::event::AuditEvent;
use crate::segments::list;

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// Its file name (the key of every cursor).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Its length when listed.
    pub len: u64,
}

/// Every segment file of `dir`, oldest chain first and in order within each chain.
pub fn segment_files(dir: &Path) -> Result<Vec<SegmentFile>, AuditError> {
    let mut out = Vec::new();
    for segments in list(dir)?.into_values() {
        for path in segments.into_values() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            // A segment removed between the listing and now is simply gone.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            out.push(SegmentFile {
                name,
                path,
                len: meta.len(),
            });
        }
    }
    Ok(out)
}

/// One complete journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalLine {
    /// Byte offset of the line in its file.
    pub offset: u64,
    /// The line, without its newline.
    pub bytes: Vec<u8>,
}

/// Up to `max` complete lines of `path` from byte `from`, and the offset after the last one
/// (where the next read starts). A last line without its newline is being written, or was cut
/// by a crash: it is left for later.
pub fn read_lines(
    path: &Path,
    from: u64,
    max: usize,
) -> Result<(Vec<JournalLine>, u64), AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(from)).map_err(io)?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut lines = Vec::new();
    let mut offset = from;
    while lines.len() < max {
        let mut buf = Vec::new();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        buf.pop();
        lines.push(JournalLine { offset, bytes: buf });
        offset += n as u64;
    }
    Ok((lines, offset))
}

/// The length of `path` up to its last newline, looking at its first `len` bytes: where a
/// reader that wants only complete lines stops.
pub fn complete_len(path: &Path, len: u64) -> Result<u64, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let from = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - from) as usize];
        file.seek(SeekFrom::Start(from)).map_err(io)?;
        std::io::Read::read_exact(&mut file, chunk).map_err(io)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(from + i as u64 + 1);
        }
        end = from;
    }
    Ok(0)
}

/// A journal line read back: the event and the fields the writer put in front of it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoredEvent {
    /// Stable id, `<instance>-<seq>`: receivers de-duplicate on it.
    pub id: String,
    /// The journal (gateway process) that wrote it.
    pub instance: String,
    /// Its position in that journal's chain.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl StoredEvent {
    /// Parses one journal line; `None` for a line that is not one (`audit verify` reports
    /// those).
    pub fn parse(line: &[u8]) -> Option<StoredEvent> {
        serde_json::from_slice(line).ok()
    }
}
