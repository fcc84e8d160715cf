//! `gatehouse audit verify`: walks every chain of a journal directory and names each place
//! where it was edited, cut, reordered or thinned out.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

use crate::AuditError;
use crate::chain::{Checkpoint, GENESIS, line_hash, public_key_path, read_public_key};
use crate::retention::{Anchor, read_anchors};
use crate::segments::{LineHead, checkpoints_path, list, segment_name};

/// The kind of damage found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// A line's content differs from what was chained or signed.
    Edited,
    /// Lines (or a whole segment or chain) are missing.
    Deleted,
    /// Lines are out of order.
    Reordered,
    /// The end of a chain was cut off.
    Truncated,
    /// A line is not a journal line at all.
    Malformed,
    /// A checkpoint's signature does not verify (or its key is unknown).
    BadSignature,
}

impl DamageKind {
    /// The word `audit verify` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::Edited => "edited",
            DamageKind::Deleted => "deleted",
            DamageKind::Reordered => "reordered",
            DamageKind::Truncated => "truncated",
            DamageKind::Malformed => "malformed",
            DamageKind::BadSignature => "bad signature",
        }
    }
}

/// One place where the journal is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file (relative to the journal directory).
    pub file: String,
    /// The line in it (1-based; 0 for a missing file).
    pub line: u64,
    /// What kind of damage.
    pub kind: DamageKind,
    /// What exactly was found.
    pub detail: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {}: {}: {}",
            self.file,
            self.line,
            self.kind.as_str(),
            self.detail
        )
    }
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Chains (gateway processes) checked.
    pub chains: usize,
    /// Lines checked.
    pub events: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Every damage, in file order.
    pub damages: Vec<Damage>,
    /// Oddities that are not damage (a line cut by a crash and recorded as such).
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is damaged.
    pub fn intact(&self) -> bool {
        self.damages.is_empty()
    }
}

#[derive(Debug, Deserialize)]
struct StartDetail {
    previous: Option<PreviousChain>,
}

#[derive(Debug, Deserialize, Clone)]
struct PreviousChain {
    instance: String,
    seq: u64,
    hash: String,
    #[serde(default)]
    torn_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct StartLine {
    #[serde(rename = "type")]
    kind: String,
    detail: Option<StartDetail>,
}

/// Where one chain ended.
struct ChainEnd {
    seq: u64,
    hash: String,
    file: String,
    line: u64,
    torn_bytes: u64,
}

/// Verifies every chain in `dir`. With `trusted`, only checkpoints signed by that key count;
/// otherwise the keys published in `dir/keys/` are used.
pub fn verify(dir: &Path, trusted: Option<&VerifyingKey>) -> Result<VerifyReport, AuditError> {
    let chains = list(dir)?;
    let mut report = VerifyReport {
        chains: chains.len(),
        ..Default::default()
    };
    let mut ends: HashMap<String, ChainEnd> = HashMap::new();
    let mut links: Vec<(String, String, PreviousChain)> = Vec::new();
    let newest = chains.keys().next_back().cloned();
    let mut keys = Keys {
        dir,
        trusted,
        known: HashMap::new(),
    };
    for (instance, segments) in &chains {
        // Checkpoints first: one read after the segments could sign lines not yet read.
        let checkpoints = read_checkpoints(dir, instance, &mut keys, &mut report)?;
        let anchor = read_anchor(dir, instance, &mut keys, &mut report)?;
        let end = verify_chain(
            instance,
            segments,
            &checkpoints,
            anchor.as_ref(),
            newest.as_deref() == Some(instance.as_str()),
            &mut report,
            &mut links,
        )?;
        ends.insert(instance.clone(), end);
    }
    for (instance, first_file, previous) in links {
        let Some(end) = ends.get(&previous.instance) else {
            report.damages.push(Damage {
                file: first_file,
                line: 1,
                kind: DamageKind::Deleted,
                detail: format!(
                    "journal {instance} follows journal {} (up to seq {}), whose files are all missing",
                    previous.instance, previous.seq
                ),
            });
            continue;
        };
        if end.torn_bytes > 0 {
            if end.torn_bytes == previous.torn_bytes {
                report.warnings.push(format!(
                    "{}: the last line ({} bytes) is incomplete, cut by a crash; the next journal recorded it on start",
                    end.file, end.torn_bytes
                ));
            } else {
                report.damages.push(Damage {
                    file: end.file.clone(),
                    line: end.line + 1,
                    kind: DamageKind::Truncated,
                    detail: format!("the last line is incomplete ({} bytes)", end.torn_bytes),
                });
            }
        }
        if end.seq < previous.seq {
            report.damages.push(Damage {
                file: end.file.clone(),
                line: end.line,
                kind: DamageKind::Truncated,
                detail: format!(
                    "journal {} ends at seq {}, but the journal after it recorded that it ended at seq {}",
                    previous.instance, end.seq, previous.seq
                ),
            });
        } else if end.seq > previous.seq {
            report.damages.push(Damage {
                file: end.file.clone(),
                line: end.line,
                kind: DamageKind::Edited,
                detail: format!(
                    "journal {} has lines up to seq {}, added after it was closed at seq {}",
                    previous.instance, end.seq, previous.seq
                ),
            });
        } else if end.hash != previous.hash {
            report.damages.push(Damage {
                file: end.file.clone(),
                line: end.line,
                kind: DamageKind::Edited,
                detail: format!(
                    "the last line of journal {} differs from the one the next journal recorded",
                    previous.instance
                ),
            });
        }
    }
    Ok(report)
}

/// The public keys signatures are checked with: only `trusted` when given, else the ones
/// published in the journal's `keys/` folder.
struct Keys<'a> {
    dir: &'a Path,
    trusted: Option<&'a VerifyingKey>,
    known: HashMap<String, Option<VerifyingKey>>,
}

