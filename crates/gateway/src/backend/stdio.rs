//! Local MCP servers as stdio child processes: spawned on demand, one per user, restarted with
//! backoff, stderr captured into the gateway log, killed with their whole process group.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_config::{ProtocolSetting, ServerConfig};
use gatehouse_wire::{Message, ProtocolVersion};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::stderr::StderrPolicy;
use tokio::sync::mpsc;

use super::adapt;
use super::peer::Peer;
use super::restarts::Restarts;
use super::{BackendError, BackendInfo, CallEvent, ClientContext, handshake_version};
use crate::notify::ChangeHub;

/// How long to wait for an answer to the `server/discover` era probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A configured stdio server and its running processes.
#[derive(Debug)]
pub struct StdioBackend {
    config: ServerConfig,
    timeout: Duration,
    hub: Arc<ChangeHub>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// A `static_secret` reaches the process as an environment variable (never in argv).
    credentials: Option<Arc<gatehouse_identity::OutboundCredential>>,
    /// How the processes' stderr reaches the log.
    stderr: Arc<StderrPolicy>,
    /// Where the processes run (sandbox or plain process).
    runtimes: Arc<gatehouse_runtime::Runtimes>,
}

#[derive(Debug, Default)]
struct Slot {
    state: tokio::sync::Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    proc: Option<Arc<Proc>>,
    restarts: Restarts,
    /// Learned when a server exits on the `server/discover` probe: go straight to `initialize`.
    legacy_only: bool,
}

/// One running server: a child process or an attached container.
#[derive(Debug)]
struct Proc {
    peer: Arc<Peer>,
    info: Arc<BackendInfo>,
    stop: Stopper,
    /// The process's resource limits; the cgroup is removed after the process is killed.
    _cgroup: Option<gatehouse_runtime::cgroup::Cgroup>,
    /// The process's network namespace and egress proxy, ended with it.
    _egress: Option<gatehouse_runtime::egress::Egress>,
    last_used: AtomicU64,
    epoch: Instant,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop.kill();
    }
}

/// How a running server is stopped.
#[derive(Debug, Clone)]
enum Stopper {
    /// A child process: its process group.
    Group(i32),
    /// A container: removed (forced) through the engine.
    Container(Arc<gatehouse_runtime::container::ContainerGuard>),
}

impl Stopper {
    /// Kills it now, without waiting.
    fn kill(&self) {
        match self {
            Stopper::Group(pid) => kill_group(*pid, libc::SIGKILL),
            Stopper::Container(c) => c.kill(),
        }
    }
}

