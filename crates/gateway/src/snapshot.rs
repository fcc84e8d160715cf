//! The immutable runtime view of one configuration: virtual servers by path, each member bound
//! to a live backend. A new config builds a new Snapshot that reuses the backends of unchanged
//! servers, so a reload never restarts a process it does not have to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_config::{Config, MemberConfig, ServerConfig, VirtualServerConfig};

use gatehouse_identity::outbound::Vault;
use gatehouse_identity::{IdentityError, OutboundCredential, ResourceServer};

use crate::backend::http::{ResourceSubscriptions, Watched};
use crate::backend::{Backend, BackendError};
use crate::catalog::{ListCache, MergedCache};
use crate::notify::ChangeHub;

/// A backend plus what the gateway caches about it.
#[derive(Debug)]
pub struct ServerHandle {
    /// The server's entry in the config it was built from.
    pub config: ServerConfig,
    /// The live connection.
    pub backend: Backend,
    /// Cached item lists, invalidated by the server's `list_changed` notifications.
    pub lists: ListCache,
    /// Resources clients subscribed to through the gateway (for servers without
    /// `resources/subscribe`): the change feed listens for their updates.
    pub resources: ResourceSubscriptions,
    /// The credential sent upstream, if the server has `credentials`.
    pub credentials: Option<Arc<OutboundCredential>>,
    /// Host and port of a remote server (for telemetry), parsed once.
    pub endpoint: Option<(String, u16)>,
    /// What its credentials read from the secret store when it was built (digests): a
    /// changed stored secret rebuilds the server.
    stored_seen: Vec<(String, Option<[u8; 32]>)>,
    /// Stops the server's change feed when the handle goes away.
    _watch: Option<tokio_util::sync::DropGuard>,
}

/// What building a snapshot needs besides the config.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Where backends announce changes.
    pub hub: Arc<ChangeHub>,
    /// Encrypted storage of users' tokens (`user_oauth`); `None` without a store.
    pub vault: Option<Arc<Vault>>,
    /// The gateway's externally visible base URL (OAuth redirect URIs).
    pub public_base: String,
    /// Where policy decisions are recorded.
    pub decisions: Arc<dyn crate::authz::DecisionLog>,
    /// How stdio servers' stderr reaches the log (`gateway.stderr`, kept current by reloads).
    pub stderr: Arc<crate::backend::stderr::StderrPolicy>,
    /// The listener is on a loopback address (a start-only fact the Host check needs).
    pub loopback: bool,
    /// The process-wide body budget and metrics each snapshot's body bounds share.
    pub bodies: crate::frontdoor::body::BodyLimits,
    /// Where local servers run (sandbox or plain process).
    pub runtimes: Arc<gatehouse_runtime::Runtimes>,
    /// The `store:` secrets servers' credentials read, fetched before each build.
    pub stored: Arc<gatehouse_identity::outbound::StoredSecrets>,
}

impl Watched for ServerHandle {
    fn http(&self) -> Option<&crate::backend::http::HttpBackend> {
        match &self.backend {
            Backend::Http(b) => Some(b),
            _ => None,
        }
    }

    fn resources(&self) -> &ResourceSubscriptions {
        &self.resources
    }
}

/// One member of a virtual server.
#[derive(Debug)]
pub struct Member {
    /// The `include` entry.
    pub config: MemberConfig,
    /// The server it names.
    pub server: Arc<ServerHandle>,
    /// How the audit journal records this server's arguments.
    pub arguments: Arc<gatehouse_audit::ArgumentRecorder>,
}

/// A virtual MCP server: one endpoint aggregating its members.
#[derive(Debug)]
pub struct VirtualServer {
    /// Its name.
    pub name: String,
    /// Its URL path.
    pub path: String,
    /// Whether a member that is down fails list requests.
    pub fail_closed: bool,
    /// Members in `include` order (the first wins on a name clash).
    pub members: Vec<Member>,
    /// Merged, renamed tool/prompt views, rebuilt when a member's lists change.
    pub merged: MergedCache,
    /// Token validation when the endpoint has `auth` (kept across reloads while its settings
    /// do not change, so cached keys and tokens survive).
    pub auth: Option<Arc<ResourceServer>>,
    /// The policies deciding every use of an item; `None` when authorization is off.
    pub authz: Option<crate::authz::Authz>,
}

