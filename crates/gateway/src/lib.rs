//! The Gatehouse data plane.
//!
//! A [`Gateway`] holds the current [`snapshot::Snapshot`] (swapped atomically on reload), the
//! sealing keys, the handshake-era sessions and the MRTR calls parked on this process. The
//! request path reads top to bottom: [`frontdoor`] (HTTP, eras, sessions) → [`dispatch`]
//! (virtual-server routing and aggregation, via [`catalog`]) → [`backend`] (the member server,
//! in its own era).
#![warn(missing_docs)]

pub mod authz;
pub mod backend;
pub mod catalog;
pub mod context;
pub mod dispatch;
pub mod frontdoor;
pub mod listen;
pub mod methods;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod reload;
pub mod seal;
pub mod snapshot;
pub mod subscriptions;
pub mod tasks;
#[cfg(test)]
pub(crate) mod testing;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use gatehouse_config::Config;

use crate::catalog::ListKind;
use crate::frontdoor::mrtr::Parked;
use crate::frontdoor::session::{SessionStore, SessionStoreConfig};
use crate::notify::ChangeHub;
use crate::seal::Keyring;
use crate::snapshot::Snapshot;
use crate::snapshot::{BuildContext, BuildError};

/// How long stopping the backends may take at shutdown.
const BACKEND_SHUTDOWN: Duration = Duration::from_secs(3);

/// The running data plane.
#[derive(Debug)]
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// Changes announced by backends.
    pub hub: Arc<ChangeHub>,
    /// Keys that seal session ids and request states.
    pub keys: Keyring,
    /// Handshake-era sessions served here.
    pub sessions: SessionStore,
    /// MRTR calls waiting for a client's retry.
    pub parked: Parked<frontdoor::call::CallStream>,
    /// Open legacy HTTP+SSE connections.
    pub sse: frontdoor::sse::SseConnections,
    /// Who owns the tasks created through this process (for `tasks/list` and notifications).
    pub tasks: tasks::TaskOwners,
    /// Member changes, announced after the catalog caches dropped what they invalidate, so
    /// a stream that measures a caller's view then sees the new lists.
    pub changes: tokio::sync::broadcast::Sender<notify::ServerChange>,
    /// What snapshot builds need (hub, vault, public URL).
    build: BuildContext,
    /// Announces each change of the policy set to open streams (callers whose view changed
    /// get `list_changed`; subscriptions are decided again).
    pub policy_swaps: tokio::sync::broadcast::Sender<()>,
    /// The audit journal; `None` when auditing is off.
    pub audit: Option<Arc<observe::Auditor>>,
    /// Metrics and (with OTLP) traces.
    pub telemetry: gatehouse_telemetry::Telemetry,
    draining: AtomicBool,
}

/// The gateway's external base URL: `gateway.public_url`, else `http(s)://<host>` with `host`
/// the listener's address or, for a request, its (rebinding-checked) Host header.
pub fn public_base(config: &Config, host: &str) -> String {
    match &config.gateway.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let scheme = if config.gateway.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}")
        }
    }
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The new snapshot's version.
    pub version: u64,
    /// Start-only settings the new config changes: they keep their running values until a
    /// restart (paths as in the configuration reference, e.g. `admin.listen`).
    pub restart_needed: Vec<&'static str>,
}

/// What a gateway is built from: a validated config and the process's resources, then
/// [`GatewayParts::build`].
pub struct GatewayParts {
    /// The validated configuration.
    pub config: Config,
    /// The keys that seal session ids, request states and task handles.
    pub keys: Keyring,
    /// The gateway listener's address: a loopback one turns on the strict Host check, and it
    /// is the public base when `gateway.public_url` is unset.
    pub listen: SocketAddr,
    /// Users' delegated tokens (`user_oauth`); `None` without a store.
    pub vault: Option<Arc<gatehouse_identity::outbound::Vault>>,
    /// Where DELETEd sessions are revoked for every process sharing the store (`None`: in
    /// this process only, forgotten on restart).
    pub revocations: Option<gatehouse_store::SessionRevocations>,
    /// The policy set the config names, loaded; `None` when authorization is off.
    pub policies: Option<Arc<gatehouse_policy::Policies>>,
    /// The audit journal; `None` when auditing is off.
    pub audit: Option<Arc<observe::Auditor>>,
    /// Metrics and (with OTLP) traces.
    pub telemetry: gatehouse_telemetry::Telemetry,
    /// Where local servers run.
    pub runtimes: Arc<gatehouse_runtime::Runtimes>,
    /// The `store:` secrets servers' credentials read, fetched from the vault beforehand
    /// ([`Gateway::refresh_stored_secrets`] does it for later configs).
    pub stored: Arc<gatehouse_identity::outbound::StoredSecrets>,
}

