//! The `container` runtime: a stdio server in a container of Podman or Docker, through the
//! Docker Engine API ([`bollard`]), attached over the container's stdin and stdout.
//!
//! What a container gets: the image's files only (read-only root), the profile's grants as
//! bind mounts (`read` read-only, `write` read-write), a private `/tmp` (tmpfs), no network,
//! no capabilities, `no-new-privileges`, the profile's memory, CPU and PID limits, user
//! `nobody` unless the image names one, and the runtime class as the engine's OCI runtime.
//! Secret files are written to a memory-backed folder and bind-mounted read-only; secrets
//! asked as variables are in the container's environment (and so in `inspect`: weaker).
//!
//! Every container is labelled with its owner (`host:pid:start`); a gateway reaps the
//! containers of gateways on this host that are gone at its first container start.

mod engine;
mod seccomp;
mod secrets;
mod spec;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, RemoveContainerOptions,
};
use futures::StreamExt;
use gatehouse_config::{IsolationConfig, ServerConfig, ServerKind};
use tokio::io::{AsyncWrite, AsyncWriteExt, DuplexStream};

use crate::RuntimeError;
pub use spec::{MANAGED, OWNER, SERVER};

/// Bytes of a server's output buffered between the engine's stream and the gateway's reader.
const PIPE_BYTES: usize = 256 * 1024;

/// The engine connection, made at the first container start.
#[derive(Debug)]
pub(crate) struct Engine {
    host: Option<String>,
    client: tokio::sync::OnceCell<Result<Connected, String>>,
}

/// A connected engine and how it takes the seccomp profile.
#[derive(Debug, Clone)]
pub(crate) struct Connected {
    docker: Docker,
    /// The `seccomp=` security option: a path for Podman, the profile itself for Docker.
    seccomp: String,
    /// The engine's socket.
    socket: std::path::PathBuf,
    podman: bool,
}

impl Engine {
    /// The engine at `host` (default: detected). With `reap_now`, a task removes at once what
    /// gateways on this host that are gone left behind, if an engine answers (quietly if none).
    pub(crate) fn new(host: Option<String>, reap_now: bool) -> Engine {
        if reap_now && let Ok(rt) = tokio::runtime::Handle::try_current() {
            let h = host.clone();
            rt.spawn(async move {
                if let Ok((docker, found)) = engine::connect(h.as_deref()).await {
                    let socket = std::path::Path::new(found.strip_prefix("unix://").unwrap_or(&found));
                    let reaped = engine::reap(&docker, socket).await;
                    tracing::debug!(engine = %found, reaped, "reaped the containers of stopped gateways");
                }
            });
        }
        Engine {
            host,
            client: Default::default(),
        }
    }

    /// The connected client; the first call finds the engine and reaps what gateways that are
    /// gone left behind.
    pub(crate) async fn client(&self) -> Result<Connected, RuntimeError> {
        let host = self.host.clone();
        self.client
            .get_or_init(|| async move {
                let (docker, found) = engine::connect(host.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
                let version = docker.version().await.map_err(|e| {
                    format!("the container engine at {found} does not say its version: {e}")
                })?;
                let podman = version
                    .components
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.name.to_ascii_lowercase().contains("podman"));
                let seccomp = if podman {
                    let path = seccomp::write_file().map_err(|e| {
                        format!("cannot write the containers' seccomp profile: {e}")
                    })?;
                    format!("seccomp={}", path.display())
                } else {
                    format!("seccomp={}", seccomp::profile())
                };
                let socket: std::path::PathBuf =
                    found.strip_prefix("unix://").unwrap_or(&found).into();
                let reaped = engine::reap(&docker, &socket).await;
                tracing::info!(engine = %found, podman, reaped, "container engine found");
                Ok(Connected {
                    docker,
                    seccomp,
                    socket,
                    podman,
                })
            })
            .await
            .clone()
            .map_err(RuntimeError::Unavailable)
    }
}

