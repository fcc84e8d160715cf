//! The writer thread (numbering, chaining, batched writes, rotation) and the syncer thread
//! (periodic fsync and checkpoints).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_config::Durability;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{Command, Handle, Journal, JournalOptions, Route, Shared};
use crate::AuditError;
use crate::chain::{CheckpointSigner, GENESIS, public_key_path};
use crate::event::{AuditEvent, EventKind, Outcome};
use crate::segments::{checkpoints_path, list, new_instance_id, segment_name, tail};

/// Most events written in one system call.
const MAX_BATCH: usize = 4096;

/// The chain's head as the syncer sees it.
#[derive(Debug)]
struct Head {
    file: Arc<File>,
    segment: String,
    line: u64,
    seq: u64,
    hash: String,
    checkpointed: u64,
}

/// Appends signed checkpoints; shared by the writer (rotation, close) and the syncer.
#[derive(Debug)]
struct Checkpoints {
    signer: CheckpointSigner,
    instance: String,
    file: Mutex<File>,
    path: PathBuf,
}

impl Checkpoints {
    fn write(&self, head: &Head) -> Result<(), AuditError> {
        let cp = self.signer.sign(
            &self.instance,
            head.seq,
            &head.hash,
            &head.segment,
            head.line,
        );
        let mut line = serde_json::to_vec(&cp).expect("checkpoints serialize");
        line.push(b'\n');
        let mut f = self.file.lock().expect("checkpoint file lock");
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(io)
    }
}

/// The chain's state and the open segment: owned by whoever holds the lock (a caller in
/// `process` mode, the writer thread in `fsync` mode).
#[derive(Debug)]
pub(super) struct Writer {
    shared: Arc<Shared>,
    /// Tells the syncer to stop (set when the writer closes).
    stop: Arc<AtomicBool>,
    closed: bool,
    dir: PathBuf,
    instance: String,
    durability: Durability,
    segment_bytes: u64,
    number: u32,
    file: Arc<File>,
    segment: String,
    segment_len: u64,
    segment_lines: u64,
    seq: u64,
    prev: String,
    head: Arc<Mutex<Head>>,
    checkpoints: Arc<Checkpoints>,
    buf: Vec<u8>,
}

fn open_segment(dir: &std::path::Path, name: &str) -> Result<File, AuditError> {
    let path = dir.join(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o640);
    }
    opts.open(&path)
        .map_err(|source| AuditError::Io { path, source })
}

pub(super) fn open(options: JournalOptions) -> Result<Journal, AuditError> {
    let dir = options.dir.clone();
    let io = |path: PathBuf| move |source| AuditError::Io { path, source };
    std::fs::create_dir_all(dir.join("checkpoints")).map_err(io(dir.join("checkpoints")))?;
    std::fs::create_dir_all(dir.join("keys")).map_err(io(dir.join("keys")))?;
    let public = public_key_path(&dir, options.signer.key_id());
    if !public.exists() {
        std::fs::write(&public, options.signer.public_pem()).map_err(io(public.clone()))?;
    }
    let previous = list(&dir)?
        .into_iter()
        .next_back()
        .map(|(instance, segments)| tail(&instance, &segments))
        .transpose()?;
    let instance = new_instance_id();
    let segment = segment_name(&instance, 1);
    let file = Arc::new(open_segment(&dir, &segment)?);
    let cp_path = checkpoints_path(&dir, &instance);
    let cp_file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&cp_path)
        .map_err(io(cp_path.clone()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        instance: instance.clone(),
        dir: dir.clone(),
        on_failure: options.on_failure,
        pending: AtomicUsize::new(0),
        healthy: AtomicBool::new(true),
        written: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_error: Mutex::new(None),
        max_field_bytes: AtomicUsize::new(options.max_field_bytes),
        on_truncated: std::sync::RwLock::new(None),
    });
    let head = Arc::new(Mutex::new(Head {
        file: file.clone(),
        segment: segment.clone(),
        line: 0,
        seq: 0,
        hash: GENESIS.to_string(),
        checkpointed: 0,
    }));
    let checkpoints = Arc::new(Checkpoints {
        signer: options.signer,
        instance: instance.clone(),
        file: Mutex::new(cp_file),
        path: cp_path,
    });
    let mut writer = Writer {
        shared: shared.clone(),
        stop: stop.clone(),
        closed: false,
        dir,
        instance,
        durability: options.durability,
        segment_bytes: options.segment_bytes,
        number: 1,
        file,
        segment,
        segment_len: 0,
        segment_lines: 0,
        seq: 0,
        prev: GENESIS.to_string(),
        head: head.clone(),
        checkpoints: checkpoints.clone(),
        buf: Vec::with_capacity(64 * 1024),
    };
    // The first line says which chain came before, so deleting a whole chain is evident.
    let mut start = AuditEvent::new(EventKind::JournalStart, Outcome::Ok);
    start.detail = Some(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "durability": match options.durability { Durability::Process => "process", Durability::Fsync => "fsync" },
        "key_id": checkpoints.signer.key_id(),
        "previous": previous.map(|t| json!({
            "instance": t.instance, "seq": t.seq, "hash": t.hash, "torn_bytes": t.torn_bytes,
        })),
    }));
    let body = serde_json::to_vec(&start).expect("audit events serialize");
    writer.write_batch(&[body.as_slice()])?;
    writer
        .file
        .sync_data()
        .map_err(io(writer.dir.join(&writer.segment)))?;
    shared.written.store(1, Ordering::Relaxed);
    let syncer_stop = stop.clone();
    let sync_interval = options.sync_interval;
    let fsync_each_batch = options.durability == Durability::Fsync;
    // The syncer holds neither the writer nor a sender of its channel: dropping every
    // `Journal` closes the writer, which then stops the syncer.
    let syncer_dir = shared.dir.clone();
    std::thread::Builder::new()
        .name("audit-sync".into())
        .spawn(move || {
            sync_loop(
                head,
                checkpoints,
                syncer_dir,
                syncer_stop,
                sync_interval,
                fsync_each_batch,
            )
        })
        .map_err(io(PathBuf::from("<thread>")))?;
    let writer = Arc::new(Mutex::new(writer));
    let route = match options.durability {
        Durability::Process => Route::Inline(writer),
        Durability::Fsync => {
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::Builder::new()
                .name("audit-writer".into())
                .spawn(move || group_commit(&writer, rx))
                .map_err(io(PathBuf::from("<thread>")))?;
            Route::Thread(tx)
        }
    };
    Ok(Journal {
        handle: Arc::new(Handle { route }),
        shared,
    })
}

