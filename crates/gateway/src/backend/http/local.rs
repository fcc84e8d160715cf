//! A Streamable HTTP server the gateway runs itself, in a container (`isolation.http`).
//!
//! The container has a network namespace of its own holding nothing but its loopback (the
//! engine's `none` network; with an allow-list, the gateway's namespace with the egress proxy);
//! no port is published anywhere. The gateway's HTTP
//! client talks to a Unix socket in a folder only the gateway's user may enter, and each
//! connection on it is forwarded to the server's port from inside the namespace. So the only
//! way to the server is through the gateway, and the server's only way out is its allow-list.
//!
//! The container starts at the first request, is restarted with backoff after it exits, and is
//! removed when the backend is shut down or dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use gatehouse_config::{LocalHttp, ServerConfig};
use gatehouse_runtime::container::ContainerGuard;
use gatehouse_runtime::egress::Egress;

use crate::backend::BackendError;
use crate::backend::restarts::Restarts;
use crate::backend::stderr::StderrPolicy;

/// How long a started container has to listen on its port.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How often readiness is tried while the container starts.
const READY_POLL: Duration = Duration::from_millis(100);

/// One containerised HTTP server: its private socket, and the container when it runs.
#[derive(Debug)]
pub(crate) struct LocalServer {
    config: ServerConfig,
    port: u16,
    runtimes: Arc<gatehouse_runtime::Runtimes>,
    stderr: Arc<StderrPolicy>,
    socket: PrivateSocket,
    /// The running container; read lock-free on every request.
    running: Arc<ArcSwapOption<Running>>,
    /// Serialises starts, and remembers crashes for the backoff.
    starting: tokio::sync::Mutex<Restarts>,
    forwarder: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set by [`LocalServer::shutdown`]: no container starts after it.
    stopped: Arc<AtomicBool>,
}

/// A started container: removed when the last holder lets go.
#[derive(Debug)]
struct Running {
    guard: Arc<ContainerGuard>,
    egress: Egress,
    ended: Arc<AtomicBool>,
    started: Instant,
}

impl Running {
    fn alive(&self) -> bool {
        !self.ended.load(Ordering::Acquire)
    }
}

impl LocalServer {
    /// The server of `config` (whose `isolation.http` is `http`); nothing starts yet.
    pub(crate) fn new(
        config: &ServerConfig,
        http: &LocalHttp,
        runtimes: Arc<gatehouse_runtime::Runtimes>,
        stderr: Arc<StderrPolicy>,
    ) -> Result<LocalServer, BackendError> {
        let socket =
            PrivateSocket::create(&config.name).map_err(|e| BackendError::Unavailable {
                server: config.name.clone(),
                reason: format!("cannot make the gateway's private socket folder: {e}"),
            })?;
        Ok(LocalServer {
            config: config.clone(),
            port: http.port,
            runtimes,
            stderr,
            socket,
            running: Arc::default(),
            starting: tokio::sync::Mutex::default(),
            forwarder: std::sync::Mutex::default(),
            stopped: Arc::default(),
        })
    }