impl Keys<'_> {
    fn get(&mut self, key_id: &str) -> Option<VerifyingKey> {
        let (dir, trusted) = (self.dir, self.trusted);
        *self
            .known
            .entry(key_id.to_string())
            .or_insert_with(|| match trusted {
                Some(k) => (crate::chain::key_id(k) == key_id).then_some(*k),
                None => read_public_key(&public_key_path(dir, key_id)).ok(),
            })
    }
}

/// The newest anchor of `instance` whose signature verifies; bad ones are damage.
fn read_anchor(
    dir: &Path,
    instance: &str,
    keys: &mut Keys<'_>,
    report: &mut VerifyReport,
) -> Result<Option<Anchor>, AuditError> {
    let file = format!("retention/{instance}.jsonl");
    let mut best: Option<Anchor> = None;
    for (line, anchor) in read_anchors(dir, instance)? {
        let damage = |kind, detail: String| Damage {
            file: file.clone(),
            line,
            kind,
            detail,
        };
        let Some(anchor) = anchor else {
            report.damages.push(damage(
                DamageKind::Malformed,
                "not a retention anchor".into(),
            ));
            continue;
        };
        match keys.get(&anchor.key_id) {
            None => report.damages.push(damage(
                DamageKind::BadSignature,
                format!("signed by key {}, which is not trusted here", anchor.key_id),
            )),
            Some(k) if !anchor.verify(&k) || anchor.instance != instance => {
                report.damages.push(damage(
                    DamageKind::BadSignature,
                    format!(
                        "the retention anchor through seq {} does not verify",
                        anchor.through_seq
                    ),
                ))
            }
            Some(_) => {
                if best
                    .as_ref()
                    .is_none_or(|b| anchor.through_seq > b.through_seq)
                {
                    best = Some(anchor);
                }
            }
        }
    }
    Ok(best)
}

fn read_checkpoints(
    dir: &Path,
    instance: &str,
    keys: &mut Keys<'_>,
    report: &mut VerifyReport,
) -> Result<BTreeMap<u64, (Checkpoint, u64)>, AuditError> {
    let path = checkpoints_path(dir, instance);
    let file_name = format!("checkpoints/{instance}.jsonl");
    let mut out = BTreeMap::new();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(AuditError::Io { path, source }),
    };
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let damage = |kind, detail: String| Damage {
            file: file_name.clone(),
            line: n,
            kind,
            detail,
        };
        let Ok(cp) = serde_json::from_str::<Checkpoint>(line) else {
            if !(line.is_empty() || (n as usize == text.lines().count() && !text.ends_with('\n'))) {
                report.damages.push(damage(
                    DamageKind::Malformed,
                    "not a checkpoint".to_string(),
                ));
            }
            continue;
        };
        report.checkpoints += 1;
        match keys.get(&cp.key_id) {
            None => report.damages.push(damage(
                DamageKind::BadSignature,
                format!("signed by key {}, which is not trusted here", cp.key_id),
            )),
            Some(k) if !cp.verify(&k) || cp.instance != instance => report.damages.push(damage(
                DamageKind::BadSignature,
                format!("the checkpoint of seq {} does not verify", cp.seq),
            )),
            Some(_) => {
                out.insert(cp.seq, (cp, n));
            }
        }
    }
    Ok(out)
}

