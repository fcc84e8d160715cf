//! The journal: append-only JSON Lines segment files, hash-chained, with signed checkpoints.
//!
//! Callers serialize their event on their own thread. In `process` durability the caller then
//! numbers, chains and writes it itself, under the writer's lock: one `write` to the page
//! cache, no hand-off to another thread (a hand-off costs two context switches, more than the
//! write). In `fsync` durability callers hand their bytes to one writer thread, which writes
//! everything waiting with one `write` and one `fdatasync` (group commit) and then answers
//! them. Either way a caller awaits its event's write before releasing its response, and a
//! second thread fsyncs at least every second and signs a checkpoint of the chain's head.

mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_config::{Durability, OnFailure};
use tokio::sync::{mpsc, oneshot};

use crate::AuditError;
use crate::bound::{bound_event, exceeds};
use crate::chain::CheckpointSigner;
use crate::event::AuditEvent;

/// How a journal is opened.
#[derive(Debug)]
pub struct JournalOptions {
    /// The directory of segment files.
    pub dir: PathBuf,
    /// When an event counts as written.
    pub durability: Durability,
    /// Refuse or serve when writing fails.
    pub on_failure: OnFailure,
    /// Segment size before rotating.
    pub segment_bytes: u64,
    /// Signs checkpoints.
    pub signer: CheckpointSigner,
    /// How often written events are fsync'd (in `process` mode) and checkpointed.
    pub sync_interval: Duration,
    /// Longest string an event records (`audit.max_field_bytes`); longer ones are cut as they
    /// are written (see [`bound`](crate::bound)).
    pub max_field_bytes: usize,
}

/// The key that signs the journal's checkpoints and anchors: `audit.signing_key`, else
/// `<data_dir>/keys/audit-signing.key` (created on first use: the `bool`).
pub fn signing_key_path(
    config: &gatehouse_config::AuditConfig,
    data_dir: &Path,
) -> (std::path::PathBuf, bool) {
    match &config.signing_key {
        Some(path) => (path.clone(), false),
        None => (data_dir.join("keys").join("audit-signing.key"), true),
    }
}

impl JournalOptions {
    /// Options from the config's `audit` block; the signing key comes from `audit.signing_key`
    /// or is created at `<data_dir>/keys/audit-signing.key`.
    pub fn from_config(
        config: &gatehouse_config::AuditConfig,
        data_dir: &Path,
    ) -> Result<JournalOptions, AuditError> {
        let (path, create) = signing_key_path(config, data_dir);
        let signer = CheckpointSigner::load_or_create(&path, create)?;
        Ok(JournalOptions {
            dir: config.dir.clone().unwrap_or_else(|| data_dir.join("audit")),
            durability: config.durability,
            on_failure: config.on_failure,
            segment_bytes: config.segment_bytes,
            signer,
            sync_interval: Duration::from_secs(1),
            max_field_bytes: config.max_field_bytes as usize,
        })
    }
}

pub(crate) enum Command {
    Append {
        body: Vec<u8>,
        done: Option<oneshot::Sender<Result<(), AuditError>>>,
    },
    Flush(oneshot::Sender<Result<(), AuditError>>),
    Close(oneshot::Sender<Result<(), AuditError>>),
}

/// Counters of a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Events written.
    pub written: u64,
    /// Events that could not be written.
    pub failed: u64,
    /// Events waiting for the writer.
    pub queued: usize,
}

pub(crate) struct Shared {
    instance: String,
    dir: PathBuf,
    on_failure: OnFailure,
    pending: AtomicUsize,
    healthy: AtomicBool,
    written: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    max_field_bytes: AtomicUsize,
    on_truncated: std::sync::RwLock<Option<TruncationObserver>>,
}

/// Told the field (a bounded set of names, see [`bound_event`]) of each string the journal cut.
type TruncationObserver = Box<dyn Fn(&'static str) + Send + Sync>;

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("instance", &self.instance)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How appends reach the file.
#[derive(Debug)]
enum Route {
    /// `process`: the caller writes under the writer's lock.
    Inline(Arc<Mutex<writer::Writer>>),
    /// `fsync`: the writer thread group-commits.
    Thread(mpsc::UnboundedSender<Command>),
}

/// What the `Journal` handles share; dropped with the last of them, which ends the journal
/// (flush and a final signed checkpoint).
#[derive(Debug)]
struct Handle {
    route: Route,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // `Thread`: dropping the sender ends the writer thread, which closes the writer.
        if let Route::Inline(w) = &self.route
            && let Err(e) = w.lock().unwrap_or_else(|e| e.into_inner()).close()
        {
            tracing::error!(error = %e, "audit journal: final checkpoint failed");
        }
    }
}

/// An open journal. Cheap to clone; it is closed (flushed, head signed) by [`Journal::close`]
/// or when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Journal {
    handle: Arc<Handle>,
    shared: Arc<Shared>,
}

impl Journal {
    /// Opens a new chain in `options.dir`: creates the directory, publishes the signing key's
    /// public half under `keys/`, writes the `journal.start` event (linking to the chain
    /// before it) and starts the writer. Fails when the directory cannot be written.
    pub fn open(options: JournalOptions) -> Result<Journal, AuditError> {
        writer::open(options)
    }

