//! The loop that feeds one sink from the journal, from its own cursor.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_config::{SinkConfig, SinkStart};
use gatehouse_store::SinkCursors;
use tokio::sync::watch;

use super::{Delivered, Shipped, Sink, SinkError, build};
use crate::reader::{StoredEvent, complete_len, read_lines, segment_files};

/// First wait after a failed delivery; doubles up to the sink's `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The dead-letter file of sink `name`: journal lines its receiver refused for good.
pub fn dead_letter_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("sinks").join(format!("{name}.rejected.jsonl"))
}

/// What a runner reports as it goes (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A batch was taken: `delivered` events shipped, `rejected` dead-lettered.
    Delivered {
        /// Events the receiver took.
        delivered: u64,
        /// Events it refused for good.
        rejected: u64,
    },
    /// A delivery attempt failed; it will be retried.
    Failed,
}

/// Receives a runner's [`Progress`] (the sink's name first).
pub type ProgressHook = Box<dyn Fn(&str, Progress) + Send + Sync>;

/// Feeds one sink from the journal in `dir`.
pub struct SinkRunner {
    config: SinkConfig,
    dir: PathBuf,
    cursors: SinkCursors,
    sink: Box<dyn Sink>,
    progress: Option<ProgressHook>,
    /// Whether `start: now` has been looked at (once per runner).
    positioned: bool,
}

/// What one pass over the journal did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Events delivered.
    pub delivered: u64,
    /// Events refused for good (dead-lettered).
    pub rejected: u64,
}

impl SinkRunner {
    /// A runner for the sink `config` describes, reading `dir` and keeping its cursor in
    /// `cursors`.
    pub fn new(
        config: SinkConfig,
        dir: PathBuf,
        cursors: SinkCursors,
    ) -> Result<SinkRunner, SinkError> {
        let sink = build(&config)?;
        Ok(SinkRunner::with_sink(config, dir, cursors, sink))
    }

    /// A runner around an already built `sink` (tests, benchmarks).
    pub fn with_sink(
        config: SinkConfig,
        dir: PathBuf,
        cursors: SinkCursors,
        sink: Box<dyn Sink>,
    ) -> SinkRunner {
        SinkRunner {
            config,
            dir,
            cursors,
            sink,
            progress: None,
            positioned: false,
        }
    }

    /// Calls `hook` after every delivery and every failed attempt.
    pub fn on_progress(mut self, hook: ProgressHook) -> SinkRunner {
        self.progress = Some(hook);
        self
    }

