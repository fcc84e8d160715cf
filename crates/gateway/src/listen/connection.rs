//! Serving one admitted connection: the TLS handshake (if any), HTTP/1.1 or HTTP/2 by
//! hyper's auto builder, and a watchdog that closes the connection when its first request
//! (or the head of the next one) is too slow, or when it sits idle too long.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::activity::{Activity, Expiry, GuardedBody, Watched};
use super::admission::Permit;

/// How long an idle connection told to close gets to finish (an HTTP/2 GOAWAY exchange).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every connection of one listener shares.
pub(crate) struct Shared {
    pub(crate) name: &'static str,
    pub(crate) router: axum::Router,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) metrics: Arc<gatehouse_telemetry::Metrics>,
    pub(crate) stop: CancellationToken,
}

impl Shared {
    /// The HTTP/1.1 + HTTP/2 builder: the header and idle timers are the watchdog's, so
    /// hyper's own HTTP/1 header timer (which would also cut idle keep-alive connections at
    /// the header timeout) is off.
    pub(crate) fn builder() -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().header_read_timeout(None);
        builder
    }
}

/// Serves `tcp` from `peer` until it closes, times out or the listener stops.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, permit: Permit) {
    let activity = Activity::new(shared.header_timeout, shared.idle_timeout);
    match &shared.tls {
        None => drive(&shared, tcp, peer, activity).await,
        Some(acceptor) => {
            // The handshake is part of the time a new connection has to send its request.
            match tokio::time::timeout(shared.header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => drive(&shared, tls, peer, activity).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => closed(&shared, Expiry::HeaderTimeout),
            }
        }
    }
    drop(permit);
}

fn closed(shared: &Shared, why: Expiry) {
    shared
        .metrics
        .limits()
        .connection_closed(shared.name, why.label());
}

async fn drive<I>(shared: &Arc<Shared>, io: I, peer: SocketAddr, activity: Arc<Activity>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched::new(io, activity.clone()));
    let service = ConnService {
        router: shared.router.clone(),
        peer,
        activity: activity.clone(),
    };
    let conn = shared.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            why = activity.expired() => {
                closed(shared, why);
                if why == Expiry::IdleTimeout {
                    // Nothing is in flight: a graceful close tells an HTTP/2 client (GOAWAY)
                    // not to start another stream here. A request that raced the close is
                    // served to its end.
                    conn.as_mut().graceful_shutdown();
                    while tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await.is_err()
                        && activity.busy()
                    {}
                }
                return;
            }
            _ = shared.stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The router behind one connection: each request carries the peer address (as axum's
/// `ConnectInfo`) and keeps the connection busy until its response body is done.
#[derive(Clone)]
struct ConnService {
    router: axum::Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnService {
    type Response = http::Response<GuardedBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        let guard = self.activity.begin(req.version());
        req.extensions_mut().insert(ConnectInfo(self.peer));
        if req.version() <= http::Version::HTTP_11 {
            req.extensions_mut().insert(guard.declared_body());
        }
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req).await?;
            Ok(response.map(|inner| GuardedBody {
                inner,
                _guard: guard,
            }))
        })
    }
}