impl VirtualServer {
    /// True when `server` is one of the members.
    pub fn has_member(&self, server: &str) -> bool {
        self.members.iter().any(|m| m.server.config.name == server)
    }
}

/// Everything a request needs, fixed for the request's lifetime.
#[derive(Debug)]
pub struct Snapshot {
    /// Monotonic version, for logs.
    pub version: u64,
    /// The configuration it was compiled from.
    pub config: Arc<Config>,
    /// Backends by server name.
    pub servers: HashMap<String, Arc<ServerHandle>>,
    /// The active policy set; `None` when the config has no `policies` block.
    pub policies: Option<Arc<gatehouse_policy::Policies>>,
    /// Virtual servers by path.
    pub virtual_servers: HashMap<String, Arc<VirtualServer>>,
    /// Host and Origin checks with this config's `gateway.allowed_origins`.
    pub origin_policy: crate::frontdoor::guard::OriginPolicy,
    /// Bounds on request bodies with this config's `gateway.max_body_bytes` and
    /// `body_timeout`.
    pub bodies: crate::frontdoor::body::BodyLimits,
}

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

impl Snapshot {
    /// Compiles a validated config, reusing `previous`'s backends whose entries did not change.
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        ctx: &BuildContext,
        policies: Option<Arc<gatehouse_policy::Policies>>,
    ) -> Result<Snapshot, BuildError> {
        let authz = policies.as_ref().map(|p| crate::authz::Authz {
            policies: p.clone(),
            log: ctx.decisions.clone(),
        });
        let hub = &ctx.hub;
        let mut servers = HashMap::new();
        for sc in &config.servers {
            let reused = previous.and_then(|p| {
                p.servers.get(&sc.name).filter(|h| {
                    same_backend(&h.config, sc)
                        && same_timeout(p, &config, sc)
                        && h.stored_seen == ctx.stored.fingerprint(sc)
                })
            });
            let handle = match reused {
                Some(h) => h.clone(),
                None => {
                    let credentials = OutboundCredential::build(
                        sc,
                        gatehouse_identity::idp_client(),
                        ctx.vault.clone(),
                        &ctx.public_base,
                        &ctx.stored,
                    )
                    .map_err(|source| BuildError::Identity {
                        virtual_server: format!("(server {})", sc.name),
                        source,
                    })?
                    .map(Arc::new);
                    let backend = Backend::build(
                        sc,
                        config.call_timeout(sc),
                        hub.clone(),
                        credentials.clone(),
                        &ctx.stderr,
                        &ctx.runtimes,
                    )?;
                    let stop = tokio_util::sync::CancellationToken::new();
                    let remote = matches!(backend, Backend::Http(_));
                    let handle = Arc::new(ServerHandle {
                        config: sc.clone(),
                        backend,
                        lists: ListCache::default(),
                        resources: ResourceSubscriptions::default(),
                        credentials,
                        stored_seen: ctx.stored.fingerprint(sc),
                        _watch: remote.then(|| stop.clone().drop_guard()),
                        endpoint: sc.url.as_deref().and_then(|u| {
                            let u = url::Url::parse(u).ok()?;
                            Some((u.host_str()?.to_string(), u.port_or_known_default()?))
                        }),
                    });
                    if remote {
                        let weak: std::sync::Weak<dyn Watched> = Arc::downgrade(&handle) as _;
                        crate::backend::http::spawn_watch(weak, stop);
                    }
                    handle
                }
            };
            servers.insert(sc.name.clone(), handle);
        }
        let recorders: HashMap<&str, Arc<gatehouse_audit::ArgumentRecorder>> = config
            .servers
            .iter()
            .map(|sc| {
                let a = &config.audit;
                let recorder = gatehouse_audit::ArgumentRecorder::new(
                    sc.audit.arguments.unwrap_or(a.arguments),
                    a.max_argument_bytes,
                    &a.secret_keys,
                    &sc.audit.redact,
                );
                (sc.name.as_str(), Arc::new(recorder))
            })
            .collect();
        let mut virtual_servers = HashMap::new();
        for vs in &config.virtual_servers {
            let auth = resource_server(&config, vs, previous)?;
            let members = vs
                .include
                .iter()
                .filter_map(|m| {
                    servers.get(&m.server).map(|s| Member {
                        config: m.clone(),
                        server: s.clone(),
                        arguments: recorders[m.server.as_str()].clone(),
                    })
                })
                .collect();
            virtual_servers.insert(
                vs.path.clone(),
                Arc::new(VirtualServer {
                    name: vs.name.clone(),
                    path: vs.path.clone(),
                    fail_closed: vs.fail_closed,
                    members,
                    merged: MergedCache::default(),
                    auth,
                    authz: authz.clone(),
                }),
            );
        }
        let origin_policy = crate::frontdoor::guard::OriginPolicy {
            loopback: ctx.loopback,
            allowed_origins: config.gateway.allowed_origins.clone(),
        };
        let bodies = ctx.bodies.with_config(&config.gateway);
        Ok(Snapshot {
            version: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
            config: Arc::new(config),
            servers,
            policies,
            virtual_servers,
            origin_policy,
            bodies,
        })
    }

    /// Backends of `self` that `next` does not reuse (to shut down once `self` is retired).
    pub fn retired_by(&self, next: &Snapshot) -> Vec<Arc<ServerHandle>> {
        self.servers
            .iter()
            .filter(|(name, h)| next.servers.get(*name).is_none_or(|n| !Arc::ptr_eq(n, h)))
            .map(|(_, h)| h.clone())
            .collect()
    }
}