    /// The Unix socket the backend's HTTP client connects to.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket.path
    }

    fn unavailable(&self, reason: String) -> BackendError {
        BackendError::Unavailable {
            server: self.config.name.clone(),
            reason,
        }
    }

    /// Whether the container runs (the request's fast path: no await, no lock).
    pub(crate) fn is_running(&self) -> bool {
        self.running.load().as_ref().is_some_and(|r| r.alive())
    }

    /// Makes sure the container runs and listens: at once when it does, else (re)starts it
    /// and waits until its port answers. While the backoff its crashes earned runs, a request
    /// fails at once with the last failure instead of waiting (a member that keeps failing
    /// must not hold up the lists it is part of).
    pub(crate) async fn ensure(&self) -> Result<(), BackendError> {
        if self.is_running() {
            return Ok(());
        }
        let mut restarts = self.starting.lock().await;
        if self.stopped.load(Ordering::Acquire) {
            // A request that arrives while the gateway stops must not leave a container.
            return Err(self.unavailable("the gateway is stopping".into()));
        }
        if let Some(prev) = self.running.load_full() {
            if prev.alive() {
                return Ok(());
            }
            restarts.ended(prev.started.elapsed());
            self.running.store(None);
            prev.guard.remove().await;
        }
        if let Some(refusal) = restarts.refusal() {
            return Err(self.unavailable(refusal));
        }
        restarts.before_start(&self.config.name).await;
        self.listen()?;
        match self.start().await {
            Ok(running) => {
                self.running.store(Some(Arc::new(running)));
                restarts.started();
                Ok(())
            }
            Err(e) => {
                restarts.failed(&e);
                Err(e)
            }
        }
    }

    /// Starts the container and waits until it listens.
    async fn start(&self) -> Result<Running, BackendError> {
        let attached = self
            .runtimes
            .start_container(&self.config, Vec::new())
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        let gatehouse_runtime::container::Attached {
            stdout,
            stderr,
            ended,
            guard,
            protections,
            egress,
            ..
        } = attached;
        let name = self.config.name.clone();
        // An HTTP server's stdout is its log as much as its stderr is.
        tokio::spawn(super::super::stderr::forward(
            stdout,
            name.clone(),
            self.stderr.clone(),
        ));
        tokio::spawn(super::super::stderr::forward(
            stderr,
            name.clone(),
            self.stderr.clone(),
        ));
        let exited_early = || {
            self.unavailable(format!(
                "its container exited before it listened on port {} (its output is in the gateway log)",
                self.port
            ))
        };
        let Some(egress) = egress else {
            // It exited before its namespace could be opened.
            guard.remove().await;
            return Err(exited_early());
        };
        tracing::info!(server = %name, container = %guard.name, runtime = "container", port = self.port, %protections, "started HTTP server");
        let gone = Arc::new(AtomicBool::new(false));
        let flag = gone.clone();
        let container = guard.name.clone();
        let stopped = self.stopped.clone();
        tokio::spawn(async move {
            let _ = ended.await;
            flag.store(true, Ordering::Release);
            if stopped.load(Ordering::Acquire) {
                tracing::debug!(server = %name, %container, "the HTTP server's container was removed");
            } else {
                tracing::warn!(server = %name, %container, "the HTTP server's container ended; the next request starts it again");
            }
        });
        let running = Running {
            guard,
            egress,
            ended: gone,
            started: Instant::now(),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if !running.alive() {
                running.guard.remove().await;
                return Err(exited_early());
            }
            match running.egress.connect(self.port).await {
                Ok(_) => return Ok(running),
                // No privilege to enter its namespace: waiting will not help.
                Err(e)
                    if Instant::now() >= deadline
                        || e.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    running.guard.remove().await;
                    if e.kind() == std::io::ErrorKind::PermissionDenied {
                        return Err(self.unavailable(e.to_string()));
                    }
                    return Err(self.unavailable(format!(
                        "its container did not listen on port {} within {} s (last try: {e})",
                        self.port,
                        READY_WITHIN.as_secs()
                    )));
                }
                Err(_) => tokio::time::sleep(READY_POLL).await,
            }
        }
    }

    /// Starts forwarding the private socket's connections into the running container (once).
    fn listen(&self) -> Result<(), BackendError> {
        let mut forwarder = self.forwarder.lock().expect("forwarder lock");
        if forwarder.is_some() {
            return Ok(());
        }
        let listener = tokio::net::UnixListener::bind(&self.socket.path).map_err(|e| {
            self.unavailable(format!(
                "cannot listen on the private socket {}: {e}",
                self.socket.path.display()
            ))
        })?;
        *forwarder = Some(tokio::spawn(forward(
            listener,
            self.running.clone(),
            self.port,
            self.config.name.clone(),
        )));
        Ok(())
    }

    /// Removes the container, waiting for the engine.
    pub(crate) async fn shutdown(&self) {
        // Under the start lock: a start under way finishes first, and none follows.
        let _starts = self.starting.lock().await;
        self.stopped.store(true, Ordering::Release);
        if let Some(r) = self.running.swap(None) {
            r.guard.remove().await;
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(f) = self.forwarder.lock().expect("forwarder lock").take() {
            f.abort();
        }
    }
}

/// Copies each connection on the private socket to the server's port, from inside its
/// namespace. Without a running container the connection is closed (the request then fails
/// and the next one starts the container).
async fn forward(
    listener: tokio::net::UnixListener,
    running: Arc<ArcSwapOption<Running>>,
    port: u16,
    server: String,
) {
    loop {
        let mut conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                // Out of descriptors, most likely: let some close before trying again.
                tracing::warn!(server, error = %e, "cannot accept on the private socket");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(target) = running.load_full().filter(|r| r.alive()) else {
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            match target.egress.connect(port).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                }
                Err(e) => {
                    tracing::warn!(server, port, error = %e, "cannot reach the HTTP server in its container")
                }
            }
        });
    }
}

/// A Unix socket path in a folder of its own (mode 0700) under the temporary directory,
/// removed when dropped.
#[derive(Debug)]
struct PrivateSocket {
    dir: PathBuf,
    path: PathBuf,
}

impl PrivateSocket {
    fn create(server: &str) -> std::io::Result<PrivateSocket> {
        use std::os::unix::fs::DirBuilderExt;
        let clean: String = server
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        // `create` fails on anything already there (a symlink included), so a name someone
        // guessed costs a retry, never a socket in their folder.
        let mut last = None;
        for _ in 0..8 {
            let dir = std::env::temp_dir().join(format!(
                "gatehouse-{clean}-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let path = dir.join("http.sock");
                    return Ok(PrivateSocket { dir, path });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }
}

impl Drop for PrivateSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_socket_folder_is_the_gateways_alone_and_goes_with_it() {
        let s = PrivateSocket::create("my server/1").unwrap();
        let dir = s.dir.clone();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{dir:?}");
        assert!(s.path.starts_with(&dir));
        let other = PrivateSocket::create("my server/1").unwrap();
        assert_ne!(other.dir, dir);
        drop(s);
        assert!(!dir.exists());
    }
}
