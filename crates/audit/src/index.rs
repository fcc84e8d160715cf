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
use serde::Deserialize;
use serde_json::Value;

use crate::AuditError;
use crate::reader::{JournalLine, read_lines, segment_files};

/// Rows written per transaction.
const BATCH: usize = 2000;

#[derive(Deserialize)]
struct IndexFields {
    instance: String,
    seq: i64,
    time: String,
    #[serde(rename = "type")]
    kind: String,
    outcome: String,
    #[serde(default)]
    principal: Option<PrincipalFields>,
    #[serde(default)]
    virtual_server: Option<String>,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    target: Option<TargetFields>,
    #[serde(default)]
    latency_us: Option<i64>,
}

#[derive(Deserialize)]
struct PrincipalFields {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
}

#[derive(Deserialize)]
struct TargetFields {
    name: String,
}

/// Unix microseconds of an RFC 3339 time.
pub fn unix_micros(time: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(time).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

/// Indexes every line of `dir` not indexed yet; returns how many lines were added.
pub async fn catch_up(index: &AuditIndex, dir: &Path) -> Result<u64, AuditError> {
    let cursors = index.cursors().await?;
    let mut added = 0u64;
    for segment in segment_files(dir)? {
        let mut from = cursors.get(&segment.name).copied().unwrap_or(0) as u64;
        while segment.len > from {
            let (lines, end) = read_lines(&segment.path, from, BATCH)?;
            if end == from {
                break;
            }
            let rows: Vec<IndexedEvent> = lines
                .iter()
                .filter_map(|line| row(line, &segment.name))
                .collect();
            index.add(&segment.name, end as i64, &rows).await?;
            added += rows.len() as u64;
            from = end;
        }
    }
    Ok(added)
}

/// The index row of one line; `None` for a damaged line (`audit verify`'s business).
fn row(line: &JournalLine, segment: &str) -> Option<IndexedEvent> {
    let f = serde_json::from_slice::<IndexFields>(&line.bytes).ok()?;
    let (subject, email, issuer) = f
        .principal
        .map(|p| (p.subject, p.email, p.issuer))
        .unwrap_or_default();
    Some(IndexedEvent {
        instance: f.instance,
        seq: f.seq,
        time_us: unix_micros(&f.time).unwrap_or(0),
        kind: f.kind,
        outcome: f.outcome,
        subject,
        email,
        issuer,
        virtual_server: f.virtual_server,
        server: f.server,
        method: f.method,
        target: f.target.map(|t| t.name),
        latency_us: f.latency_us,
        segment: segment.to_string(),
        byte_offset: line.offset as i64,
    })
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