/// A running container attached to the gateway: its stdin, stdout and stderr, how it ended,
/// and the guard that removes it.
pub struct Attached {
    /// The server's stdin.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// The server's stdout.
    pub stdout: DuplexStream,
    /// The server's stderr.
    pub stderr: DuplexStream,
    /// Resolves when the container's output ends (it exited or was removed).
    pub ended: tokio::sync::oneshot::Receiver<()>,
    /// Removes the container (and its secret files) when dropped or stopped.
    pub guard: Arc<ContainerGuard>,
    /// What protects the host from it, for the start log.
    pub protections: String,
    /// Its network namespace and egress proxy (with an allow-list); keep it for as long as
    /// the container runs.
    pub egress: Option<crate::egress::Egress>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

/// Owns one container: removing it (forced: killed first) once, when [`ContainerGuard::remove`]
/// is awaited or, failing that, when the guard is dropped.
#[derive(Debug)]
pub struct ContainerGuard {
    docker: Docker,
    /// The container's name.
    pub name: String,
    removed: AtomicBool,
    secrets: Option<secrets::SecretDir>,
}

impl ContainerGuard {
    /// Kills and removes the container now; later calls do nothing.
    pub async fn remove(&self) {
        if self.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        remove(&self.docker, &self.name).await;
    }

    /// Kills and removes the container without waiting (from synchronous code).
    pub fn kill(&self) {
        if self.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (docker, name) = (self.docker.clone(), self.name.clone());
            rt.spawn(async move { remove(&docker, &name).await });
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        self.kill();
        // The secret folder goes with the guard; the container's bind mount keeps the
        // mounted files readable until the container is gone.
        drop(self.secrets.take());
    }
}

async fn remove(docker: &Docker, name: &str) {
    let force = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(force)).await {
        Ok(()) => tracing::debug!(container = %name, "container removed"),
        // Already gone (it exited and the engine removed it): nothing to do.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => {
            tracing::warn!(container = %name, error = %e, "cannot remove a container; the next gateway start reaps it")
        }
    }
}

/// For `gatehouse validate`: how the gateway reaches a containerised HTTP server and what that
/// needs. `None` for other servers.
pub fn http_note(server: &ServerConfig) -> Option<String> {
    let iso = server.isolation.as_ref()?;
    let http = iso.http.as_ref()?;
    Some(format!(
        "server \"{}\" speaks Streamable HTTP on port {} (path {}) inside its container, in a network namespace of its own that only the gateway reaches (nothing is published on the host); the gateway needs root or CAP_SYS_ADMIN to enter it",
        server.name, http.port, http.path
    ))
}