fn verify_chain(
    instance: &str,
    segments: &BTreeMap<u32, PathBuf>,
    checkpoints: &BTreeMap<u64, (Checkpoint, u64)>,
    anchor: Option<&Anchor>,
    newest: bool,
    report: &mut VerifyReport,
    links: &mut Vec<(String, String, PreviousChain)>,
) -> Result<ChainEnd, AuditError> {
    let mut expect = 1u64;
    let mut prev = GENESIS.to_string();
    let mut end = ChainEnd {
        seq: 0,
        hash: GENESIS.to_string(),
        file: segment_name(instance, 1),
        line: 0,
        torn_bytes: 0,
    };
    let mut first = 1;
    // Retention removed the start of the chain: it continues from the signed anchor.
    if let Some(a) = anchor {
        expect = a.through_seq + 1;
        prev = a.hash.clone();
        first = a.through_segment + 1;
        end.seq = a.through_seq;
        end.hash = a.hash.clone();
        end.file = segment_name(instance, a.through_segment);
        if let Some(p) = &a.previous {
            links.push((
                instance.to_string(),
                segment_name(instance, first),
                PreviousChain {
                    instance: p.instance.clone(),
                    seq: p.seq,
                    hash: p.hash.clone(),
                    torn_bytes: p.torn_bytes,
                },
            ));
        }
    }
    let last_number = segments.keys().next_back().copied().unwrap_or(0);
    for number in first..=last_number {
        let name = segment_name(instance, number);
        let Some(path) = segments.get(&number) else {
            report.damages.push(Damage {
                file: name,
                line: 0,
                kind: DamageKind::Deleted,
                detail: format!("segment {number} of journal {instance} is missing"),
            });
            continue;
        };
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let mut reader = BufReader::new(std::fs::File::open(path).map_err(io)?);
        let mut buf = Vec::new();
        let mut n = 0u64;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
                break;
            }
            n += 1;
            if buf.last() != Some(&b'\n') {
                if number == last_number && newest {
                    report.warnings.push(format!(
                        "{name} line {n}: incomplete (being written, or cut by a crash)"
                    ));
                } else if number == last_number {
                    end.torn_bytes = buf.len() as u64;
                } else {
                    report.damages.push(Damage {
                        file: name.clone(),
                        line: n,
                        kind: DamageKind::Truncated,
                        detail: "incomplete line in the middle of a chain".into(),
                    });
                }
                break;
            }
            buf.pop();
            report.events += 1;
            let hash = line_hash(&buf);
            let damage = |kind, detail: String| Damage {
                file: name.clone(),
                line: n,
                kind,
                detail,
            };
            match serde_json::from_slice::<LineHead>(&buf) {
                Err(_) => report.damages.push(damage(
                    DamageKind::Malformed,
                    format!("not a journal line (expected seq {expect})"),
                )),
                Ok(head) if head.seq > expect => {
                    report.damages.push(damage(
                        DamageKind::Deleted,
                        format!(
                            "seq {} follows seq {}: {} line(s) missing",
                            head.seq,
                            expect - 1,
                            head.seq - expect
                        ),
                    ));
                    expect = head.seq;
                }
                Ok(head) if head.seq < expect => {
                    report.damages.push(damage(
                        DamageKind::Reordered,
                        format!("seq {} follows seq {}", head.seq, expect - 1),
                    ));
                    expect = head.seq;
                }
                Ok(head) if head.prev != prev => {
                    let detail = if head.seq == 1 {
                        "the first line's prev is not the genesis hash".to_string()
                    } else if end.file == name {
                        format!(
                            "line {} was changed: its hash does not match this line's prev",
                            end.line
                        )
                    } else {
                        format!(
                            "the last line of {} was changed: its hash does not match this line's prev",
                            end.file
                        )
                    };
                    report.damages.push(damage(DamageKind::Edited, detail));
                }
                Ok(_) => {}
            }
            if expect == 1
                && let Ok(start) = serde_json::from_slice::<StartLine>(&buf)
                && start.kind == "journal.start"
                && let Some(previous) = start.detail.and_then(|d| d.previous)
            {
                links.push((instance.to_string(), name.clone(), previous));
            }
            if let Some((cp, _)) = checkpoints.get(&expect)
                && cp.hash != hash
            {
                report.damages.push(damage(
                    DamageKind::Edited,
                    format!("seq {expect} differs from the signed checkpoint of it"),
                ));
            }
            end = ChainEnd {
                seq: expect,
                hash: hash.clone(),
                file: name.clone(),
                line: n,
                torn_bytes: end.torn_bytes,
            };
            prev = hash;
            expect += 1;
        }
    }
    if let Some((cp, cp_line)) = checkpoints.values().next_back()
        && cp.seq > end.seq
    {
        report.damages.push(Damage {
            file: cp.segment.clone(),
            line: cp.line,
            kind: DamageKind::Truncated,
            detail: format!(
                "journal {instance} ends at seq {} ({} line {}), but checkpoints/{instance}.jsonl line {cp_line} signs seq {}",
                end.seq, end.file, end.line, cp.seq
            ),
        });
    }
    Ok(end)
}
