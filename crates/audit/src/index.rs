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
use crate::segments::list;

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
    for segments in list(dir)?.into_values() {
        for path in segments.into_values() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let from = cursors.get(&name).copied().unwrap_or(0);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len <= from as u64 {
                continue;
            }
            added += index_segment(index, &path, &name, from).await?;
        }
    }
    Ok(added)
}

async fn index_segment(
    index: &AuditIndex,
    path: &Path,
    name: &str,
    from: i64,
) -> Result<u64, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(from as u64)).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut offset = from;
    let mut rows = Vec::new();
    let mut buf = Vec::new();
    let mut added = 0;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        // An incomplete last line is being written (or was cut): index it next time.
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        let line_offset = offset;
        offset += n as i64;
        // A damaged line is `audit verify`'s business; the index skips it.
        let Ok(f) = serde_json::from_slice::<IndexFields>(&buf) else {
            continue;
        };
        let (subject, email, issuer) = f
            .principal
            .map(|p| (p.subject, p.email, p.issuer))
            .unwrap_or_default();
        rows.push(IndexedEvent {
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
            segment: name.to_string(),
            byte_offset: line_offset,
        });
        if rows.len() >= BATCH {
            index.add(name, offset, &rows).await?;
            added += rows.len() as u64;
            rows.clear();
        }
    }
    if offset > from {
        index.add(name, offset, &rows).await?;
        added += rows.len() as u64;
    }
    Ok(added)
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