/// Why a configuration could not be compiled into a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A backend could not be set up.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A virtual server's `auth` or a server's `credentials` could not be set up.
    #[error("{virtual_server}: {source}")]
    Identity {
        /// Which part of the config (virtual server or server).
        virtual_server: String,
        /// What failed.
        source: IdentityError,
    },
    /// The reloaded `telemetry` pipeline could not be built (the running one stays).
    #[error("telemetry: {0}")]
    Telemetry(#[from] gatehouse_telemetry::TelemetryError),
}

/// The token validation of `vs`: `previous`'s when its `auth` and its members' scopes did not
/// change (cached keys and tokens survive a reload), else a new one whose keys start loading.
fn resource_server(
    config: &Config,
    vs: &VirtualServerConfig,
    previous: Option<&Snapshot>,
) -> Result<Option<Arc<ResourceServer>>, BuildError> {
    let Some(auth) = &vs.auth else {
        return Ok(None);
    };
    let scopes = tool_scopes(config, vs);
    let reused = previous.and_then(|p| {
        let before = p
            .config
            .virtual_servers
            .iter()
            .find(|v| v.path == vs.path)?;
        let same = before.auth.as_ref() == Some(auth) && tool_scopes(&p.config, before) == scopes;
        same.then(|| p.virtual_servers.get(&vs.path)?.auth.clone())?
    });
    if let Some(rs) = reused {
        return Ok(Some(rs));
    }
    let rs = ResourceServer::build(&vs.name, auth, scopes, gatehouse_identity::idp_client())
        .map_err(|source| BuildError::Identity {
            virtual_server: format!("virtual server {}", vs.name),
            source,
        })?;
    let rs = Arc::new(rs);
    let warm = rs.clone();
    tokio::spawn(async move { warm.warm_up().await });
    Ok(Some(rs))
}

/// Every per-tool scope of the members of `vs` (advertised in its metadata).
fn tool_scopes(config: &Config, vs: &VirtualServerConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in &vs.include {
        for scopes in config
            .server(&m.server)
            .iter()
            .flat_map(|s| s.scopes.values())
        {
            for s in scopes {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
    }
    out
}

/// Whether a server's backend can carry over: every setting but how its arguments are
/// audited (which lives in the snapshot's members) is the same.
fn same_backend(before: &ServerConfig, after: &ServerConfig) -> bool {
    if before.audit == after.audit {
        return before == after;
    }
    let mut b = before.clone();
    b.audit = after.audit.clone();
    b == *after
}

fn same_timeout(prev: &Snapshot, next: &Config, sc: &ServerConfig) -> bool {
    prev.config.call_timeout(sc) == next.call_timeout(sc)
}
