//! The audit trail's background work in `gatehouse up`, each on a thread of its own with its
//! own runtime and database connection so that none of it competes with requests: the index
//! (with the usage rollups and the anomaly detectors), retention, and the sinks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_config::SinkConfig;

/// Keeps the audit index in the store up to date with the journal, every second, on a thread
/// of its own at idle priority (`SCHED_IDLE`) with its own database connection: the index is
/// derived data, so parsing lines and inserting rows must never take CPU from requests. Under
/// full load it falls behind and catches up when there is idle time (`audit query` also
/// catches up before it answers). Returns the flag that stops it.
pub fn spawn_indexer(
    database_url: Option<String>,
    data_dir: PathBuf,
    dir: PathBuf,
) -> Arc<std::sync::atomic::AtomicBool> {
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
            let mut failing = false;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match gatehouse_audit::index::catch_up(&index, &dir).await {
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

/// Enforces `audit.retention` a minute after start and then every hour: removes expired
/// segment files behind signed anchors (never what a sink has not shipped), and records each
/// removal as a `retention` event. Returns the flag that stops it, or `None` when everything
/// is kept forever.
pub fn spawn_retention(
    config: gatehouse_config::AuditConfig,
    database_url: Option<String>,
    data_dir: PathBuf,
    auditor: Arc<gatehouse_gateway::observe::Auditor>,
) -> Option<Arc<std::sync::atomic::AtomicBool>> {
    let retention = gatehouse_audit::retention::Retention::new(&config.retention);
    if retention.keeps_everything() {
        return None;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let run = move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            tracing::error!("audit retention: cannot start its runtime; nothing expires");
            return;
        };
        rt.block_on(async move {
            let (key, _) = gatehouse_audit::journal::signing_key_path(&config, &data_dir);
            let dir = auditor.journal().dir().to_path_buf();
            let sinks: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
            let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if tokio::time::Instant::now() < next {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                next += Duration::from_secs(3600);
                let outcome = async {
                    let signer = gatehouse_audit::chain::CheckpointSigner::load_or_create(&key, false)?;
                    let store = match &database_url {
                        Some(url) => gatehouse_store::Store::open(url).await?,
                        None => gatehouse_store::Store::open_sqlite_in(&data_dir).await?,
                    };
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
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "audit retention pass failed; retrying in an hour"),
                }
            }
        });
    };
    if let Err(e) = std::thread::Builder::new()
        .name("audit-retention".into())
        .spawn(run)
    {
        tracing::error!(error = %e, "audit retention: cannot start its thread; nothing expires");
    }
    Some(stop)
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