/// Creates, attaches and starts the container for `server`.
pub(crate) async fn start(
    engine: &Engine,
    server: &ServerConfig,
    iso: &IsolationConfig,
    extra_env: Vec<(String, String)>,
    store: Option<&dyn crate::SecretLookup>,
    instance: u64,
    egress: Option<crate::egress::Egress>,
) -> Result<Attached, RuntimeError> {
    let ServerKind::Stdio {
        command,
        args,
        env,
        cwd,
    } = server.kind()
    else {
        return Err(RuntimeError::Profile("not a local server".into()));
    };
    let image = iso.image.as_deref().ok_or_else(|| {
        RuntimeError::Profile(format!(
            "server \"{}\" runs in a container but names no image",
            server.name
        ))
    })?;
    crate::plan::grants_exist(
        &server.name,
        iso.filesystem.read.iter().chain(&iso.filesystem.write),
    )?;
    let Connected {
        docker,
        seccomp,
        socket,
        podman,
    } = engine.client().await?;
    if !podman && egress.is_some() {
        // Docker's network modes name a container or a network, never a namespace's path.
        return Err(RuntimeError::Unavailable(format!(
            "server \"{}\": an egress allow-list for a container needs the engine to join a network namespace the gateway built, which Docker cannot do; run it on Podman (GATEHOUSE_CONTAINER_HOST names its socket)",
            server.name
        )));
    }
    let failed = |what: &str, e: bollard::errors::Error| {
        RuntimeError::Unavailable(format!(
            "server \"{}\": {what} (image {image}): {e}",
            server.name
        ))
    };
    let image_info = docker
        .inspect_image(image)
        .await
        .map_err(|e| failed("the container engine has no such image (images are never pulled: build or load it first)", e))?;
    let image_user = image_info
        .config
        .and_then(|c| c.user)
        .filter(|u| !u.is_empty());

    let secrets = crate::plan::resolve_secrets(&server.name, iso, store).await?;
    let full_env = crate::plan::server_env(
        "/usr/local/bin:/usr/bin:/bin".into(),
        "C.UTF-8".into(),
        env,
        extra_env,
        secrets.env,
    );
    let owner = engine::owner();
    // With an allow-list the container joins the namespace the gateway built, whose DNS
    // listener its resolv.conf names (a file of the secret folder, read-only).
    let netns = egress
        .as_ref()
        .map(|e| format!("ns:/proc/{}/fd/{}", std::process::id(), e.netns_fd()));
    let proxied = egress
        .as_ref()
        .is_some_and(crate::egress::Egress::has_allow_list);
    let secret_dir = if iso.secret_files.is_empty() && !proxied {
        None
    } else {
        let mut files = Vec::new();
        if proxied {
            files.push((
                std::path::PathBuf::from("/etc/resolv.conf"),
                crate::egress::RESOLV_CONF.to_string(),
            ));
        }
        files.extend(secrets.files);
        let uid = if image_user.is_some() {
            None
        } else {
            Some(65534)
        };
        Some(
            secrets::SecretDir::write(&owner, instance, &files, uid).map_err(|e| {
                RuntimeError::Profile(format!(
                    "server \"{}\": cannot write its secret files: {e}",
                    server.name
                ))
            })?,
        )
    };
    let spec = spec::Spec {
        server: &server.name,
        iso,
        image,
        command,
        args,
        cwd,
        env: full_env,
        secret_mounts: secret_dir
            .as_ref()
            .map(|d| d.mounts.clone())
            .unwrap_or_default(),
        user: if image_user.is_some() {
            None
        } else {
            Some(spec::NOBODY)
        },
        owner: &owner,
        seccomp: &seccomp,
        netns: netns.as_deref(),
        http: iso.http.is_some(),
    };
    let name = spec::name(&server.name, std::process::id(), instance);
    let create = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    docker
        .create_container(Some(create), spec.body())
        .await
        .map_err(|e| failed("cannot create the container", e))?;
    // From here on the guard removes the container whatever fails.
    let guard = Arc::new(ContainerGuard {
        docker: docker.clone(),
        name: name.clone(),
        removed: AtomicBool::new(false),
        secrets: secret_dir,
    });
    if let Some(class) = &iso.runtime_class {
        let got = oci_runtime(&docker, &socket, podman, &name).await;
        if got.as_deref() != Ok(class.as_str()) {
            // Fail closed: a server meant for gVisor or a VM must not run on the default.
            return Err(RuntimeError::Unavailable(format!(
                "server \"{}\": asked for runtime class {class:?}, but the engine would run it with {}{}",
                server.name,
                got.map(|g| format!("{g:?}"))
                    .unwrap_or_else(|e| format!("an unknown runtime ({e})")),
                if podman {
                    " (Podman 4.3 ignores a container's runtime in its API: start a service for that class with `podman --runtime NAME system service` and name its socket in GATEHOUSE_CONTAINER_HOST)"
                } else {
                    " (is the runtime registered with the engine?)"
                }
            )));
        }
    }
    let attach = AttachContainerOptions {
        stream: true,
        stdin: iso.http.is_none(),
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let attached = docker
        .attach_container(&name, Some(attach))
        .await
        .map_err(|e| failed("cannot attach to the container", e))?;
    docker
        .start_container(
            &name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| failed("cannot start the container", e))?;
    // An HTTP server without an allow-list listens in the namespace the engine gave it
    // (`network_mode: none`: its loopback only); the gateway connects from inside it.
    // `None` when it already exited: the caller sees it end and says so.
    let egress = match egress {
        None if iso.http.is_some() => own_netns(&socket, &name).await.map_err(|e| {
            RuntimeError::Unavailable(format!(
                "server \"{}\": cannot open its container's network namespace: {e}",
                server.name
            ))
        })?,
        e => e,
    };

    let (stdout_w, stdout) = tokio::io::duplex(PIPE_BYTES);
    let (stderr_w, stderr) = tokio::io::duplex(PIPE_BYTES);
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    tokio::spawn(demux(attached.output, stdout_w, stderr_w, ended_tx));
    let protections = format!(
        "container {name} of image {image}: {}, read-only root, no capabilities, no-new-privileges, user {}, runtime {}, limits memory {} pids {}{}",
        match (&egress, &iso.http) {
            (Some(e), _) if e.has_allow_list() =>
                "net: own namespace, egress through the gateway's proxy",
            (_, Some(_)) =>
                "net: own namespace with its loopback only, reached by the gateway alone",
            _ => "no network",
        },
        image_user.as_deref().unwrap_or(spec::NOBODY),
        iso.runtime_class
            .as_deref()
            .unwrap_or("the engine's default"),
        iso.resources.memory,
        iso.resources.pids,
        iso.resources
            .cpus
            .map(|c| format!(" cpus {c}"))
            .unwrap_or_default(),
    );
    Ok(Attached {
        stdin: attached.input,
        stdout,
        stderr,
        ended,
        guard,
        protections,
        egress,
    })
}

/// The network namespace of the running container `name`, through its first process;
/// `None` when it has none any more (it exited). Read raw: bollard's models reject Podman's
/// state names (`stopped`).
async fn own_netns(
    socket: &std::path::Path,
    name: &str,
) -> Result<Option<crate::egress::Egress>, String> {
    let c = match engine::raw_get(socket, &format!("/containers/{name}/json")).await {
        Ok(c) => c,
        // Gone already: it exited and the engine removed it (auto_remove).
        Err(e) if e.starts_with("404") => return Ok(None),
        Err(e) => return Err(e),
    };
    let pid = c["State"]["Pid"].as_i64().unwrap_or(0);
    if pid <= 0 {
        return Ok(None);
    }
    match crate::egress::Egress::adopt(pid) {
        Ok(ns) => Ok(Some(ns)),
        // It exited between the inspect and the open.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("/proc/{pid}/ns/net: {e}")),
    }
}

/// The OCI runtime the engine will run container `name` with: Podman's `OCIRuntime` (which
/// Docker's models lack), Docker's `HostConfig.Runtime`.
async fn oci_runtime(
    docker: &Docker,
    socket: &std::path::Path,
    podman: bool,
    name: &str,
) -> Result<String, String> {
    if podman {
        let v = engine::raw_get(socket, &format!("/v4.0.0/libpod/containers/{name}/json")).await?;
        v["OCIRuntime"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no OCIRuntime in inspect".into())
    } else {
        let c = docker
            .inspect_container(name, None)
            .await
            .map_err(|e| e.to_string())?;
        c.host_config
            .and_then(|h| h.runtime)
            .ok_or_else(|| "no HostConfig.Runtime in inspect".into())
    }
}

/// Splits the engine's multiplexed output into the server's stdout and stderr.
async fn demux(
    mut output: Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    mut stdout: DuplexStream,
    mut stderr: DuplexStream,
    ended: tokio::sync::oneshot::Sender<()>,
) {
    let mut stderr_open = true;
    while let Some(Ok(item)) = output.next().await {
        match item {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                if stdout.write_all(&message).await.is_err() {
                    break;
                }
            }
            LogOutput::StdErr { message } => {
                // A reader that stopped taking stderr must not stop stdout.
                if stderr_open && stderr.write_all(&message).await.is_err() {
                    stderr_open = false;
                }
            }
            LogOutput::StdIn { .. } => {}
        }
    }
    let _ = ended.send(());
}