impl GatewayParts {
    /// Builds the gateway and starts its own background tasks (cache invalidation, the
    /// session reaper, the revocation follower), which end when the gateway is dropped.
    pub fn build(self) -> Result<Arc<Gateway>, BuildError> {
        let GatewayParts {
            config,
            keys,
            listen,
            vault,
            revocations,
            policies,
            audit,
            telemetry,
            runtimes,
            stored,
        } = self;
        let hub = Arc::new(ChangeHub::default());
        let build = BuildContext {
            hub: hub.clone(),
            vault,
            public_base: public_base(&config, &listen.to_string()),
            decisions: Arc::new(authz::LogDecisions),
            stderr: backend::stderr::StderrPolicy::new(
                &config.gateway.stderr,
                telemetry.metrics().clone(),
            ),
            loopback: listen.ip().is_loopback(),
            bodies: frontdoor::body::BodyLimits::new(&config.gateway, telemetry.metrics().clone()),
            runtimes,
            stored,
        };
        gatehouse_audit::bound::set_log_limit(config.audit.max_field_bytes as usize);
        let sessions =
            SessionStoreConfig::new(&config.gateway, revocations, telemetry.metrics().clone())
                .build();
        let snapshot = Snapshot::build(config, None, &build, policies)?;
        let gw = Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            hub,
            keys,
            sessions,
            parked: Parked::default(),
            sse: Default::default(),
            tasks: tasks::TaskOwners::default(),
            changes: tokio::sync::broadcast::channel(256).0,
            build,
            policy_swaps: tokio::sync::broadcast::channel(16).0,
            audit,
            telemetry,
            draining: AtomicBool::new(false),
        });
        gw.spawn_cache_invalidation();
        gw.spawn_reaper();
        gw.spawn_revocation_follower();
        Ok(gw)
    }
}

impl Gateway {
    /// Reads from the vault the stored secrets `config`'s server credentials name, before a
    /// snapshot of it is built; returns the names whose value changed.
    pub async fn refresh_stored_secrets(
        &self,
        config: &Config,
    ) -> Result<Vec<String>, gatehouse_identity::CredentialError> {
        let Some(vault) = &self.build.vault else {
            return Ok(Vec::new());
        };
        let names = config
            .servers
            .iter()
            .flat_map(gatehouse_identity::outbound::StoredSecrets::names_in)
            .collect();
        self.build.stored.refresh(vault, &names).await
    }

    /// Applies a changed stored secret `name`: servers whose credentials read it are rebuilt
    /// with its new value (a reload of the running config), and the local servers whose
    /// `isolation` reads it start again; returns the names of both.
    pub async fn restart_servers_using_secret(&self, name: &str) -> Vec<String> {
        let reference = format!("store:{name}");
        let snapshot = self.snapshot();
        let mut restarted = Vec::new();
        let credential_users: Vec<String> = snapshot
            .servers
            .values()
            .filter(|h| {
                gatehouse_identity::outbound::StoredSecrets::names_in(&h.config).contains(name)
            })
            .map(|h| h.config.name.clone())
            .collect();
        if !credential_users.is_empty() {
            match self.refresh_stored_secrets(&snapshot.config).await {
                Ok(_) => match self.reload((*snapshot.config).clone(), snapshot.policies.clone()) {
                    Ok(_) => {
                        tracing::info!(secret = name, servers = ?credential_users, "a stored secret changed: the servers whose credentials read it were rebuilt with it");
                        restarted.extend(credential_users);
                    }
                    Err(e) => {
                        tracing::error!(secret = name, error = %e, "a stored secret changed, but the servers whose credentials read it cannot be rebuilt; they keep the old value")
                    }
                },
                Err(e) => {
                    tracing::error!(secret = name, error = %e, "cannot read the stored secrets")
                }
            }
        }
        for handle in snapshot.servers.values() {
            let Some(iso) = &handle.config.isolation else {
                continue;
            };
            let uses = iso
                .secrets
                .values()
                .chain(iso.secret_files.values())
                .any(|s| s.0 == reference);
            if let (true, backend::Backend::Stdio(b)) = (uses, &handle.backend) {
                let stopped = b.restart().await;
                tracing::info!(server = %handle.config.name, secret = name, processes = stopped, "a stored secret changed: the server starts again with it");
                restarted.push(handle.config.name.clone());
            }
        }
        restarted
    }

