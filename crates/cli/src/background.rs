//! The audit trail's background work in `gatehouse up`, each worker of the [`Supervisor`] on a
//! thread of its own with its own runtime and database connection so that none of it competes
//! with requests: the index (with the usage rollups and the anomaly detectors), retention, and
//! the sinks. The supervisor's one stop signal ends them all.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_audit::Journal;
use gatehouse_audit::anomaly::Detectors;
use gatehouse_audit::index::{CatchUp, catch_up_with};
use gatehouse_audit::sinks::Progress;
use gatehouse_config::{AnomalyConfig, SinkConfig};
use gatehouse_telemetry::Metrics;

use crate::supervisor::{Stop, Supervisor};

/// What the indexer thread needs besides the store: where the journal is, the journal itself
/// (anomaly events are appended to it), the metrics (`gatehouse_anomalies_total`) and the
/// detectors' configuration.
pub struct Indexer {
    /// `--database-url` or `store.url`; SQLite in `data_dir` without one.
    pub database_url: Option<String>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The journal.
    pub journal: Journal,
    /// The gateway's metrics.
    pub metrics: Arc<Metrics>,
    /// The current `audit.anomalies` (read before each run, so a reload applies).
    pub anomalies: Box<dyn Fn() -> AnomalyConfig + Send>,
}

/// Keeps the audit index in the store up to date with the journal, every second, on a thread
/// of its own at idle priority (`SCHED_IDLE`) with its own database connection: the index is
/// derived data, so parsing lines and inserting rows must never take CPU from requests. Under
/// full load it falls behind and catches up when there is idle time (`audit query` also
/// catches up before it answers). After each catch-up the anomaly detectors judge the lines
/// just indexed; what they find is appended to the journal and counted in
/// `gatehouse_anomalies_total`.
pub fn spawn_indexer(supervisor: &mut Supervisor, indexer: Indexer) {
    let Indexer {
        database_url,
        data_dir,
        journal,
        metrics,
        anomalies,
    } = indexer;
    let dir = journal.dir().to_path_buf();
    const LOST: &str = "`gatehouse audit query` will index instead";
    supervisor.spawn("audit-index", true, LOST, move |mut stop: Stop| async move {
        let store = match gatehouse_store::Store::open_or_embedded(
            database_url.as_deref(),
            &data_dir,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "audit index: cannot open the store; {LOST}");
                return;
            }
        };
        let index = store.audit_index();
        let mut detectors = Detectors::new(&store, anomalies());
        let mut failing = false;
        let mut detecting = true;
        while !stop.is_set() {
            let mut observations = detectors.observations();
            let caught_up = catch_up_with(
                &index,
                &dir,
                CatchUp {
                    observations: Some(&mut observations),
                    ..Default::default()
                },
            )
            .await;
            // Also after a failed catch-up: what was observed of the committed batches
            // counts, and lines seen again next time change no state twice.
            if !observations.is_empty() {
                detectors.configure(anomalies());
                match detectors.run(observations, now_us()).await {
                    Ok(found) => {
                        detecting = true;
                        for a in found {
                            tracing::info!(
                                detector = a.detector,
                                reason = a.event.reason.as_deref().unwrap_or(""),
                                "anomaly"
                            );
                            metrics.anomaly(a.detector);
                            journal.append_detached(&a.event);
                        }
                    }
                    Err(e) if detecting => {
                        detecting = false;
                        tracing::warn!(error = %e, "anomaly detectors failed; retrying with the next lines");
                    }
                    Err(_) => {}
                }
            }
            match caught_up {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("audit index is being updated again");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "audit index cannot be updated (the journal itself is unaffected); retrying every second");
                }
                Err(_) => {}
            }
            stop.sleep(Duration::from_secs(1)).await;
        }
        store.close().await;
    });
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The current value of part of the configuration (it follows reloads).
pub type Current<T> = Box<dyn Fn() -> T + Send>;

/// A sink that runs: its config, the sender that stops it, its task.
type Running = (
    SinkConfig,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
);

/// Ships the journal to every configured sink, each from its own cursor, on one thread (at
/// normal priority: a SIEM's lag is an operator's concern, unlike the index's). Follows
/// reloads of `audit.sinks`: every two seconds, sinks added are started, sinks removed are
/// stopped and sinks changed are restarted (each keeps its cursor under its name).
pub fn spawn_sinks(
    supervisor: &mut Supervisor,
    sinks: Current<Vec<SinkConfig>>,
    database_url: Option<String>,
    data_dir: PathBuf,
    dir: PathBuf,
    metrics: Arc<Metrics>,
) {
    supervisor.spawn(
        "audit-sinks",
        false,
        "nothing is shipped",
        move |mut stop: Stop| async move {
            let mut store: Option<gatehouse_store::Store> = None;
            let mut running: std::collections::HashMap<String, Running> = Default::default();
            // Sinks that could not start (a missing CA file, say): tried again after a minute,
            // or at once when their configuration changes.
            let mut failed: std::collections::HashMap<String, (SinkConfig, tokio::time::Instant)> =
                Default::default();
            loop {
                let wanted = sinks();
                if !wanted.is_empty() && store.is_none() {
                    match gatehouse_store::Store::open_or_embedded(
                        database_url.as_deref(),
                        &data_dir,
                    )
                    .await
                    {
                        Ok(s) => store = Some(s),
                        Err(e) => {
                            tracing::error!(error = %e, "audit sinks: cannot open the store that keeps their cursors; retrying")
                        }
                    }
                }
                running.retain(|name, (config, halt, _)| {
                    let keep = wanted.iter().any(|w| w == config);
                    if !keep {
                        tracing::info!(sink = %name, "audit sink stopped (configuration changed)");
                        let _ = halt.send(true);
                    }
                    keep
                });
                if let Some(store) = &store {
                    for config in &wanted {
                        if running.contains_key(&config.name) {
                            continue;
                        }
                        if let Some((c, at)) = failed.get(&config.name)
                            && c == config
                            && at.elapsed() < Duration::from_secs(60)
                        {
                            continue;
                        }
                        match start_sink(config, &dir, store, &metrics) {
                            Some(r) => {
                                failed.remove(&config.name);
                                running.insert(config.name.clone(), r);
                            }
                            None => {
                                failed.insert(
                                    config.name.clone(),
                                    (config.clone(), tokio::time::Instant::now()),
                                );
                            }
                        }
                    }
                }
                if stop.sleep(Duration::from_secs(2)).await {
                    break;
                }
            }
            for (_, (_, halt, task)) in running {
                let _ = halt.send(true);
                let _ = task.await;
            }
            if let Some(store) = store {
                store.close().await;
            }
        },
    );
}

