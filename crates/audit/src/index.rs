//! Keeps the store's audit index up to date with the segment files, and reads full events
//! back for query results.
//!
//! The index is derived data: [`catch_up`] reads each segment from where the index stopped
//! (the cursor, in the same transaction as the rows), so it can run from the gateway every
//! second, from `gatehouse audit query` before it answers, or after a crash, and never index
//! a line twice or skip one.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use gatehouse_store::{AuditIndex, IndexedEvent};
use serde_json::Value;

use crate::AuditError;
use crate::anomaly::Observations;
use crate::line::LineView;
pub use crate::line::unix_micros;
use crate::reader::{read_lines, segment_files};
use crate::usage::UsageBatch;

/// Rows written per transaction.
const BATCH: usize = 2000;

/// What [`catch_up_with`] does besides indexing.
#[derive(Debug, Default)]
pub struct CatchUp<'a> {
    /// Skip the usage rollups (only to measure what they cost; the gateway always keeps
    /// them, and lines indexed without them are never counted later).
    pub without_usage: bool,
    /// Collects what the anomaly detectors judge from the lines indexed.
    pub observations: Option<&'a mut Observations>,
}

/// Indexes every line of `dir` not indexed yet, with its usage rollups; returns how many
/// lines were added.
pub async fn catch_up(index: &AuditIndex, dir: &Path) -> Result<u64, AuditError> {
    catch_up_with(index, dir, CatchUp::default()).await
}

/// [`catch_up`], optionally collecting observations for the anomaly detectors.
pub async fn catch_up_with(
    index: &AuditIndex,
    dir: &Path,
    mut with: CatchUp<'_>,
) -> Result<u64, AuditError> {
    let mut usage = UsageBatch::default();
    let cursors = index.cursors().await?;
    let mut added = 0u64;
    for segment in segment_files(dir)? {
        let mut from = cursors.get(&segment.name).copied().unwrap_or(0) as u64;
        while segment.len > from {
            let (lines, end) = read_lines(&segment.path, from, BATCH)?;
            if end == from {
                break;
            }
            let mut rows = Vec::with_capacity(lines.len());
            for line in &lines {
                let Ok(f) = LineView::parse(&line.bytes) else {
                    // A damaged line is `audit verify`'s business.
                    continue;
                };
                let time_us = f.time_us();
                if !with.without_usage {
                    usage.count(&f, time_us);
                }
                if let Some(o) = with.observations.as_deref_mut() {
                    o.observe(&f, time_us);
                }
                rows.push(row(f, time_us, &segment.name, line.offset));
            }
            let moved = index
                .add_with_usage(&segment.name, from as i64, end as i64, &rows, &usage.take())
                .await?;
            if !moved {
                // Another indexer got here first; carry on from where it stopped (and leave
                // the segment to the next catch-up if its cursor did not move forward, e.g.
                // because retention just forgot it).
                let cursors = index.cursors().await?;
                let theirs = cursors.get(&segment.name).copied().unwrap_or(0) as u64;
                if theirs <= from {
                    break;
                }
                from = theirs;
                continue;
            }
            added += rows.len() as u64;
            from = end;
        }
    }
    Ok(added)
}

/// The index row of one line.
fn row(f: LineView, time_us: i64, segment: &str, offset: u64) -> IndexedEvent {
    let (subject, email, issuer) = f
        .principal
        .map(|p| (p.subject, p.email, p.issuer))
        .unwrap_or_default();
    IndexedEvent {
        instance: f.instance,
        seq: f.seq,
        time_us,
        kind: f.kind.as_str().to_string(),
        outcome: f.outcome.as_str().to_string(),
        subject,
        email,
        issuer,
        virtual_server: f.virtual_server,
        server: f.server,
        method: f.method,
        target: f.target.map(|t| t.name),
        latency_us: f.latency_us,
        segment: segment.to_string(),
        byte_offset: offset as i64,
    }
}

/// The full event an index row points to (with its arguments), read from its segment file.
pub fn read_event(dir: &Path, row: &IndexedEvent) -> Result<Value, AuditError> {
    let path = dir.join(&row.segment);
    let io = |source| AuditError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::File::open(&path).map_err(io)?;
    file.seek(SeekFrom::Start(row.byte_offset as u64))
        .map_err(io)?;
    let mut line = String::new();
    BufReader::new(file).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|e| {
        AuditError::Write(format!(
            "{} at byte {}: not a journal line ({e}); run gatehouse audit verify",
            row.segment, row.byte_offset
        ))
    })
}