    /// The snapshot new requests are served against.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Records a configuration or policy set that was rejected (the running one stays).
    pub fn rejected(&self, kind: gatehouse_audit::EventKind, reason: String) {
        if let Some(a) = &self.audit {
            a.change(
                kind,
                gatehouse_audit::Outcome::Rejected,
                Some(reason),
                serde_json::json!({"running_version": self.snapshot().version}),
            );
        }
    }

    /// Applies a reloaded config's bounds on recorded strings, stdio stderr and the bytes of
    /// bodies in flight; the journal, the log, running processes and the listener follow at
    /// once.
    fn apply_bounds(&self, config: &Config) {
        let max = config.audit.max_field_bytes as usize;
        gatehouse_audit::bound::set_log_limit(max);
        if let Some(a) = &self.audit {
            a.journal().set_max_field_bytes(max);
        }
        self.build.stderr.configure(&config.gateway.stderr);
        self.build
            .bodies
            .set_budget(config.gateway.max_body_bytes_in_flight);
    }

    /// Swaps in a new config and policy set. In-flight requests keep the snapshot they started
    /// with; backends of unchanged servers carry over; removed ones stop once their last
    /// request finishes.
    ///
    /// Start-only settings (listeners, TLS, the store, the journal's files) keep the values the
    /// process runs with, so the new snapshot's config says what is in effect; the ones whose
    /// new values wait for a restart are returned, logged by the caller and named in the
    /// `config.change` event.
    pub fn reload(
        &self,
        mut config: Config,
        policies: Option<Arc<gatehouse_policy::Policies>>,
    ) -> Result<Reloaded, BuildError> {
        let old = self.snapshot();
        let restart_needed = gatehouse_config::reload::keep_start_only(&old.config, &mut config);
        let next = Snapshot::build(config, Some(&old), &self.build, policies)?;
        // Before anything is recorded as applied: a pipeline that cannot be built rejects the
        // reload, and the running config keeps serving.
        self.telemetry
            .reconfigure(&next.config.telemetry.clone().unwrap_or_default())?;
        let version = next.version;
        let retired = old.retired_by(&next);
        let version_of = |s: &Snapshot| s.policies.as_ref().map(|p| p.version().to_string());
        let policy_change =
            (version_of(&old) != version_of(&next)).then(|| (version_of(&old), version_of(&next)));
        if let Some(a) = &self.audit {
            let servers = |s: &Snapshot| {
                let mut v: Vec<String> = s.servers.keys().cloned().collect();
                v.sort();
                v
            };
            a.change(
                gatehouse_audit::EventKind::ConfigChange,
                gatehouse_audit::Outcome::Ok,
                None,
                serde_json::json!({
                    "from_version": old.version,
                    "to_version": next.version,
                    "servers": servers(&next),
                    "virtual_servers": next.virtual_servers.values().map(|v| v.name.clone()).collect::<Vec<_>>(),
                    "restart_needed": restart_needed,
                }),
            );
            if let Some((from, to)) = &policy_change {
                a.change(
                    gatehouse_audit::EventKind::PolicyChange,
                    gatehouse_audit::Outcome::Ok,
                    None,
                    serde_json::json!({
                        "from_version": from,
                        "to_version": to,
                        "engine": next.policies.as_ref().map(|p| p.engine_name()),
                        "policies": next.policies.as_ref().map(|p| p.len()),
                    }),
                );
            }
        }
        self.apply_bounds(&next.config);
        self.sessions.reconfigure(&next.config.gateway);
        self.snapshot.store(Arc::new(next));
        if policy_change.is_some() {
            // Nobody listening is fine.
            let _ = self.policy_swaps.send(());
        }
        for handle in retired {
            tokio::spawn(async move {
                // Wait for in-flight calls (which hold the old snapshot) to let go.
                while Arc::strong_count(&handle) > 1 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                handle.backend.shutdown().await;
            });
        }
        Ok(Reloaded {
            version,
            restart_needed,
        })
    }