    /// This chain's instance id.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// False while writes fail and `on_failure` is `refuse`: calls must be refused.
    pub fn accepting(&self) -> bool {
        self.shared.on_failure == OnFailure::Serve || self.shared.healthy.load(Ordering::Relaxed)
    }

    /// The last write error, while the journal is failing.
    pub fn last_error(&self) -> Option<String> {
        if self.shared.healthy.load(Ordering::Relaxed) {
            return None;
        }
        self.shared.last_error.lock().expect("error lock").clone()
    }

    /// Events written, failed and queued.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            written: self.shared.written.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            queued: self.shared.pending.load(Ordering::Relaxed),
        }
    }

    /// Appends `event`; the future resolves once it is written (per the durability mode).
    /// It fails only when the event could not be written and `on_failure` is `refuse` — the
    /// caller must then not release the response it was about to give.
    pub fn append(
        &self,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<(), AuditError>> + Send + 'static {
        let body = self.serialize(event);
        let on_failure = self.shared.on_failure;
        let waiting = match &self.handle.route {
            Route::Inline(w) => Err(lock(w).commit(&[&body])),
            Route::Thread(tx) => {
                let (done, rx) = oneshot::channel();
                Ok((self.send(tx, body, Some(done)), rx))
            }
        };
        async move {
            let result = match waiting {
                Err(written) => written,
                Ok((sent, rx)) => match sent {
                    Err(e) => Err(e),
                    Ok(()) => rx.await.unwrap_or(Err(AuditError::Closed)),
                },
            };
            match result {
                Err(e) if on_failure == OnFailure::Serve => {
                    tracing::error!(error = %e, "audit event not written; serving anyway (audit.on_failure: serve)");
                    Ok(())
                }
                other => other,
            }
        }
    }

    /// Appends `event` without waiting (for events no response waits on, such as a call
    /// abandoned by its client).
    pub fn append_detached(&self, event: &AuditEvent) {
        let body = self.serialize(event);
        let result = match &self.handle.route {
            Route::Inline(w) => lock(w).commit(&[&body]),
            Route::Thread(tx) => self.send(tx, body, None),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "audit event not written");
        }
    }

    /// The event's line, every recorded string cut to `max_field_bytes` (so the journal, the
    /// index and every sink hold the same bounded strings). Only an event with a string over
    /// the bound is copied.
    fn serialize(&self, event: &AuditEvent) -> Vec<u8> {
        let max = self.shared.max_field_bytes.load(Ordering::Relaxed);
        if !exceeds(event, max) {
            return serde_json::to_vec(event).expect("audit events serialize");
        }
        let mut bounded = event.clone();
        let fields = bound_event(&mut bounded, max);
        if let Some(observe) = self
            .shared
            .on_truncated
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            fields.into_iter().for_each(observe);
        }
        serde_json::to_vec(&bounded).expect("audit events serialize")
    }

    /// Changes the bound on recorded strings (a reloaded `audit.max_field_bytes`).
    pub fn set_max_field_bytes(&self, max: usize) {
        self.shared.max_field_bytes.store(max, Ordering::Relaxed);
    }

    /// Calls `observe` with the field of every string the journal cuts (for a metric; the
    /// names are a bounded set: `method`, `client.name`, `principal.groups`, `detail`, …).
    pub fn on_truncated(&self, observe: impl Fn(&'static str) + Send + Sync + 'static) {
        *self
            .shared
            .on_truncated
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(observe));
    }

    fn send(
        &self,
        tx: &mpsc::UnboundedSender<Command>,
        body: Vec<u8>,
        done: Option<oneshot::Sender<Result<(), AuditError>>>,
    ) -> Result<(), AuditError> {
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        tx.send(Command::Append { body, done }).map_err(|_| {
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            AuditError::Closed
        })
    }

    /// Fsyncs what was written and signs a checkpoint of the head.
    pub async fn flush(&self) -> Result<(), AuditError> {
        match &self.handle.route {
            Route::Inline(w) => lock(w).checkpoint_now(),
            Route::Thread(tx) => {
                let (done, rx) = oneshot::channel();
                tx.send(Command::Flush(done))
                    .map_err(|_| AuditError::Closed)?;
                rx.await.unwrap_or(Err(AuditError::Closed))
            }
        }
    }

    /// Writes what is queued, fsyncs, signs a final checkpoint and stops the syncer. Later
    /// appends fail with [`AuditError::Closed`].
    pub async fn close(&self) -> Result<(), AuditError> {
        match &self.handle.route {
            Route::Inline(w) => lock(w).close(),
            Route::Thread(tx) => {
                let (done, rx) = oneshot::channel();
                if tx.send(Command::Close(done)).is_err() {
                    return Ok(());
                }
                rx.await.unwrap_or(Ok(()))
            }
        }
    }
}

/// The writer, even if a thread panicked while holding it (its state is only committed after
/// a successful write).
fn lock(w: &Mutex<writer::Writer>) -> std::sync::MutexGuard<'_, writer::Writer> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}
