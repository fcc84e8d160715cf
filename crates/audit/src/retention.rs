//! Retention: removing segment files whose events have all outlived their class's retention,
//! without breaking `gatehouse audit verify`.
//!
//! Only whole segments at the start of a chain are removed, so each chain stays one
//! contiguous run of lines. Before a segment goes, a signed [`Anchor`] says "the lines of
//! this chain up to seq S, whose last line hashes to H, were removed by retention":
//! `verify` then starts the chain at S + 1 with H as the expected `prev`. Deleting lines
//! without the signing key still shows as `deleted`, because nobody else can sign an anchor.
//!
//! A segment holds events of several classes; it is kept until every event in it has expired
//! under its own class's retention (the longest-lived class in a segment governs it). The
//! structural `journal.start` and `retention` lines never hold a segment back: the anchor
//! keeps what verification needs from them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gatehouse_config::RetentionConfig;
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::chain::{CheckpointSigner, line_hash, verify_detached};
use crate::line::unix_micros;
use crate::segments::list;

/// Where a chain that another chain follows ended (`journal.start`'s `detail.previous`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The earlier journal.
    pub instance: String,
    /// Its last complete line.
    pub seq: u64,
    /// That line's hash.
    pub hash: String,
    /// Bytes of a line cut by a crash after it.
    #[serde(default)]
    pub torn_bytes: u64,
}

/// A signed statement that retention removed the start of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The chain.
    pub instance: String,
    /// The last removed line's seq: the chain now starts at `through_seq + 1`.
    pub through_seq: u64,
    /// The last removed line's hash: the `prev` of the first kept line.
    pub hash: String,
    /// Segments `1..=through_segment` are gone.
    pub through_segment: u32,
    /// Every segment of the chain is gone (`through_seq` is where it ended).
    pub whole_chain: bool,
    /// The chain before this one, as the removed `journal.start` line recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ChainLink>,
    /// Lines removed by this anchor's run.
    pub events: u64,
    /// When.
    pub time: String,
    /// The signing key's id.
    pub key_id: String,
    /// Ed25519 signature of [`Anchor::message`], base64.
    pub sig: String,
}

impl Anchor {
    /// The bytes that are signed.
    pub fn message(&self) -> String {
        let previous = self.previous.as_ref().map_or_else(
            || "-".to_string(),
            |p| format!("{} {} {} {}", p.instance, p.seq, p.hash, p.torn_bytes),
        );
        format!(
            "gatehouse-audit-anchor/v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.instance,
            self.through_seq,
            self.hash,
            self.through_segment,
            self.whole_chain,
            previous,
            self.events,
            self.time,
            self.key_id
        )
    }

    /// Whether `key` signed this anchor.
    pub fn verify(&self, key: &ed25519_dalek::VerifyingKey) -> bool {
        verify_detached(key, self.message().as_bytes(), &self.sig)
    }
}

/// The anchors file of `instance`.
pub fn anchors_path(dir: &Path, instance: &str) -> PathBuf {
    dir.join("retention").join(format!("{instance}.jsonl"))
}

/// Every line of `instance`'s anchors file with its line number, oldest first: the anchor,
/// or `None` for a line that is not one (unverified either way).
pub fn read_anchors(dir: &Path, instance: &str) -> Result<Vec<(u64, Option<Anchor>)>, AuditError> {
    let path = anchors_path(dir, instance);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(AuditError::Io { path, source }),
    };
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i as u64 + 1, serde_json::from_str::<Anchor>(l).ok()))
        .collect())
}

/// How long each class of event is kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    config: RetentionConfig,
}

impl Retention {
    /// From the config's `audit.retention`.
    pub fn new(config: &RetentionConfig) -> Retention {
        Retention {
            config: config.clone(),
        }
    }

    /// True when nothing ever expires.
    pub fn keeps_everything(&self) -> bool {
        self.config.is_default()
    }

    /// How long the usage rollups are kept; `None`: forever.
    pub fn usage(&self) -> Option<Duration> {
        self.config.usage.or(self.config.default).map(|d| d.get())
    }

    /// How long an event of type `kind` (with JSON-RPC `method`) is kept; `None`: forever.
    pub fn keep_for(&self, kind: &str, method: Option<&str>) -> Option<Duration> {
        let c = &self.config;
        let class = match kind {
            "mcp.request" if method == Some("tools/call") => c.tool_call,
            "mcp.request" => c.request,
            "auth.failure" => c.auth_failure,
            "session.start" | "session.end" => c.session,
            "config.change" | "policy.change" => c.change,
            "anomaly" => c.anomaly,
            _ => None,
        };
        class.or(c.default).map(|d| d.get())
    }
}

