//! Exporting a time range of the journal to a folder the user controls: numbered event
//! files in one layout ([`crate::format`]), a `manifest.json` describing them (counts, first
//! and last event of every chain, SHA-256 of every file, the source journal's verify
//! result), `manifest.json.sig` (Ed25519, the journal's signing key) when the key can be
//! read, and a `SHA256SUMS` that `sha256sum -c` checks.
//!
//! The journal is read the way sinks read it ([`crate::reader`]), in journal order; events
//! are kept when `since <= time < until`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use gatehouse_config::EventFormat;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain::{CheckpointSigner, public_key_path};
use crate::format::{extension, render};
use crate::line::unix_micros;
use crate::reader::{StoredEvent, read_lines, segment_files};
use crate::{AuditError, VerifyReport};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The manifest signature's file name.
pub const SIGNATURE: &str = "manifest.json.sig";
/// The checksum list's file name.
pub const SUMS: &str = "SHA256SUMS";

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The journal directory.
    pub journal: PathBuf,
    /// The folder written; created, and refused unless empty.
    pub out: PathBuf,
    /// The layout of the event files.
    pub format: EventFormat,
    /// Keep events at or after this time (unix microseconds).
    pub since: Option<i64>,
    /// Keep events before this time (unix microseconds).
    pub until: Option<i64>,
    /// An event file is closed once it holds this many bytes (the next event starts a new
    /// one).
    pub max_file_bytes: u64,
    /// The private key that signs the manifest; `None`, or unreadable, leaves it unsigned
    /// (the manifest says why).
    pub signing_key: Option<PathBuf>,
    /// The source journal's verification, when it was run (recorded in the manifest).
    pub verified: Option<VerifySummary>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `--out` already holds something: an export never mixes with other files.
    #[error("{} is not empty; exports go to a new or empty folder", .0.display())]
    OutNotEmpty(PathBuf),
    /// A file of the export could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] AuditError),
}

/// One event file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    /// Its name in the export folder.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Events in it.
    pub events: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// The part of one chain (gateway process) an export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainRange {
    /// The chain's instance.
    pub instance: String,
    /// Events of it exported.
    pub events: u64,
    /// Id of the first one.
    pub first_id: String,
    /// Its time.
    pub first_time: String,
    /// Id of the last one.
    pub last_id: String,
    /// Its time.
    pub last_time: String,
}

/// The source journal's verification, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// True when every chain is intact.
    pub intact: bool,
    /// Chains checked.
    pub chains: usize,
    /// Lines checked.
    pub events: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Every damage found, as `audit verify` prints it.
    pub damages: Vec<String>,
}

impl From<&VerifyReport> for VerifySummary {
    fn from(r: &VerifyReport) -> VerifySummary {
        VerifySummary {
            intact: r.intact(),
            chains: r.chains,
            events: r.events,
            checkpoints: r.checkpoints,
            damages: r.damages.iter().map(ToString::to_string).collect(),
        }
    }
}

/// How the manifest is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureInfo {
    /// `Ed25519` when signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// The signing key's id (the journal publishes its public half as `keys/<id>.pem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The signature file (base64 of the signature over `manifest.json`'s bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The public key file published beside the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PathBuf>,
    /// Why the manifest is not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsigned: Option<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The Gatehouse version that wrote the export.
    pub gatehouse_version: String,
    /// When the export was written (RFC 3339).
    pub created: String,
    /// The layout of the event files.
    pub format: EventFormat,
    /// The window's start (RFC 3339), if bounded.
    pub since: Option<String>,
    /// The window's end, exclusive (RFC 3339), if bounded.
    pub until: Option<String>,
    /// The journal directory read.
    pub journal_dir: PathBuf,
    /// Events exported.
    pub events: u64,
    /// Journal lines in the window's files that could not be parsed (left out; `audit
    /// verify` names them).
    pub unreadable_lines: u64,
    /// First and last event of every chain, in journal order.
    pub chains: Vec<ChainRange>,
    /// The event files, in order.
    pub files: Vec<ExportedFile>,
    /// The source journal's verification, when it ran.
    pub verify: Option<VerifySummary>,
    /// How the manifest is signed.
    pub signature: SignatureInfo,
}

/// What [`export`] did.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The manifest written.
    pub manifest: Manifest,
    /// Why the manifest could not be signed (the key is missing or unreadable).
    pub unsigned: Option<String>,
}