/// Starts one sink's runner, reporting its progress to the metrics.
fn start_sink(
    config: &SinkConfig,
    dir: &std::path::Path,
    store: &gatehouse_store::Store,
    metrics: &Arc<Metrics>,
) -> Option<Running> {
    let runner = match gatehouse_audit::sinks::SinkRunner::new(
        config.clone(),
        dir.to_path_buf(),
        store.sink_cursors(),
    ) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(sink = %config.name, error = %e, "audit sink cannot start");
            return None;
        }
    };
    let metrics = metrics.clone();
    let runner = runner.on_progress(Box::new(move |sink, p| match p {
        Progress::Delivered {
            delivered,
            rejected,
        } => metrics.sink_delivered(sink, delivered, rejected, now_us() / 1_000_000),
        Progress::Failed => metrics.sink_failed(sink),
    }));
    let (halt, halted) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(runner.run(halted));
    Some((config.clone(), halt, task))
}

/// Enforces `audit.retention` a minute after start and then every hour, as the configuration
/// says at that moment (it follows reloads): removes expired segment files behind signed
/// anchors (never what a sink has not shipped) and old usage rollups, and records each removal
/// as a `retention` event.
pub fn spawn_retention(
    supervisor: &mut Supervisor,
    audit: Current<gatehouse_config::AuditConfig>,
    database_url: Option<String>,
    data_dir: PathBuf,
    auditor: Arc<gatehouse_gateway::observe::Auditor>,
) {
    supervisor.spawn(
        "audit-retention",
        false,
        "nothing expires",
        move |mut stop: Stop| async move {
            let dir = auditor.journal().dir().to_path_buf();
            let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
            while !stop.is_set() {
                let now = tokio::time::Instant::now();
                if now < next {
                    stop.sleep(next - now).await;
                    continue;
                }
                next += Duration::from_secs(3600);
                let config = audit();
                let retention = gatehouse_audit::retention::Retention::new(&config.retention);
                if retention.keeps_everything() {
                    continue;
                }
                let outcome = async {
                    let (key, _) = gatehouse_audit::journal::signing_key_path(&config, &data_dir);
                    let signer =
                        gatehouse_audit::chain::CheckpointSigner::load_or_create(&key, false)?;
                    let sinks: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
                    let store = gatehouse_store::Store::open_or_embedded(
                        database_url.as_deref(),
                        &data_dir,
                    )
                    .await?;
                    let done = gatehouse_audit::retention::enforce(
                        &dir,
                        &retention,
                        &signer,
                        &store,
                        &sinks,
                        std::time::SystemTime::now(),
                    )
                    .await;
                    store.close().await;
                    anyhow::Ok(done?)
                }
                .await;
                match outcome {
                    Ok(done) => record_retention(&auditor, &done),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "audit retention pass failed; retrying in an hour")
                    }
                }
            }
        },
    );
}

/// Writes what a retention pass removed (or held back) into the journal itself.
fn record_retention(
    auditor: &gatehouse_gateway::observe::Auditor,
    done: &gatehouse_audit::retention::Enforced,
) {
    if !done.held_for_sinks.is_empty() {
        tracing::warn!(
            segments = done.held_for_sinks.len(),
            "expired audit segments kept until every sink has shipped them (see gatehouse audit sinks)"
        );
    }
    if done.rollups > 0 {
        tracing::info!(
            rows = done.rollups,
            "usage rollups past audit.retention removed"
        );
    }
    if done.removed.is_empty() {
        return;
    }
    let mut e = gatehouse_audit::AuditEvent::new(
        gatehouse_audit::EventKind::Retention,
        gatehouse_audit::Outcome::Ok,
    );
    e.reason = Some(format!(
        "removed {} segment file(s), {} event(s), past their retention",
        done.removed.len(),
        done.events
    ));
    e.detail = Some(serde_json::json!({
        "removed": done.removed,
        "events": done.events,
        "bytes": done.bytes,
        "anchors": done.anchors.iter().map(|a| serde_json::json!({
            "instance": a.instance, "through_seq": a.through_seq, "whole_chain": a.whole_chain,
        })).collect::<Vec<_>>(),
        "held_for_sinks": done.held_for_sinks,
    }));
    tracing::info!(
        segments = done.removed.len(),
        events = done.events,
        "audit retention removed expired segments"
    );
    auditor.journal().append_detached(&e);
}
