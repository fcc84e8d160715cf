//! The journal: append-only JSON Lines segment files, hash-chained, with signed checkpoints.
//!
//! Callers serialize their event on their own thread and hand the bytes to one writer thread,
//! which numbers and chains them and writes everything that is waiting in one `write` — so
//! concurrent calls share a system call (and, in `fsync` mode, an fsync). A caller awaits its
//! event's write before releasing its response. A second thread fsyncs at least every second
//! and signs a checkpoint of the chain's head.

mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_config::{Durability, OnFailure};
use tokio::sync::{mpsc, oneshot};

use crate::AuditError;
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
}

impl JournalOptions {
    /// Options from the config's `audit` block; the signing key comes from `audit.signing_key`
    /// or is created at `<data_dir>/keys/audit-signing.key`.
    pub fn from_config(
        config: &gatehouse_config::AuditConfig,
        data_dir: &Path,
    ) -> Result<JournalOptions, AuditError> {
        let signer = match &config.signing_key {
            Some(path) => CheckpointSigner::load_or_create(path, false)?,
            None => CheckpointSigner::load_or_create(
                &data_dir.join("keys").join("audit-signing.key"),
                true,
            )?,
        };
        Ok(JournalOptions {
            dir: config.dir.clone().unwrap_or_else(|| data_dir.join("audit")),
            durability: config.durability,
            on_failure: config.on_failure,
            segment_bytes: config.segment_bytes,
            signer,
            sync_interval: Duration::from_secs(1),
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

#[derive(Debug)]
pub(crate) struct Shared {
    instance: String,
    dir: PathBuf,
    on_failure: OnFailure,
    pending: AtomicUsize,
    healthy: AtomicBool,
    written: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// An open journal. Cheap to clone; the writer stops (flushing) when [`Journal::close`] is
/// called or the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Journal {
    shared: Arc<Shared>,
    // Kept out of `Shared`, which the writer holds: the channel closes (and the writer
    // flushes and stops) when the last `Journal` is dropped.
    tx: mpsc::UnboundedSender<Command>,
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
        let (tx, rx) = oneshot::channel();
        let sent = self.send(event, Some(tx));
        let on_failure = self.shared.on_failure;
        async move {
            sent?;
            let result = rx.await.unwrap_or(Err(AuditError::Closed));
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
        if let Err(e) = self.send(event, None) {
            tracing::error!(error = %e, "audit event not written");
        }
    }

    fn send(
        &self,
        event: &AuditEvent,
        done: Option<oneshot::Sender<Result<(), AuditError>>>,
    ) -> Result<(), AuditError> {
        let body = serde_json::to_vec(event).expect("audit events serialize");
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Command::Append { body, done }).map_err(|_| {
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            AuditError::Closed
        })
    }

    /// Fsyncs what was written and signs a checkpoint of the head.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .map_err(|_| AuditError::Closed)?;
        rx.await.unwrap_or(Err(AuditError::Closed))
    }

    /// Writes what is queued, fsyncs, signs a final checkpoint and stops the writer. Later
    /// appends fail with [`AuditError::Closed`].
    pub async fn close(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}