/// A result for each of several waiters (I/O errors are not `Clone`).
fn shareable(r: &Result<(), AuditError>) -> Result<(), AuditError> {
    r.as_ref()
        .map(|_| ())
        .map_err(|e| AuditError::Write(e.to_string()))
}

/// Fsyncs the head's segment and signs a checkpoint whenever the chain grew.
fn sync_loop(
    head: Arc<Mutex<Head>>,
    checkpoints: Arc<Checkpoints>,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    interval: Duration,
    already_synced: bool,
) {
    let step = Duration::from_millis(50).min(interval);
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(step);
        waited += step;
        if waited < interval {
            continue;
        }
        waited = Duration::ZERO;
        let snapshot = {
            let h = head.lock().expect("head lock");
            (h.seq > h.checkpointed).then(|| Head {
                file: h.file.clone(),
                segment: h.segment.clone(),
                line: h.line,
                seq: h.seq,
                hash: h.hash.clone(),
                checkpointed: h.checkpointed,
            })
        };
        let Some(snap) = snapshot else { continue };
        let synced = if already_synced {
            Ok(())
        } else {
            snap.file.sync_data().map_err(|source| AuditError::Io {
                path: dir.join(&snap.segment),
                source,
            })
        };
        match synced.and_then(|()| checkpoints.write(&snap)) {
            Ok(()) => {
                let mut h = head.lock().expect("head lock");
                h.checkpointed = h.checkpointed.max(snap.seq);
            }
            Err(e) => tracing::error!(error = %e, "audit journal: fsync or checkpoint failed"),
        }
    }
}

/// The `fsync`-mode writer thread: everything waiting is written with one `write` and one
/// `fdatasync`, then every waiter is answered.
fn group_commit(writer: &Mutex<Writer>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let lock = || writer.lock().unwrap_or_else(|e| e.into_inner());
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut waiters: Vec<Option<oneshot::Sender<Result<(), AuditError>>>> = Vec::new();
    let mut closing: Option<oneshot::Sender<Result<(), AuditError>>> = None;
    let mut flushes = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Append { body, done } => {
                    bodies.push(body);
                    waiters.push(done);
                }
                Command::Flush(done) => flushes.push(done),
                Command::Close(done) => closing = Some(done),
            }
            if bodies.len() < MAX_BATCH && closing.is_none() {
                next = rx.try_recv().ok();
            }
        }
        if !bodies.is_empty() {
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let mut w = lock();
            let result = w.commit(&refs);
            w.shared.pending.fetch_sub(bodies.len(), Ordering::Relaxed);
            drop(w);
            for done in waiters.drain(..).flatten() {
                let _ = done.send(shareable(&result));
            }
            bodies.clear();
        }
        if !flushes.is_empty() {
            let r = lock().checkpoint_now();
            for f in flushes.drain(..) {
                let _ = f.send(shareable(&r));
            }
        }
        if let Some(done) = closing.take() {
            let _ = done.send(lock().close());
            return;
        }
    }
    // Every `Journal` is gone.
    if let Err(e) = lock().close() {
        tracing::error!(error = %e, "audit journal: final checkpoint failed");
    }
}