/// One segment file retention may remove.
#[derive(Debug, Clone, PartialEq)]
pub struct RemovedSegment {
    /// Its file name (the key of the index's and the sinks' cursors).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Its number in the chain.
    pub number: u32,
    /// Its last line's seq (0: no complete line).
    pub last_seq: u64,
    /// That line's hash.
    pub last_hash: String,
    /// Lines in it.
    pub events: u64,
    /// Its size.
    pub bytes: u64,
}

/// The segments at the start of one chain that retention may remove.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    /// The chain.
    pub instance: String,
    /// The segments, oldest first.
    pub segments: Vec<RemovedSegment>,
    /// Every segment of the chain goes.
    pub whole_chain: bool,
    /// The link to the chain before, carried into the anchor.
    pub previous: Option<ChainLink>,
}

impl Removal {
    /// Lines removed.
    pub fn events(&self) -> u64 {
        self.segments.iter().map(|s| s.events).sum()
    }

    /// Bytes removed.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Keeps only the first `n` segments (the rest must stay, e.g. not shipped yet).
    pub fn keep_first(&mut self, n: usize) {
        if n < self.segments.len() {
            self.segments.truncate(n);
            self.whole_chain = false;
        }
    }

    /// The last removed line (seq, hash), if any segment had one.
    fn through(&self) -> Option<(u64, &str)> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.last_seq > 0)
            .map(|s| (s.last_seq, s.last_hash.as_str()))
    }
}

#[derive(Deserialize)]
struct RetentionFields {
    seq: u64,
    time: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    detail: Option<StartDetail>,
}

#[derive(Deserialize)]
struct StartDetail {
    #[serde(default)]
    previous: Option<ChainLink>,
}

/// What retention would remove from `dir` at `now`. The last segment of a chain that no
/// later chain follows (the one a running gateway writes) is never removed, nor is anything after a line that has not
/// expired, nor a line that cannot be read (that is for `verify` to report).
pub fn plan(
    dir: &Path,
    retention: &Retention,
    now: SystemTime,
) -> Result<Vec<Removal>, AuditError> {
    let mut out = Vec::new();
    if retention.keeps_everything() {
        return Ok(out);
    }
    let chains = list(dir)?;
    let followed = followed(dir, &chains)?;
    let now_us = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    for (instance, segments) in chains {
        let anchors = read_anchors(dir, &instance)?;
        let latest = anchors
            .iter()
            .filter_map(|(_, a)| a.as_ref())
            .max_by_key(|a| a.through_seq);
        let last_number = segments.keys().next_back().copied().unwrap_or(0);
        let mut removal = Removal {
            instance: instance.clone(),
            segments: Vec::new(),
            whole_chain: false,
            previous: latest.and_then(|a| a.previous.clone()),
        };
        let mut blocked = false;
        for (&number, path) in &segments {
            if !followed.contains(&instance) && number == last_number {
                blocked = true;
                break;
            }
            let Some(s) = scan(path, retention, now_us)? else {
                blocked = true;
                break;
            };
            if removal.previous.is_none() {
                removal.previous = s.previous;
            }
            removal.segments.push(RemovedSegment {
                name: path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string(),
                path: path.clone(),
                number,
                last_seq: s.last_seq,
                last_hash: s.last_hash,
                events: s.events,
                bytes: s.bytes,
            });
        }
        removal.whole_chain = !blocked;
        if removal.through().is_some() {
            out.push(removal);
        }
    }
    Ok(out)
}

/// The chains another chain follows (named by its `journal.start`, or by the anchor that
/// replaced it): they are finished. The others may be running.
fn followed(
    dir: &Path,
    chains: &std::collections::BTreeMap<String, std::collections::BTreeMap<u32, PathBuf>>,
) -> Result<std::collections::HashSet<String>, AuditError> {
    let mut out = std::collections::HashSet::new();
    for (instance, segments) in chains {
        for (_, anchor) in read_anchors(dir, instance)? {
            if let Some(p) = anchor.and_then(|a| a.previous) {
                out.insert(p.instance);
            }
        }
        let Some(first) = segments.get(&1) else {
            continue;
        };
        let Ok(file) = std::fs::File::open(first) else {
            continue;
        };
        let mut line = Vec::new();
        if BufReader::new(file).read_until(b'\n', &mut line).is_ok()
            && let Ok(f) = serde_json::from_slice::<RetentionFields>(&line)
            && let Some(p) = f.detail.and_then(|d| d.previous)
        {
            out.insert(p.instance);
        }
    }
    Ok(out)
}

struct Scan {
    events: u64,
    bytes: u64,
    last_seq: u64,
    last_hash: String,
    previous: Option<ChainLink>,
}

