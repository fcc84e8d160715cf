//! The audit trail's background work in `gatehouse up`, each on a thread of its own with its
//! own runtime and database connection so that none of it competes with requests: the index
//! (with the usage rollups and the anomaly detectors), retention, and the sinks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_audit::Journal;
use gatehouse_audit::anomaly::Detectors;
use gatehouse_audit::index::{CatchUp, catch_up_with};
use gatehouse_config::{AnomalyConfig, SinkConfig};
use gatehouse_telemetry::Metrics;

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
/// `gatehouse_anomalies_total`. Returns the flag that stops it.
pub fn spawn_indexer(indexer: Indexer) -> Arc<std::sync::atomic::AtomicBool> {
    let Indexer {
        database_url,
        data_dir,
        journal,
        metrics,
        anomalies,
    } = indexer;
    let dir = journal.dir().to_path_buf();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let run = move || {
        #[cfg(target_os = "linux")]
        // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid parameter
        // block; threads this one spawns (the database driver's) inherit the policy.
        unsafe {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            tracing::error!(
                "audit index: cannot start its runtime; `gatehouse audit query` will index instead"
            );
            return;
        };
        rt.block_on(async move {
            let store = match &database_url {
                Some(url) => gatehouse_store::Store::open(url).await,
                None => gatehouse_store::Store::open_sqlite_in(&data_dir).await,
            };
            let store = match store {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "audit index: cannot open the store; `gatehouse audit query` will index instead");
                    return;
                }
            };
            let index = store.audit_index();
            let mut detectors = Detectors::new(&store, anomalies());
            let mut failing = false;
            let mut detecting = true;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
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
                                tracing::info!(detector = a.detector, reason = a.event.reason.as_deref().unwrap_or(""), "anomaly");
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
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            store.close().await;
        });
    };
    if let Err(e) = std::thread::Builder::new()
        .name("audit-index".into())
        .spawn(run)
    {
        tracing::warn!(error = %e, "audit index: cannot start its thread; `gatehouse audit query` will index instead");
    }
    stop
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Ships the journal to every configured sink, each from its own cursor, on one thread (at
/// normal priority: a SIEM's lag is an operator's concern, unlike the index's). Returns the
/// sender that stops them, or `None` without sinks.
pub fn spawn_sinks(
    sinks: Vec<SinkConfig>,
    database_url: Option<String>,
    data_dir: PathBuf,
    dir: PathBuf,
) -> Option<tokio::sync::watch::Sender<bool>> {
    if sinks.is_empty() {
        return None;
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            tracing::error!("audit sinks: cannot start their runtime; nothing is shipped");
            return;
        };
        rt.block_on(async move {
            let store = match &database_url {
                Some(url) => gatehouse_store::Store::open(url).await,
                None => gatehouse_store::Store::open_sqlite_in(&data_dir).await,
            };
            let store = match store {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "audit sinks: cannot open the store that keeps their cursors; nothing is shipped");
                    return;
                }
            };
            let mut tasks = Vec::new();
            for config in sinks {
                let name = config.name.clone();
                match gatehouse_audit::sinks::SinkRunner::new(config, dir.clone(), store.sink_cursors()) {
                    Ok(runner) => tasks.push(tokio::spawn(runner.run(stopped.clone()))),
                    Err(e) => tracing::error!(sink = %name, error = %e, "audit sink cannot start"),
                }
            }
            for t in tasks {
                let _ = t.await;
            }
            store.close().await;
        });
    };
    if let Err(e) = std::thread::Builder::new()
        .name("audit-sinks".into())
        .spawn(run)
    {
        tracing::error!(error = %e, "audit sinks: cannot start their thread; nothing is shipped");
    }
    Some(stop)
}