    /// The vault holding users' delegated tokens, if the gateway has a store.
    pub fn vault(&self) -> Option<&Arc<gatehouse_identity::outbound::Vault>> {
        self.build.vault.as_ref()
    }

    /// The HTTP router serving every virtual server and the health endpoints.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        frontdoor::router(self.clone())
    }

    /// Marks the gateway as draining: `/readyz` fails and new requests are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once draining started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stops every backend (child processes get SIGTERM, then SIGKILL).
    pub async fn shutdown_backends(&self) {
        let snap = self.snapshot();
        let all = snap.servers.values().map(|h| h.backend.shutdown());
        // A backend that does not answer (e.g. to the DELETE of a session) must not hold up
        // the exit; child processes are killed when their handles drop regardless.
        if tokio::time::timeout(BACKEND_SHUTDOWN, futures::future::join_all(all))
            .await
            .is_err()
        {
            tracing::warn!(?BACKEND_SHUTDOWN, "some backends did not shut down in time");
        }
    }

    fn spawn_cache_invalidation(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let mut rx = self.hub.subscribe();
        tokio::spawn(async move {
            loop {
                let change = match rx.recv().await {
                    Ok(c) => c,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed changes: drop every cache rather than serve a stale list.
                        let Some(gw) = weak.upgrade() else { return };
                        for h in gw.snapshot().servers.values() {
                            h.lists.invalidate(&[
                                ListKind::Tools,
                                ListKind::Prompts,
                                ListKind::Resources,
                                ListKind::ResourceTemplates,
                            ]);
                            for m in [
                                "notifications/tools/list_changed",
                                "notifications/prompts/list_changed",
                                "notifications/resources/list_changed",
                            ] {
                                let _ = gw.changes.send(notify::ServerChange {
                                    server: h.config.name.clone(),
                                    message: gatehouse_wire::Message::notification(m, None),
                                });
                            }
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                let Some(gw) = weak.upgrade() else { return };
                if let Some(h) = gw.snapshot().servers.get(&change.server) {
                    h.lists
                        .invalidate(ListKind::from_notification(change.message.method()));
                }
                // Nobody listening is fine.
                let _ = gw.changes.send(change);
            }
        });
    }

    fn spawn_reaper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            // Cheap (a few locks per server), and lets short idle timeouts take effect promptly.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(gw) = weak.upgrade() else { return };
                gw.parked.sweep();
                let ended = gw.sessions.sweep();
                if !ended.is_empty() {
                    // Closing upstream sessions may wait on members: not on this tick.
                    let gw = gw.clone();
                    tokio::spawn(async move {
                        frontdoor::session::release_ended(&gw, ended).await;
                    });
                }
                if let Some(a) = &gw.audit {
                    a.flush_coalesced();
                }
                let counts = gw.sessions.count_by_virtual_server();
                for vs in gw.snapshot().virtual_servers.values() {
                    let n = counts.get(&vs.path).copied().unwrap_or(0);
                    gw.telemetry.metrics().set_active_sessions(&vs.name, n);
                }
                for h in gw.snapshot().servers.values() {
                    if let backend::Backend::Stdio(s) = &h.backend {
                        s.reap_idle().await;
                    }
                }
            }
        });
    }

    /// Ends live sessions that another process (sharing the store) deleted, within about a
    /// second; the store is read on a task of its own so a slow database delays nothing else.
    fn spawn_revocation_follower(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(gw) = weak.upgrade() else { return };
                match gw.sessions.follow_revocations().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("session revocations are followed again");
                    }
                    Ok(()) => {}
                    // Logged once per outage, not every second.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot read session revocations from the store; sessions deleted through other processes stay open here until it answers");
                    }
                    Err(_) => {}
                }
            }
        });
    }
}