/// Reads one segment: `Some` when every line in it has expired.
fn scan(path: &Path, retention: &Retention, now_us: i64) -> Result<Option<Scan>, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut s = Scan {
        events: 0,
        bytes: 0,
        last_seq: 0,
        last_hash: String::new(),
        previous: None,
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        s.bytes += n as u64;
        if buf.last() != Some(&b'\n') {
            // A line cut by a crash at the end of an old chain: nothing to keep.
            break;
        }
        buf.pop();
        let Ok(f) = serde_json::from_slice::<RetentionFields>(&buf) else {
            return Ok(None);
        };
        if f.kind == "journal.start" {
            s.previous = f.detail.and_then(|d| d.previous);
        } else if f.kind != "retention" {
            let Some(keep) = retention.keep_for(&f.kind, f.method.as_deref()) else {
                return Ok(None);
            };
            let Some(t) = unix_micros(&f.time) else {
                return Ok(None);
            };
            if t.saturating_add(keep.as_micros() as i64) > now_us {
                return Ok(None);
            }
        }
        s.events += 1;
        s.last_seq = f.seq;
        s.last_hash = line_hash(&buf);
    }
    Ok(Some(s))
}

/// Removes what `removals` name: for each chain, first the signed anchor (written and
/// fsync'd), then the files. A crash in between leaves files the anchor already covers;
/// `verify` skips them and the next run removes them.
pub fn apply(
    dir: &Path,
    removals: &[Removal],
    signer: &CheckpointSigner,
) -> Result<Vec<Anchor>, AuditError> {
    let mut anchors = Vec::new();
    for r in removals {
        let (Some((through_seq, hash)), Some(last)) = (r.through(), r.segments.last()) else {
            continue;
        };
        let mut anchor = Anchor {
            instance: r.instance.clone(),
            through_seq,
            hash: hash.to_string(),
            through_segment: last.number,
            whole_chain: r.whole_chain,
            previous: r.previous.clone(),
            events: r.events(),
            time: crate::event::now_rfc3339(),
            key_id: signer.key_id().to_string(),
            sig: String::new(),
        };
        anchor.sig = signer.sign_detached(anchor.message().as_bytes());
        let path = anchors_path(dir, &r.instance);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let folder = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(folder).map_err(io)?;
        let mut line = serde_json::to_vec(&anchor).expect("an anchor serializes");
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(&line).map_err(io)?;
        f.sync_all().map_err(io)?;
        sync_dir(folder);
        for segment in &r.segments {
            match std::fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(AuditError::Io {
                        path: segment.path.clone(),
                        source,
                    });
                }
            }
        }
        sync_dir(dir);
        anchors.push(anchor);
    }
    Ok(anchors)
}

/// Makes a directory's entries durable (best effort: not every file system supports it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What one retention pass did.
#[derive(Debug, Default)]
pub struct Enforced {
    /// The anchors written (one per chain cut).
    pub anchors: Vec<Anchor>,
    /// The segment files removed.
    pub removed: Vec<String>,
    /// Lines removed.
    pub events: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Expired segments kept because a sink has not shipped them yet.
    pub held_for_sinks: Vec<String>,
    /// Usage rollup rows removed (`audit.retention.usage`, else `default`).
    pub rollups: u64,
}

/// One retention pass over `dir` at `now`: plans, keeps the segments one of `sinks` has not
/// delivered yet (an outage of a SIEM must not turn into a gap in it), removes the rest
/// behind signed anchors, and drops their rows and cursors from the index and the sinks.
pub async fn enforce(
    dir: &Path,
    retention: &Retention,
    signer: &CheckpointSigner,
    store: &gatehouse_store::Store,
    sinks: &[String],
    now: SystemTime,
) -> Result<Enforced, AuditError> {
    let mut removals = plan(dir, retention, now)?;
    let mut out = Enforced::default();
    let cursors = store.sink_cursors();
    let mut delivered = Vec::new();
    for sink in sinks {
        delivered.push(cursors.cursors(sink).await?);
    }
    for r in &mut removals {
        let shipped = r.segments.iter().take_while(|s| {
            delivered
                .iter()
                .all(|c| c.get(&s.name).is_some_and(|&o| o as u64 >= s.bytes))
        });
        let n = shipped.count();
        out.held_for_sinks
            .extend(r.segments[n..].iter().map(|s| s.name.clone()));
        r.keep_first(n);
    }
    removals.retain(|r| r.through().is_some());
    out.anchors = apply(dir, &removals, signer)?;
    for r in &removals {
        out.events += r.events();
        out.bytes += r.bytes();
        out.removed
            .extend(r.segments.iter().map(|s| s.name.clone()));
    }
    if !out.removed.is_empty() {
        store.audit_index().forget_segments(&out.removed).await?;
        cursors.forget_segments(&out.removed).await?;
    }
    if let Some(keep) = retention.usage() {
        let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
        let secs = cutoff
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        // Whole hours only: an hour still partly inside the period is kept.
        out.rollups = store.usage().prune(secs - secs.rem_euclid(3600)).await?;
    }
    Ok(out)
}
