//! Where Gatehouse runs local MCP servers, and what they may touch.
//!
//! A stdio server runs in one of two runtimes today:
//! - **sandbox** (the default on Linux): [bubblewrap](https://github.com/containers/bubblewrap)
//!   builds the namespaces (user, PID, IPC, UTS, mount, network, cgroup) and the read-only view
//!   of the host the profile grants; inside, Gatehouse's own helper ([`exec`]) adds Landlock
//!   and a seccomp filter, then runs the server. Memory, PID and CPU limits go into a cgroup
//!   where the gateway may create one ([`cgroup`]).
//! - **process**: a plain child with the gateway's rights, written explicitly.
//! - **container**: a container of Podman or Docker through the Docker Engine API
//!   ([`container`]), attached over its stdin and stdout.
//!
//! [`RuntimesConfig::build`] makes the [`Runtimes`] a gateway launches servers through;
//! [`Runtimes::launch`] turns a server entry into a command ready to spawn.
//!
//! Architecture invariant: this crate prepares processes and never speaks MCP; the gateway
//! owns the conversation with the server.
#![warn(missing_docs)]

pub mod cgroup;
pub mod container;
pub mod egress;
pub mod exec;
pub mod install;
mod plan;
mod preset;
pub mod probe;
mod sandbox;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_config::{IsolationConfig, Preset, RuntimeKind, ServerConfig, ServerKind};

pub use plan::Protections;

/// Why a server cannot be started in its runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The sandbox cannot be built on this machine (a missing program or kernel feature).
    #[error("{0}")]
    Unavailable(String),
    /// The server entry asks for something that cannot be prepared (a missing grant, a
    /// command not found, a secret that cannot be read).
    #[error("{0}")]
    Profile(String),
    /// The server's `npx`/`uvx` package could not be installed.
    #[error("{0}")]
    Install(#[from] install::InstallError),
}

/// Where `store:NAME` secret references are read: the gateway's secret store.
pub trait SecretLookup: Send + Sync + std::fmt::Debug {
    /// The secret `name`, `None` when there is none. Errors name the store, never a value.
    fn get<'a>(
        &'a self,
        name: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<String>, String>> + Send + 'a>,
    >;
}

/// How the gateway's runtimes are built.
#[derive(Debug, Clone, Default)]
pub struct RuntimesConfig {
    /// The `gatehouse` binary, run inside the sandbox as the helper that applies Landlock and
    /// seccomp before starting the server. `None` (in-process tests): sandboxed servers
    /// cannot start.
    pub helper: Option<PathBuf>,
    /// Use at most this Landlock ABI (to see what an older kernel gets); default: the
    /// kernel's. Read from `GATEHOUSE_LANDLOCK_MAX_ABI` by the CLI.
    pub landlock_max_abi: Option<u8>,
    /// The `bwrap` program (default: `bwrap` on `PATH`).
    pub bwrap: Option<PathBuf>,
    /// Where `store:` secret references are read (`None`: they cannot be used).
    pub secrets: Option<std::sync::Arc<dyn SecretLookup>>,
    /// Where `npx`/`uvx` servers' packages are installed (`<data-dir>/packages`; `None`:
    /// such servers cannot start sandboxed).
    pub packages: Option<PathBuf>,
    /// The container engine's socket (`unix:///…`); default: detected (Podman first).
    pub container_host: Option<String>,
    /// The DNS server egress proxies resolve allowed names through (default: the system's
    /// resolver). Read from `GATEHOUSE_EGRESS_RESOLVER` by the CLI; tests point it at theirs.
    pub egress_resolver: Option<std::net::SocketAddr>,
}

impl RuntimesConfig {
    /// The runtimes, with the facts about this machine they need.
    pub fn build(self) -> Runtimes {
        // A real gateway (one with the helper) reaps what gateways that are gone left.
        let containers = container::Engine::new(self.container_host, self.helper.is_some());
        let kernel = probe::landlock_abi();
        let landlock_abi = match self.landlock_max_abi {
            Some(max) => kernel.min(max),
            None => kernel,
        };
        let cgroups = cgroup::Hierarchy::detect();
        if self.helper.is_some() {
            cgroups.reap_stale();
        }
        Runtimes {
            egress_resolver: self.egress_resolver,
            secrets: self.secrets,
            helper: self.helper,
            bwrap: self.bwrap,
            landlock_abi,
            sandbox_check: tokio::sync::OnceCell::new(),
            cgroups,
            counter: AtomicU64::new(0),
            noted: Default::default(),
            installer: std::sync::Arc::new(install::Installer::new(self.packages)),
            containers,
        }
    }
}