/// Writes the export `options` describes. `progress` is called with the number of journal
/// lines read so far, after every few thousand.
pub fn export(
    options: &ExportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Exported, ExportError> {
    prepare_out(&options.out)?;
    let mut files = Files::new(options);
    let mut chains: BTreeMap<String, (usize, ChainRange)> = BTreeMap::new();
    let (mut read, mut unreadable) = (0u64, 0u64);
    for segment in segment_files(&options.journal)? {
        let mut from = 0u64;
        loop {
            let (lines, end) = read_lines(&segment.path, from, 4096)?;
            if lines.is_empty() {
                break;
            }
            from = end;
            for line in lines {
                read += 1;
                let Some(event) = StoredEvent::parse(&line.bytes) else {
                    unreadable += 1;
                    continue;
                };
                let Some(t) = unix_micros(&event.event.time) else {
                    unreadable += 1;
                    continue;
                };
                if options.since.is_some_and(|s| t < s) || options.until.is_some_and(|u| t >= u) {
                    continue;
                }
                files.write(&render(options.format, &event, &line.bytes))?;
                let order = chains.len();
                let range = &mut chains
                    .entry(event.instance.clone())
                    .or_insert_with(|| {
                        (
                            order,
                            ChainRange {
                                instance: event.instance.clone(),
                                events: 0,
                                first_id: event.id.clone(),
                                first_time: event.event.time.clone(),
                                last_id: String::new(),
                                last_time: String::new(),
                            },
                        )
                    })
                    .1;
                range.events += 1;
                range.last_id.clone_from(&event.id);
                range.last_time.clone_from(&event.event.time);
            }
            progress(read);
        }
    }
    let written = files.finish()?;
    let mut chains: Vec<(usize, ChainRange)> = chains.into_values().collect();
    chains.sort_by_key(|(order, _)| *order);

    let signer = match &options.signing_key {
        Some(path) => CheckpointSigner::load_or_create(path, false).map_err(|e| e.to_string()),
        None => Err("no signing key was given".to_string()),
    };
    let signature = match &signer {
        Ok(s) => SignatureInfo {
            algorithm: Some("Ed25519".into()),
            key_id: Some(s.key_id().to_string()),
            file: Some(SIGNATURE.into()),
            public_key: Some(public_key_path(&options.journal, s.key_id())),
            unsigned: None,
        },
        Err(why) => SignatureInfo {
            algorithm: None,
            key_id: None,
            file: None,
            public_key: None,
            unsigned: Some(why.clone()),
        },
    };
    let manifest = Manifest {
        gatehouse_version: env!("CARGO_PKG_VERSION").to_string(),
        created: crate::event::now_rfc3339(),
        format: options.format,
        since: options.since.map(rfc3339),
        until: options.until.map(rfc3339),
        journal_dir: options.journal.clone(),
        events: written.iter().map(|f| f.events).sum(),
        unreadable_lines: unreadable,
        chains: chains.into_iter().map(|(_, c)| c).collect(),
        files: written,
        verify: options.verified.clone(),
        signature,
    };
    let mut text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
    text.push('\n');
    let mut sums: Vec<(String, String)> = manifest
        .files
        .iter()
        .map(|f| (f.sha256.clone(), f.name.clone()))
        .collect();
    put(&options.out, MANIFEST, text.as_bytes())?;
    sums.push((
        hex::encode(Sha256::digest(text.as_bytes())),
        MANIFEST.into(),
    ));
    if let Ok(s) = &signer {
        let sig = s.sign_detached(text.as_bytes()) + "\n";
        put(&options.out, SIGNATURE, sig.as_bytes())?;
        sums.push((
            hex::encode(Sha256::digest(sig.as_bytes())),
            SIGNATURE.into(),
        ));
    }
    let list: String = sums
        .iter()
        .map(|(sum, name)| format!("{sum}  {name}\n"))
        .collect();
    put(&options.out, SUMS, list.as_bytes())?;
    sync_dir(&options.out)?;
    Ok(Exported {
        manifest,
        unsigned: signer.err(),
    })
}

fn rfc3339(us: i64) -> String {
    let t = if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    };
    humantime::format_rfc3339_micros(t).to_string()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `out`, or accepts it when it exists and is empty.
fn prepare_out(out: &Path) -> Result<(), ExportError> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ExportError::OutNotEmpty(out.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(io(out))
        }
        Err(e) => Err(io(out)(e)),
    }
}

/// Writes a new file `name` in `dir` and syncs it.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
    let path = dir.join(name);
    let mut f = File::create_new(&path).map_err(io(&path))?;
    f.write_all(bytes).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))
}

fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The numbered event files being written.
struct Files<'a> {
    options: &'a ExportOptions,
    done: Vec<ExportedFile>,
    current: Option<Current>,
}

struct Current {
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    hash: Sha256,
    bytes: u64,
    events: u64,
}

impl<'a> Files<'a> {
    fn new(options: &'a ExportOptions) -> Files<'a> {
        Files {
            options,
            done: Vec::new(),
            current: None,
        }
    }

    fn write(&mut self, line: &str) -> Result<(), ExportError> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.bytes >= self.options.max_file_bytes.max(1))
        {
            self.close()?;
        }
        let c = match &mut self.current {
            Some(c) => c,
            None => {
                let name = format!(
                    "events-{:06}.{}",
                    self.done.len() + 1,
                    extension(self.options.format)
                );
                let path = self.options.out.join(&name);
                let file = File::create_new(&path).map_err(io(&path))?;
                self.current.insert(Current {
                    name,
                    path,
                    out: BufWriter::with_capacity(1 << 20, file),
                    hash: Sha256::new(),
                    bytes: 0,
                    events: 0,
                })
            }
        };
        for chunk in [line.as_bytes(), b"\n"] {
            c.out.write_all(chunk).map_err(io(&c.path))?;
            c.hash.update(chunk);
            c.bytes += chunk.len() as u64;
        }
        c.events += 1;
        Ok(())
    }

    fn close(&mut self) -> Result<(), ExportError> {
        if let Some(c) = self.current.take() {
            let file = c
                .out
                .into_inner()
                .map_err(|e| io(&c.path)(e.into_error()))?;
            file.sync_all().map_err(io(&c.path))?;
            self.done.push(ExportedFile {
                name: c.name,
                bytes: c.bytes,
                events: c.events,
                sha256: hex::encode(c.hash.finalize()),
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<ExportedFile>, ExportError> {
        self.close()?;
        Ok(self.done)
    }
}