    fn report(&self, p: Progress) {
        if let Some(hook) = &self.progress {
            hook(&self.config.name, p);
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Ships until `stop` turns true: everything pending, then whatever arrives, polling every
    /// `flush_interval`. Failures are retried (and recorded for `gatehouse audit sinks`);
    /// they never end the loop.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let idle = match self.catch_up(&mut stop).await {
                Ok(p) => p.delivered + p.rejected == 0,
                Err(e) => {
                    tracing::warn!(sink = %self.config.name, error = %e, "audit sink: cannot read the journal or the store");
                    true
                }
            };
            if *stop.borrow() {
                return;
            }
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.flush_interval.get()) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    /// Ships everything pending now; returns when the journal is drained or `stop` turns
    /// true. Deliveries that fail are retried here, with backoff.
    pub async fn catch_up(
        &mut self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Pass, crate::AuditError> {
        let mut cursors: HashMap<String, i64> = self.cursors.cursors(&self.config.name).await?;
        if !self.positioned {
            self.positioned = true;
            if self.config.start == SinkStart::Now && cursors.is_empty() && !self.known().await? {
                cursors = self.skip_to_end().await?;
            }
        }
        let mut pass = Pass::default();
        let max = self.config.batch_size.max(1) as usize;
        for segment in segment_files(&self.dir)? {
            let mut from = cursors.get(&segment.name).copied().unwrap_or(0) as u64;
            while segment.len > from {
                if *stop.borrow() {
                    return Ok(pass);
                }
                let (lines, end) = read_lines(&segment.path, from, max)?;
                if end == from {
                    break;
                }
                let batch: Vec<Shipped> = lines
                    .into_iter()
                    .filter_map(|l| {
                        let event = StoredEvent::parse(&l.bytes)?;
                        self.wanted(&event).then_some(Shipped {
                            raw: l.bytes,
                            event,
                        })
                    })
                    .collect();
                let Some(done) = self.deliver(&batch, stop).await else {
                    return Ok(pass);
                };
                let rejected = done.rejected.len() as u64;
                if rejected > 0 {
                    self.dead_letter(&batch, &done);
                    let (_, reason) = &done.rejected[0];
                    let note = format!(
                        "{rejected} event(s) refused for good, kept in {}: {reason}",
                        dead_letter_path(&self.dir, &self.config.name).display()
                    );
                    if let Err(e) = self.cursors.note(&self.config.name, &note).await {
                        tracing::warn!(sink = %self.config.name, error = %e, "audit sink: cannot record refused events");
                    }
                }
                let delivered = batch.len() as u64 - rejected;
                self.cursors
                    .advance(
                        &self.config.name,
                        &segment.name,
                        end as i64,
                        delivered as i64,
                        rejected as i64,
                    )
                    .await?;
                cursors.insert(segment.name.clone(), end as i64);
                self.report(Progress::Delivered {
                    delivered,
                    rejected,
                });
                pass.delivered += delivered;
                pass.rejected += rejected;
                from = end;
            }
        }
        Ok(pass)
    }

    /// Whether the store has seen this sink before (a status row).
    async fn known(&self) -> Result<bool, crate::AuditError> {
        let status = self.cursors.status().await?;
        Ok(status.iter().any(|s| s.sink == self.config.name))
    }

    /// A new sink with `start: now`: its cursor starts after the last complete line of
    /// every segment there is.
    async fn skip_to_end(&self) -> Result<HashMap<String, i64>, crate::AuditError> {
        let mut cursors = HashMap::new();
        for segment in segment_files(&self.dir)? {
            let end = complete_len(&segment.path, segment.len)?;
            self.cursors
                .advance(&self.config.name, &segment.name, end as i64, 0, 0)
                .await?;
            cursors.insert(segment.name, end as i64);
        }
        tracing::info!(sink = %self.config.name, "new audit sink starts at the end of the journal (start: now)");
        Ok(cursors)
    }

    fn wanted(&self, e: &StoredEvent) -> bool {
        self.config.events.is_empty()
            || self
                .config
                .events
                .iter()
                .any(|t| t == e.event.kind.as_str())
    }

    /// Delivers `batch`, retrying until the receiver takes it or refuses it for good;
    /// `None` when `stop` turned true first.
    async fn deliver(
        &mut self,
        batch: &[Shipped],
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Delivered> {
        if batch.is_empty() {
            return Some(Delivered::default());
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wait = match self.sink.deliver(batch).await {
                Ok(d) => return Some(d),
                Err(SinkError::Rejected(reason)) => {
                    // Not a failing sink: the events go to the dead-letter file (and the
                    // reason to its status) and the rest keeps flowing.
                    return Some(Delivered {
                        rejected: (0..batch.len()).map(|i| (i, reason.clone())).collect(),
                    });
                }
                Err(SinkError::Retry { message, after }) => {
                    self.record_failure(&message).await;
                    let wait = after.unwrap_or(backoff).min(self.config.max_backoff.get());
                    backoff = (backoff * 2).min(self.config.max_backoff.get());
                    wait
                }
                Err(SinkError::Config(message)) => {
                    // Nothing a retry can fix until the operator acts; keep trying slowly
                    // so the fix (a secret file appearing) is picked up.
                    self.record_failure(&message).await;
                    self.config.max_backoff.get()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return None,
            }
            if *stop.borrow() {
                return None;
            }
        }
    }

    async fn record_failure(&self, message: &str) {
        self.report(Progress::Failed);
        tracing::warn!(sink = %self.config.name, error = %message, "audit sink delivery failed");
        if let Err(e) = self.cursors.failed(&self.config.name, message).await {
            tracing::warn!(sink = %self.config.name, error = %e, "audit sink: cannot record the failure");
        }
    }

    /// Appends the refused lines to the dead-letter file (the journal keeps them too).
    fn dead_letter(&self, batch: &[Shipped], done: &Delivered) {
        let path = dead_letter_path(&self.dir, &self.config.name);
        let write = || -> std::io::Result<()> {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let mut buf = Vec::new();
            for (i, reason) in &done.rejected {
                if let Some(s) = batch.get(*i) {
                    tracing::warn!(sink = %self.config.name, id = %s.event.id, reason = %reason, "audit sink refused an event; kept in the dead-letter file");
                    buf.extend_from_slice(&s.raw);
                    buf.push(b'\n');
                }
            }
            f.write_all(&buf)
        };
        if let Err(e) = write() {
            tracing::error!(sink = %self.config.name, path = %path.display(), error = %e, "cannot write the audit sink's dead-letter file");
        }
    }
}