/// Launches server processes in their runtimes.
#[derive(Debug)]
pub struct Runtimes {
    egress_resolver: Option<std::net::SocketAddr>,
    secrets: Option<std::sync::Arc<dyn SecretLookup>>,
    helper: Option<PathBuf>,
    bwrap: Option<PathBuf>,
    landlock_abi: u8,
    /// Whether a sandbox can be built here, checked once at the first sandboxed start.
    sandbox_check: tokio::sync::OnceCell<Result<PathBuf, String>>,
    cgroups: cgroup::Hierarchy,
    counter: AtomicU64,
    /// Servers whose default-profile note was logged.
    noted: std::sync::Mutex<std::collections::HashSet<String>>,
    installer: std::sync::Arc<install::Installer>,
    /// The container engine, connected at the first container start.
    containers: container::Engine,
}

/// A server process ready to spawn, and what keeps its limits in place.
#[derive(Debug)]
pub struct Launch {
    /// The command to spawn; stdin, stdout and stderr are the caller's to set.
    pub command: tokio::process::Command,
    /// The runtime it runs in.
    pub runtime: RuntimeKind,
    /// What protects the host from it, for the start log.
    pub protections: Protections,
    /// The server's cgroup, removed when this is dropped (after the process ended).
    pub cgroup: Option<cgroup::Cgroup>,
    /// Descriptors the spawned process inherits (secret files); close them after spawning.
    pub inherited: Vec<std::os::fd::OwnedFd>,
    /// The server's network namespace and egress proxy (with an allow-list); keep it for as
    /// long as the process runs.
    pub egress: Option<egress::Egress>,
}

/// The isolation a server gets: its own block, or the minimal sandbox profile when it has
/// none (on Linux).
pub fn effective_isolation(server: &ServerConfig) -> IsolationConfig {
    server.isolation.clone().unwrap_or_default()
}

/// The preset a server's profile uses: written, or chosen from its command.
pub fn preset_of(server: &ServerConfig) -> Preset {
    let written = server.isolation.as_ref().and_then(|i| i.preset);
    written.unwrap_or_else(|| match server.kind() {
        ServerKind::Stdio { command, .. } => preset::detect(command),
        ServerKind::Remote { .. } => Preset::Binary,
    })
}

/// For a local server without an `isolation` block: what it now gets and how to restore the
/// old behaviour (for `gatehouse validate` and the start log). `None` for other servers.
pub fn default_profile_note(server: &ServerConfig) -> Option<String> {
    if server.isolation.is_some() || server.command.is_none() {
        return None;
    }
    let iso = IsolationConfig::default();
    Some(format!(
        "server \"{}\" has no isolation block, so it runs in the sandbox with the minimal profile: {}. To run it as before, without isolation, add `isolation: {{ runtime: process }}`",
        server.name,
        plan::describe_profile(&iso, preset_of(server)),
    ))
}

/// For an `npx`/`uvx` server: what the gateway installs before its first start, where, and
/// that it runs from there without network; under `runtime: process`, that it downloads as
/// written (for `gatehouse validate`). `None` for other servers.
pub fn install_note(server: &ServerConfig) -> Option<String> {
    match effective_isolation(server).runtime() {
        RuntimeKind::Sandbox => install::note(server),
        RuntimeKind::Process => install::process_note(server),
        RuntimeKind::Container => None,
    }
}

/// For a local server without an `isolation` block whose start failed: the limits it ran
/// under, appended to the error so the operator sees that the new default may be the cause.
pub fn default_profile_hint(server: &ServerConfig) -> Option<String> {
    if server.isolation.is_some() || server.command.is_none() || !cfg!(target_os = "linux") {
        return None;
    }
    Some(format!(
        " (it ran in the sandbox by default, with {}; grant what it needs under `isolation`, or add `isolation: {{ runtime: process }}` to run it without isolation as before)",
        plan::describe_profile(&IsolationConfig::default(), preset_of(server))
    ))
}

impl Runtimes {
    /// Logs `note` for `server` once in this process's life (reloads rebuild backends).
    pub fn note_once(&self, server: &str, note: &str) {
        let first = self
            .noted
            .lock()
            .expect("noted lock")
            .insert(server.to_string());
        if first {
            tracing::warn!(server, "{note}");
        }
    }

    /// Runtimes without a helper (in-process tests): sandboxed servers cannot start.
    pub fn without_helper() -> Runtimes {
        RuntimesConfig::default().build()
    }

    /// The Landlock ABI sandboxes get (0: none).
    pub fn landlock_abi(&self) -> u8 {
        self.landlock_abi
    }

