//! The gateway's HTTP listeners: an accept loop serving HTTP/1.1 and HTTP/2 (h2c with prior
//! knowledge on plain listeners, ALPN `h2`/`http/1.1` with TLS) under bounds on what clients
//! can hold — a header timeout, an idle keep-alive timeout, caps on connections overall and
//! per source address, and a reserve of file descriptors that connections never take.
//!
//! Each request reaches the router with the peer address as axum's
//! `ConnectInfo<SocketAddr>` extension, as `into_make_service_with_connect_info` gives it.

mod activity;
pub mod admission;
mod connection;
mod descriptors;
mod framing;
mod refusal;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_config::ConnectionLimits;
use gatehouse_telemetry::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use activity::DeclaredBody;
use admission::Admission;
pub use admission::{EffectiveCap, Refusal};
use connection::Shared;

/// Longest pause of the accept loop when the process is out of file descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Least time between two warnings of the same kind from one listener.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why a listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The open-file limit leaves nothing for connections.
    #[error(
        "the open-file limit ({soft_limit}) leaves no descriptors for connections after gateway.connections.fd_reserve ({reserve}) and the {open} already open: raise it (ulimit -n, LimitNOFILE=) or lower fd_reserve"
    )]
    NoDescriptors {
        /// RLIMIT_NOFILE's soft limit.
        soft_limit: u64,
        /// Descriptors kept free.
        reserve: u64,
        /// Descriptors open when the listener started.
        open: u64,
    },
    /// The bound socket cannot be inspected.
    #[error("cannot read the listener's address: {0}")]
    Io(#[from] std::io::Error),
}

/// Settings of one listener: a config struct, then [`ListenerConfig::build`].
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Names the listener in metrics and logs (`gateway`, `admin`).
    pub name: &'static str,
    /// Caps and timeouts (`gateway.connections`).
    pub limits: ConnectionLimits,
    /// Descriptors the overall cap leaves free under the open-file limit; `None` to not
    /// derive the cap from the limit (a small listener whose connections the caller already
    /// reserved).
    pub fd_reserve: Option<u32>,
    /// Serve TLS with this configuration (see [`tls::server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ListenerConfig {
    /// The listener for `listener`, serving `router`. Call it last before serving: the
    /// descriptors open now count against the open-file limit.
    pub fn build(
        self,
        listener: TcpListener,
        router: axum::Router,
        metrics: Arc<Metrics>,
    ) -> Result<Listener, ListenError> {
        let local = listener.local_addr()?;
        let cap = match self.fd_reserve {
            None => {
                EffectiveCap::compute(self.limits.max, u64::MAX, 0, 0).unwrap_or(EffectiveCap {
                    connections: 0,
                    bound: Refusal::Max,
                })
            }
            Some(reserve) => {
                let soft_limit = descriptors::soft_limit();
                let open = descriptors::open_now();
                let reserve = u64::from(reserve);
                let cap = EffectiveCap::compute(self.limits.max, soft_limit, reserve, open).ok_or(
                    ListenError::NoDescriptors {
                        soft_limit,
                        reserve,
                        open,
                    },
                )?;
                if cap.bound == Refusal::FdReserve {
                    tracing::warn!(
                        listener = self.name,
                        cap = cap.connections,
                        max = self.limits.max,
                        soft_limit,
                        open,
                        reserve,
                        "the open-file limit caps connections below gateway.connections.max; raise it (ulimit -n, LimitNOFILE=) to allow more"
                    );
                } else {
                    tracing::info!(
                        listener = self.name,
                        cap = cap.connections,
                        soft_limit,
                        open,
                        reserve,
                        "connection cap"
                    );
                }
                cap
            }
        };
        let admission = Admission::new(self.name, cap, self.limits.max_per_ip, metrics.clone());
        let shared = Arc::new(Shared {
            name: self.name,
            router,
            builder: Shared::builder(),
            tls: self.tls.map(tokio_rustls::TlsAcceptor::from),
            header_timeout: self.limits.header_timeout.get(),
            idle_timeout: self.limits.idle_timeout.get(),
            metrics,
            stop: CancellationToken::new(),
        });
        Ok(Listener {
            listener,
            local,
            admission,
            shared,
        })
    }
}

/// A bound listener ready to serve.
pub struct Listener {
    listener: TcpListener,
    local: SocketAddr,
    admission: Arc<Admission>,
    shared: Arc<Shared>,
}

impl Listener {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The overall connection cap in force.
    pub fn cap(&self) -> EffectiveCap {
        self.admission.cap()
    }

    /// Accepts and serves connections until `shutdown` resolves; then stops accepting, lets
    /// every connection finish its requests (idle ones close at once) and returns when the
    /// last one closed. Bound the wait from outside (`gateway.shutdown_grace`).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Listener {
            listener,
            admission,
            shared,
            ..
        } = self;
        let connections = TaskTracker::new();
        let mut backoff = Duration::from_millis(10);
        let mut refusals = Throttle::default();
        let mut exhausted = Throttle::default();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = &mut shutdown => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) if descriptors::exhausted(&e) => {
                    shared
                        .metrics
                        .limits()
                        .accept_error(shared.name, "fd_exhausted");
                    if exhausted.due() {
                        tracing::warn!(listener = shared.name, error = %e, "out of file descriptors: pausing accepts (connections wait in the backlog)");
                    }
                    // Accepting again at once would spin: the backlog still holds the
                    // connection that could not get a descriptor.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
                Err(e) => {
                    // Errors of one connection (reset, aborted) leave the listener fine.
                    shared.metrics.limits().accept_error(shared.name, "other");
                    tracing::debug!(listener = shared.name, error = %e, "accept failed");
                    continue;
                }
            };
            backoff = Duration::from_millis(10);
            match admission.admit(peer.ip()) {
                Ok(permit) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection::serve(shared.clone(), tcp, peer, permit));
                }
                Err(reason) => {
                    let message = refusal::message(&admission, reason, peer.ip());
                    if refusals.due() {
                        tracing::warn!(
                            listener = shared.name,
                            reason = reason.label(),
                            "refusing connections: {message}"
                        );
                    }
                    refusal::refuse(tcp, shared.tls.is_none(), &message);
                }
            }
        }
        drop(listener);
        shared.stop.cancel();
        connections.close();
        connections.wait().await;
    }
}

/// Lets one warning through every [`WARN_EVERY`], so an attack does not flood the log (the
/// metrics count every case).
#[derive(Debug, Default)]
struct Throttle(Option<Instant>);

impl Throttle {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.0.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return false;
        }
        self.0 = Some(now);
        true
    }
}