fn kill_group(pid: i32, signal: i32) {
    if pid > 0 {
        // SAFETY: kill(2) with a negative pid signals the process group we created; no memory is touched.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

impl StdioBackend {
    /// A backend for a `command:` server entry.
    pub fn new(
        config: ServerConfig,
        timeout: Duration,
        hub: Arc<ChangeHub>,
        credentials: Option<Arc<gatehouse_identity::OutboundCredential>>,
        stderr: Arc<StderrPolicy>,
        runtimes: Arc<gatehouse_runtime::Runtimes>,
    ) -> Self {
        if let Some(note) = gatehouse_runtime::default_profile_note(&config) {
            runtimes.note_once(&config.name, &note);
        }
        runtimes.prepare(&config);
        StdioBackend {
            config,
            timeout,
            hub,
            slots: Mutex::default(),
            credentials,
            stderr,
            runtimes,
        }
    }

    /// Server name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn slot(&self, user: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("slots lock")
            .entry(user.to_string())
            .or_default()
            .clone()
    }

    async fn proc_for(&self, user: &str) -> Result<Arc<Proc>, BackendError> {
        let slot = self.slot(user);
        let mut st = slot.state.lock().await;
        if let Some(p) = &st.proc {
            if !p.peer.is_closed() {
                return Ok(p.clone());
            }
            let lived = p.epoch.elapsed();
            st.restarts.ended(lived);
            st.proc = None;
        }
        if let Some(refusal) = st.restarts.refusal() {
            return Err(BackendError::Unavailable {
                server: self.config.name.clone(),
                reason: refusal,
            });
        }
        st.restarts.before_start(&self.config.name).await;
        // Boxed: the start (a sandbox, a container through the engine's API) is a large
        // future, and inline it would be part of every call's future, copied on every call.
        let started = match Box::pin(self.spawn(st.legacy_only)).await {
            Err(SpawnError::ExitedOnProbe) => {
                st.legacy_only = true;
                Box::pin(self.spawn(true)).await
            }
            other => other,
        };
        let proc = started.map_err(|e| {
            let e = self.start_failed(e);
            st.restarts.failed(&e);
            e
        })?;
        st.restarts.started();
        let proc = Arc::new(proc);
        st.proc = Some(proc.clone());
        Ok(proc)
    }

    /// The error for a start that failed; under the default sandbox it names the limits the
    /// server ran under, since the new default may be why it failed.
    fn start_failed(&self, e: SpawnError) -> BackendError {
        let mut e = e.into_backend(&self.config.name);
        if let (Some(hint), BackendError::Unavailable { reason, .. }) = (
            gatehouse_runtime::default_profile_hint(&self.config),
            &mut e,
        ) {
            reason.push_str(&hint);
        }
        e
    }

    async fn spawn(&self, legacy_only: bool) -> Result<Proc, SpawnError> {
        let extra_env: Vec<(String, String)> = self
            .credentials
            .as_ref()
            .and_then(|c| c.env())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into_iter()
            .collect();
        if gatehouse_runtime::Runtimes::is_container(&self.config) {
            return self.spawn_container(extra_env, legacy_only).await;
        }
        let launch = self
            .runtimes
            .launch(&self.config, extra_env)
            .await
            .map_err(|e| SpawnError::Start(e.to_string()))?;
        let gatehouse_runtime::Launch {
            command: mut cmd,
            runtime,
            protections,
            cgroup,
            inherited,
            egress,
        } = launch;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let command = self.config.command.as_deref().unwrap_or_default();
        let spawned = cmd.spawn();
        // The child has its copies of the secret files' descriptors now.
        drop(inherited);
        let mut child =
            spawned.map_err(|e| SpawnError::Start(format!("cannot start {command:?}: {e}")))?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        tracing::info!(server = %self.config.name, pid, command = %command, runtime = runtime.as_str(), %protections, "started stdio server");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let exited = async move {
            child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string())
        };
        let mut proc = self
            .serve(
                stdin,
                stdout,
                stderr,
                exited,
                Stopper::Group(pid),
                legacy_only,
            )
            .await?;
        proc._cgroup = cgroup;
        proc._egress = egress;
        Ok(proc)
    }

    /// The server in a container, attached over its stdin and stdout.
    async fn spawn_container(
        &self,
        extra_env: Vec<(String, String)>,
        legacy_only: bool,
    ) -> Result<Proc, SpawnError> {
        let attached = self
            .runtimes
            .start_container(&self.config, extra_env)
            .await
            .map_err(|e| SpawnError::Start(e.to_string()))?;
        let gatehouse_runtime::container::Attached {
            stdin,
            stdout,
            stderr,
            ended,
            guard,
            protections,
            egress,
        } = attached;
        tracing::info!(server = %self.config.name, container = %guard.name, runtime = "container", %protections, "started stdio server");
        let exited = async move {
            let _ = ended.await;
            "its container's output ended".to_string()
        };
        let mut proc = self
            .serve(
                stdin,
                stdout,
                stderr,
                exited,
                Stopper::Container(guard),
                legacy_only,
            )
            .await?;
        proc._egress = egress;
        Ok(proc)
    }

    /// Connects a started server's pipes to a new peer and shakes hands with it.
    async fn serve(
        &self,
        mut stdin: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
        stdout: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        exited: impl std::future::Future<Output = String> + Send + 'static,
        stop: Stopper,
        legacy_only: bool,
    ) -> Result<Proc, SpawnError> {
        let name = self.config.name.clone();
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(super::OUTGOING_QUEUE);
        let peer = Peer::new(name.clone(), out_tx, self.hub.clone());
        tokio::spawn(async move {
            while let Some(mut line) = out_rx.recv().await {
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(super::stderr::forward(
            stderr,
            name.clone(),
            self.stderr.clone(),
        ));
        let reader_peer = peer.clone();
        let reader_stop = stop.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::with_capacity(8192);
            loop {
                buf.clear();
                match (&mut reader)
                    .take(super::MAX_MESSAGE_BYTES as u64 + 1)
                    .read_until(b'\n', &mut buf)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if buf.len() > super::MAX_MESSAGE_BYTES {
                    // A server that writes an unbounded line would exhaust our memory.
                    tracing::error!(server = %name, limit = super::MAX_MESSAGE_BYTES, "server wrote a message over the size limit; stopping it");
                    reader_stop.kill();
                    break;
                }
                let line = trim_line(&buf);
                if line.is_empty() {
                    continue;
                }
                match Message::parse(line) {
                    Ok(msg) => reader_peer.handle_incoming(msg),
                    Err(e) => {
                        tracing::warn!(server = %name, error = %crate::observe::shown(&e), "server wrote a line that is not JSON-RPC")
                    }
                }
            }
            let status = exited.await;
            tracing::warn!(server = %name, %status, "stdio server exited");
            reader_peer.close(&format!("server process exited ({status})"));
        });

        let info = match self.handshake(&peer, legacy_only).await {
            Ok(info) => info,
            Err(e) => {
                // Nothing else would ever stop a process that failed its handshake.
                stop.kill();
                return Err(e);
            }
        };
        Ok(Proc {
            peer,
            info: Arc::new(info),
            stop,
            _cgroup: None,
            _egress: None,
            last_used: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    async fn handshake(
        &self,
        peer: &Arc<Peer>,
        legacy_only: bool,
    ) -> Result<BackendInfo, SpawnError> {
        let setting = self.config.protocol;
        let limit = self.timeout.min(Duration::from_secs(60));
        let probe_modern = !legacy_only
            && matches!(
                setting,
                ProtocolSetting::Auto | ProtocolSetting::V2026_07_28
            );
        if probe_modern {
            // A server that ignores the probe (some 2025-era servers drop requests before
            // initialize) is restarted and spoken to with initialize instead.
            let r = tokio::time::timeout(
                limit.min(PROBE_TIMEOUT),
                peer.request("server/discover", Some(adapt::discover_params()), None),
            )
            .await
            .map_err(|_| SpawnError::ExitedOnProbe)?;
            match r {
                Ok(m) if m.result.is_some() => {
                    let v = m.result_value().unwrap_or(Value::Null);
                    return Ok(BackendInfo::from_result(ProtocolVersion::V2026_07_28, &v));
                }
                Ok(_) if setting == ProtocolSetting::V2026_07_28 => {
                    return Err(SpawnError::Handshake(
                        "server rejected server/discover but protocol is 2026-07-28".into(),
                    ));
                }
                Ok(_) => {}
                Err(_) => return Err(SpawnError::ExitedOnProbe),
            }
        }
        let version = handshake_version(setting);
        let r = tokio::time::timeout(
            limit,
            peer.request("initialize", Some(adapt::initialize_params(version)), None),
        )
        .await
        .map_err(|_| SpawnError::Handshake("no answer to initialize".into()))?
        .map_err(|e| SpawnError::Handshake(e.to_string()))?;
        if let Some(err) = r.error {
            return Err(SpawnError::Handshake(format!(
                "initialize failed: {}",
                err.message
            )));
        }
        let v = r.result_value().unwrap_or(Value::Null);
        peer.notify("notifications/initialized", None);
        Ok(BackendInfo::from_result(version, &v))
    }

    /// Calls a method on the caller's process.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
        client: &ClientContext,
        events: Option<mpsc::Sender<CallEvent>>,
    ) -> Result<Message, BackendError> {
        let proc = self.proc_for(client.caller.principal.key()).await?;
        proc.last_used
            .store(proc.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let params = adapt::for_era(proc.info.era(), params, client);
        let r = proc.peer.request(method, params, events).await;
        proc.last_used
            .store(proc.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        r
    }

    /// Sends a notification to the caller's process if one runs.
    pub async fn notify(
        &self,
        method: &str,
        params: Option<Value>,
        client: &ClientContext,
    ) -> Result<(), BackendError> {
        let slot = self.slot(client.caller.principal.key());
        if let Some(p) = &slot.state.lock().await.proc {
            let params = adapt::for_era(p.info.era(), params, client);
            p.peer.notify(method, params);
        }
        Ok(())
    }

    /// Starts the process if needed and reports what the server said about itself.
    pub async fn info(&self, client: &ClientContext) -> Result<Arc<BackendInfo>, BackendError> {
        Ok(self
            .proc_for(client.caller.principal.key())
            .await?
            .info
            .clone())
    }

    /// The users' slots as they are now (the lock is not held while each is visited).
    fn current_slots(&self) -> Vec<Arc<Slot>> {
        self.slots
            .lock()
            .expect("slots lock")
            .values()
            .cloned()
            .collect()
    }

    /// Reaps processes idle for longer than the server's `idle_timeout`.
    pub async fn reap_idle(&self) {
        let idle = self.config.idle_timeout();
        let slots = self.current_slots();
        for slot in slots {
            let mut st = slot.state.lock().await;
            let stale = st.proc.as_ref().is_some_and(|p| {
                let last = Duration::from_millis(p.last_used.load(Ordering::Relaxed));
                p.epoch.elapsed().saturating_sub(last) > idle && Arc::strong_count(p) == 1
            });
            if stale {
                tracing::info!(server = %self.config.name, "reaping idle stdio server");
                st.proc = None;
            }
        }
    }

    /// Stops every running process (a secret it started with changed); the next call starts
    /// a new one. Calls in flight on an old process fail as on a crash.
    pub async fn restart(&self) -> usize {
        let slots = self.current_slots();
        let mut stopped = 0;
        for slot in slots {
            let mut st = slot.state.lock().await;
            if st.proc.take().is_some() {
                // A deliberate restart, not a crash: no backoff for the next start.
                st.restarts.reset();
                stopped += 1;
            }
        }
        stopped
    }

    /// Terminates every process: SIGTERM to the group, SIGKILL after a grace period.
    pub async fn shutdown(&self) {
        let slots: Vec<_> = self
            .slots
            .lock()
            .expect("slots lock")
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in slots {
            if let Some(p) = slot.state.lock().await.proc.take() {
                match &p.stop {
                    Stopper::Group(pid) => {
                        kill_group(*pid, libc::SIGTERM);
                        let deadline = Instant::now() + Duration::from_secs(2);
                        while !p.peer.is_closed() && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    // Awaited, so a stopping gateway leaves no container behind.
                    Stopper::Container(c) => c.remove().await,
                }
                drop(p);
            }
        }
    }
}

fn trim_line(buf: &[u8]) -> &[u8] {
    let mut end = buf.len();
    while end > 0 && (buf[end - 1] == b'\n' || buf[end - 1] == b'\r') {
        end -= 1;
    }
    &buf[..end]
}

enum SpawnError {
    Start(String),
    Handshake(String),
    ExitedOnProbe,
}

impl SpawnError {
    fn into_backend(self, server: &str) -> BackendError {
        let reason = match self {
            SpawnError::Start(r) => r,
            SpawnError::Handshake(r) => format!("handshake failed: {r}"),
            SpawnError::ExitedOnProbe => {
                "server exited or went silent during the protocol probe".into()
            }
        };
        BackendError::Unavailable {
            server: server.to_string(),
            reason,
        }
    }
}