    /// Prepares `server` (a stdio entry) to run in its runtime. `extra_env` are variables
    /// the gateway adds (a `static_secret` credential); their values never reach a command
    /// line.
    pub async fn launch(
        &self,
        server: &ServerConfig,
        extra_env: Vec<(String, String)>,
    ) -> Result<Launch, RuntimeError> {
        let iso = effective_isolation(server);
        match iso.runtime() {
            RuntimeKind::Process => Ok(sandbox::process(server, extra_env)),
            RuntimeKind::Sandbox => {
                let bwrap = self.sandbox_available().await?;
                let helper = self.helper.clone().ok_or_else(|| {
                    RuntimeError::Unavailable(
                        "the sandbox needs the gatehouse binary as its helper, and this gateway was started without one".into(),
                    )
                })?;
                let id = self.counter.fetch_add(1, Ordering::Relaxed);
                // An npx/uvx server runs what the gateway installed for it, not a download.
                let installed = match install::spec_of(server)? {
                    Some(spec) => Some(install::run_installed(
                        server,
                        &self.installer.ensure(&server.name, spec).await?,
                    )),
                    None => None,
                };
                let server = installed.as_ref().unwrap_or(server);
                let plan = plan::SandboxPlan::resolve(
                    server,
                    &iso,
                    preset_of(server),
                    extra_env,
                    self.secrets.as_deref(),
                )
                .await?;
                let egress = self.egress_for(server, &iso).await?;
                sandbox::build(sandbox::Sandbox {
                    egress,
                    server: &server.name,
                    plan,
                    iso: &iso,
                    bwrap: &bwrap,
                    helper: &helper,
                    landlock_abi: self.landlock_abi,
                    cgroups: &self.cgroups,
                    instance: id,
                })
            }
            RuntimeKind::Container => Err(RuntimeError::Unavailable(
                "a container is started with Runtimes::start_container, not as a command".into(),
            )),
        }
    }

    /// Starts installing a sandboxed `npx`/`uvx` server's package in the background, so its
    /// first start does not wait for the registry (a start meanwhile waits for this install).
    pub fn prepare(&self, server: &ServerConfig) {
        if effective_isolation(server).runtime() != RuntimeKind::Sandbox {
            return;
        }
        // Backends are also built outside a runtime (in-process tests); they install at start.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Ok(Some(spec)) = install::spec_of(server) {
            let installer = self.installer.clone();
            let name = server.name.clone();
            runtime.spawn(async move {
                // A failure is logged by the install and reported again by the start.
                let _ = installer.ensure(&name, spec).await;
            });
        }
    }

    /// Whether `server` runs in a container (started with [`Runtimes::start_container`]).
    pub fn is_container(server: &ServerConfig) -> bool {
        effective_isolation(server).runtime() == RuntimeKind::Container
    }

    /// Creates, attaches and starts `server`'s container (an entry with `runtime: container`);
    /// `extra_env` as for [`Runtimes::launch`]. For a server with `isolation.http` the returned
    /// [`container::Attached::egress`] is the container's network namespace (its own, or its
    /// allow-list's), which the gateway connects into with [`egress::Egress::connect`].
    pub async fn start_container(
        &self,
        server: &ServerConfig,
        extra_env: Vec<(String, String)>,
    ) -> Result<container::Attached, RuntimeError> {
        let iso = effective_isolation(server);
        let id = self.counter.fetch_add(1, Ordering::Relaxed);
        let egress = self.egress_for(server, &iso).await?;
        container::start(
            &self.containers,
            server,
            &iso,
            extra_env,
            self.secrets.as_deref(),
            id,
            egress,
        )
        .await
    }

    /// The network namespace and egress proxy of a server with an allow-list (sandbox or
    /// container alike); `None` without one.
    async fn egress_for(
        &self,
        server: &ServerConfig,
        iso: &IsolationConfig,
    ) -> Result<Option<egress::Egress>, RuntimeError> {
        if iso.network.egress.is_empty() {
            return Ok(None);
        }
        let policy = gatehouse_config::EgressPolicy::parse(&iso.network.egress)
            .map_err(RuntimeError::Profile)?;
        Ok(Some(
            egress::Egress::start(&server.name, policy, self.egress_resolver).await?,
        ))
    }

    async fn sandbox_available(&self) -> Result<PathBuf, RuntimeError> {
        let bwrap = self.bwrap.clone();
        self.sandbox_check
            .get_or_init(|| async move {
                // The check runs bwrap once; off the request threads.
                tokio::task::spawn_blocking(move || probe::sandbox(bwrap.as_deref()))
                    .await
                    .unwrap_or_else(|e| Err(format!("the sandbox check failed: {e}")))
            })
            .await
            .clone()
            .map_err(RuntimeError::Unavailable)
    }
}