impl Writer {
    /// Writes `bodies` (serialized events) and records the outcome in the journal's health
    /// and counters.
    pub(super) fn commit(&mut self, bodies: &[&[u8]]) -> Result<(), AuditError> {
        if self.closed {
            return Err(AuditError::Closed);
        }
        let n = bodies.len();
        match self.write_batch(bodies) {
            Ok(()) => {
                self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
                self.shared.healthy.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.shared.failed.fetch_add(n as u64, Ordering::Relaxed);
                self.shared.healthy.store(false, Ordering::Relaxed);
                *self.shared.last_error.lock().expect("error lock") = Some(e.to_string());
                tracing::error!(error = %e, events = n, "audit journal write failed");
                Err(AuditError::Write(e.to_string()))
            }
        }
    }

    /// Fsyncs, signs the head and stops the syncer; later commits fail with `Closed`.
    pub(super) fn close(&mut self) -> Result<(), AuditError> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        self.stop.store(true, Ordering::Relaxed);
        self.checkpoint_now()
    }

    /// Fsyncs the segment and signs a checkpoint of the head (if it moved).
    pub(super) fn checkpoint_now(&mut self) -> Result<(), AuditError> {
        self.file.sync_data().map_err(|source| AuditError::Io {
            path: self.dir.join(&self.segment),
            source,
        })?;
        let mut h = self.head.lock().expect("head lock");
        if h.seq > h.checkpointed {
            self.checkpoints.write(&h)?;
            h.checkpointed = h.seq;
        }
        Ok(())
    }

    /// Numbers, chains and writes `bodies` (serialized events) with one write. On failure
    /// nothing of the batch counts: the file is cut back to where it was.
    fn write_batch(&mut self, bodies: &[&[u8]]) -> Result<(), AuditError> {
        self.buf.clear();
        let (mut seq, mut prev) = (self.seq, self.prev.clone());
        for body in bodies {
            seq += 1;
            let start = self.buf.len();
            write!(
                self.buf,
                "{{\"seq\":{seq},\"prev\":\"{prev}\",\"id\":\"{}-{seq}\",\"instance\":\"{}\",",
                self.instance, self.instance
            )
            .expect("writing to a Vec");
            // An event body is a JSON object with at least one field: `{"…`.
            self.buf.extend_from_slice(&body[1..]);
            prev = hex::encode(Sha256::digest(&self.buf[start..]));
            self.buf.push(b'\n');
        }
        let path = self.dir.join(&self.segment);
        let written = (&*self.file).write_all(&self.buf).and_then(|()| {
            if self.durability == Durability::Fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(source) = written {
            // A partial write would break the chain for every later line: cut it off.
            if self.file.set_len(self.segment_len).is_err() {
                let _ = self.rotate();
            }
            return Err(AuditError::Io { path, source });
        }
        self.seq = seq;
        self.prev = prev;
        self.segment_len += self.buf.len() as u64;
        self.segment_lines += bodies.len() as u64;
        {
            let mut h = self.head.lock().expect("head lock");
            h.seq = seq;
            h.hash = self.prev.clone();
            h.line = self.segment_lines;
        }
        if self.segment_len >= self.segment_bytes
            && let Err(e) = self.rotate()
        {
            tracing::error!(error = %e, "audit journal: cannot start a new segment; continuing in the current one");
        }
        Ok(())
    }

    /// Closes the segment (fsync, checkpoint) and continues the chain in the next one.
    fn rotate(&mut self) -> Result<(), AuditError> {
        self.checkpoint_now()?;
        let number = self.number + 1;
        let segment = segment_name(&self.instance, number);
        let file = Arc::new(open_segment(&self.dir, &segment)?);
        self.number = number;
        self.file = file.clone();
        self.segment = segment.clone();
        self.segment_len = 0;
        self.segment_lines = 0;
        let mut h = self.head.lock().expect("head lock");
        h.file = file;
        h.segment = segment;
        h.line = 0;
        Ok(())
    }
}
