//! One supervisor for the background work of `gatehouse up` (the audit index with its usage
//! rollups and anomaly detectors, retention, the sinks): each worker runs on a thread of its
//! own with its own runtime, so none of it competes with requests; one stop signal ends them
//! all, and [`Supervisor::shutdown`] waits for them within a deadline, naming any that did not
//! stop.

use std::time::Duration;

/// The stop signal as a worker sees it.
#[derive(Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Whether the supervisor asked its workers to stop.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the supervisor asks its workers to stop (at once if it already has, or
    /// if the supervisor is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration` unless asked to stop first; true when asked to stop.
    pub async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => self.is_set(),
            _ = self.wait() => true,
        }
    }
}

/// Owns the background workers and their stop signal.
pub struct Supervisor {
    stop: tokio::sync::watch::Sender<bool>,
    workers: Vec<(String, std::thread::JoinHandle<()>)>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            stop: tokio::sync::watch::channel(false).0,
            workers: Vec::new(),
        }
    }
}

impl Supervisor {
    /// Starts a worker named `name` (the thread's name, and the log's) that runs `work` on a
    /// runtime of its own, at idle priority (`SCHED_IDLE`) when `idle`; `lost` says what is
    /// lost when it cannot start, for the log.
    pub fn spawn<F, Fut>(&mut self, name: &str, idle: bool, lost: &'static str, work: F)
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let stop = Stop(self.stop.subscribe());
        let thread = name.to_string();
        let run = move || {
            #[cfg(target_os = "linux")]
            if idle {
                // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid
                // parameter block; threads this one spawns (the database driver's) inherit it.
                unsafe {
                    let param = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
                }
            }
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(work(stop)),
                Err(e) => tracing::error!(thread, error = %e, "cannot start a runtime; {lost}"),
            }
        };
        match std::thread::Builder::new().name(name.into()).spawn(run) {
            Ok(handle) => self.workers.push((name.to_string(), handle)),
            Err(e) => tracing::error!(thread = name, error = %e, "cannot start a thread; {lost}"),
        }
    }

    /// Asks every worker to stop and waits for them, at most `deadline` in all; a worker
    /// still running then is named in the log and left to end with the process.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let until = tokio::time::Instant::now() + deadline;
        for (name, handle) in self.workers {
            let join = tokio::task::spawn_blocking(move || handle.join());
            match tokio::time::timeout_at(until, join).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(_))) => tracing::error!(worker = %name, "background worker panicked"),
                Ok(Err(e)) => {
                    tracing::error!(worker = %name, error = %e, "background worker not joined")
                }
                Err(_) => tracing::warn!(
                    worker = %name,
                    ?deadline,
                    "background worker did not stop in time; it ends with the process"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_signal_stops_every_worker_and_shutdown_waits_for_them() {
        let mut supervisor = Supervisor::default();
        let finished = Arc::new(AtomicUsize::new(0));
        for name in ["a", "b", "c"] {
            let finished = finished.clone();
            supervisor.spawn(name, false, "nothing", move |mut stop| async move {
                // A worker that would sleep for an hour wakes on the signal.
                while !stop.sleep(Duration::from_secs(3600)).await {}
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        let started = std::time::Instant::now();
        supervisor.shutdown(Duration::from_secs(30)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 3);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "shutdown returned only at its deadline"
        );
    }

    #[tokio::test]
    async fn a_worker_that_ignores_the_signal_does_not_hold_shutdown_past_its_deadline() {
        let mut supervisor = Supervisor::default();
        let (release, released) = std::sync::mpsc::channel::<()>();
        supervisor.spawn("stubborn", false, "nothing", move |_stop| async move {
            let _ = released.recv_timeout(Duration::from_secs(60));
        });
        let started = std::time::Instant::now();
        supervisor.shutdown(Duration::from_millis(200)).await;
        assert!(started.elapsed() < Duration::from_secs(30));
        let _ = release.send(());
    }
}
