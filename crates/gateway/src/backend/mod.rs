//! Backends: how the gateway talks to one MCP server, in the era that server speaks.
//!
//! A backend turns "call `method` with `params` on behalf of this client" into wire traffic:
//! stdio child processes ([`stdio`]), remote Streamable HTTP servers ([`http`]). Everything a
//! server sends while a call is in flight (progress, logs, server→client requests) comes back
//! as [`CallEvent`]s on the channel the caller passed in.

pub mod adapt;
pub mod http;
pub mod peer;
mod restarts;
pub mod sse;
pub mod stderr;
pub mod stdio;

use std::sync::Arc;
use std::time::Duration;

use gatehouse_config::{ProtocolSetting, ServerConfig, ServerKind, Transport};
use gatehouse_wire::{Era, ErrorObject, Message, ProtocolVersion, codes};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::methods::Decided;
use crate::notify::ChangeHub;

/// How long a server→client request (elicitation may wait for a person) may go unanswered.
pub const CLIENT_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Messages queued for a server that reads its input over a pipe or endpoint before calls fail.
pub const OUTGOING_QUEUE: usize = 1024;

/// Largest single message accepted from a backend (a stdio line, an HTTP body, an SSE event).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Something a server sent while one of our calls to it was in flight.
#[derive(Debug)]
pub enum CallEvent {
    /// A notification related to the call (progress, log message).
    Notification(Message),
    /// A server→client request (elicitation, sampling, roots) that needs the client's answer.
    /// The answer (a result or error message; its id is ignored) goes into `reply`.
    ServerRequest {
        /// The request as the server sent it (id is the server's own).
        request: Message,
        /// Where the client's answer goes.
        reply: oneshot::Sender<Message>,
    },
}

/// Who is calling and with what abilities: what a backend needs to speak for the client.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// The client's declared capabilities (as in `initialize` or `_meta`).
    pub capabilities: Arc<Value>,
    /// The client's self-reported name/version.
    pub client_info: Arc<Value>,
    /// The upstream session this client holds with an HTTP backend, if any.
    pub upstream_session: Option<UpstreamSession>,
    /// Extra headers for a stateless backend (`Mcp-Param-*` of the call).
    pub extra_headers: Vec<(String, String)>,
    /// The log level a handshake-era client set with `logging/setLevel`, sent to stateless
    /// backends as the per-request `_meta` log level.
    pub log_level: Option<String>,
    /// Who is calling: selects per-user processes and outbound credentials.
    pub caller: gatehouse_identity::Caller,
}

/// A handshake-era session a client holds at an HTTP backend (opened when it initialized).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpstreamSession {
    /// The backend's `Mcp-Session-Id`.
    pub id: String,
    /// The version negotiated with the backend.
    pub version: String,
}

/// Why a call to a backend failed before the server answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The server could not be reached or started.
    #[error("server {server:?} is unavailable: {reason}")]
    Unavailable {
        /// Server name.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The server went away while the call was in flight.
    #[error("server {server:?} failed during the call: {reason}")]
    Failed {
        /// Server name.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The server did not answer in time.
    #[error("server {server:?} did not answer within {timeout:?}")]
    Timeout {
        /// Server name.
        server: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The server answered with something that is not MCP.
    #[error("server {server:?} sent an invalid response: {reason}")]
    Protocol {
        /// Server name.
        server: String,
        /// What was wrong.
        reason: String,
    },
    /// The server answered with an HTTP error status and no JSON-RPC message.
    #[error("server {server:?} answered HTTP {status}: {body}")]
    HttpStatus {
        /// Server name.
        server: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The upstream session this client held is gone (the backend answered 404).
    #[error("server {server:?} no longer knows this session")]
    SessionExpired {
        /// Server name.
        server: String,
    },
    /// No credential could be obtained for the call; nothing was sent upstream (the caller's
    /// own token is never a fallback).
    #[error("{0}")]
    Credential(gatehouse_identity::CredentialError),
}

/// JSON-RPC code of URL-mode elicitation required (2025-11-25): the user must open a URL
/// (here: to authorize Gatehouse at a server's authorization server), then retry.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

impl BackendError {
    /// True when the user must first authorize Gatehouse at the server (`user_oauth`).
    pub fn is_authorization_required(&self) -> bool {
        matches!(
            self,
            BackendError::Credential(
                gatehouse_identity::CredentialError::AuthorizationRequired { .. }
            )
        )
    }

    /// The server the error is about.
    pub fn server(&self) -> Option<&str> {
        match self {
            BackendError::Unavailable { server, .. }
            | BackendError::Failed { server, .. }
            | BackendError::Timeout { server, .. }
            | BackendError::Protocol { server, .. }
            | BackendError::HttpStatus { server, .. }
            | BackendError::SessionExpired { server } => Some(server),
            BackendError::Credential(_) => None,
        }
    }

    /// The JSON-RPC error a client receives: a stable message naming the server and what
    /// kind of failure it was, with the request id; never the upstream URL, status text or
    /// body (they go to the log under the same request id).
    pub fn to_client_error(&self, request_id: Option<&str>) -> ErrorObject {
        if let BackendError::Credential(
            gatehouse_identity::CredentialError::AuthorizationRequired { server, url },
        ) = self
        {
            let message = format!(
                "Authorization required: open the link to let Gatehouse act for you at {server}, then retry"
            );
            return ErrorObject::with_data(
                URL_ELICITATION_REQUIRED,
                message.clone(),
                serde_json::json!({"elicitations": [{
                    "mode": "url",
                    "elicitationId": format!("gatehouse-authorize-{server}"),
                    "url": url,
                    "message": message,
                }]}),
            );
        }
        use gatehouse_identity::CredentialError as C;
        let server = match self {
            BackendError::Credential(
                C::Unavailable { server, .. } | C::Refused { server, .. } | C::NoUser { server },
            ) => server.as_str(),
            _ => self.server().unwrap_or("the server"),
        };
        let (code, what) = match self {
            BackendError::Timeout { timeout, .. } => (
                codes::REQUEST_TIMEOUT,
                format!("server {server:?} did not answer within {timeout:?}"),
            ),
            BackendError::Protocol { .. } => (
                codes::INTERNAL_ERROR,
                format!("server {server:?} sent an invalid response"),
            ),
            BackendError::Failed { .. } => (
                codes::BACKEND_UNAVAILABLE,
                format!("server {server:?} failed during the call"),
            ),
            BackendError::SessionExpired { .. } => (
                codes::BACKEND_UNAVAILABLE,
                format!("server {server:?} no longer knows this session"),
            ),
            BackendError::Credential(C::Unavailable { .. }) => (
                codes::BACKEND_UNAVAILABLE,
                format!("the token endpoint of server {server:?} is unreachable"),
            ),
            // The OAuth error code is a stable code; the server's description stays in the log.
            BackendError::Credential(C::Refused { error, .. }) => (
                codes::BACKEND_UNAVAILABLE,
                format!(
                    "the authorization server refused a credential for server {server:?}: {}",
                    crate::observe::shown(error)
                ),
            ),
            BackendError::Credential(C::NoUser { .. }) => (
                codes::BACKEND_UNAVAILABLE,
                format!(
                    "server {server:?} acts for the calling user, but the caller is not authenticated"
                ),
            ),
            BackendError::Credential(_) => (
                codes::BACKEND_UNAVAILABLE,
                "no credential could be obtained: the credential vault is unavailable".to_string(),
            ),
            _ => (
                codes::BACKEND_UNAVAILABLE,
                format!("server {server:?} is unavailable"),
            ),
        };
        unavailable_error_with(code, server, &what, request_id)
    }
}

fn unavailable_error_with(
    code: i64,
    server: &str,
    message: &str,
    request_id: Option<&str>,
) -> ErrorObject {
    let mut data = serde_json::json!({ "server": server });
    let message = match request_id {
        Some(id) => {
            data["requestId"] = serde_json::Value::from(id);
            format!("{message} (request id {id}; details in the gateway log)")
        }
        None => message.to_string(),
    };
    ErrorObject::with_data(code, message, data)
}

/// The outbound credential of one call, obtained by [`Backend::credential`].
#[derive(Debug, Clone)]
pub struct Outbound(http::Auth);

/// What a backend reports about itself after the first contact.
#[derive(Debug, Clone)]
pub struct BackendInfo {
    /// The protocol version spoken with the server.
    pub version: ProtocolVersion,
    /// The server's capabilities.
    pub capabilities: Value,
    /// The server's name/version.
    pub server_info: Value,
    /// The server's instructions, if any.
    pub instructions: Option<String>,
}

impl BackendInfo {
    /// What an `initialize` or `server/discover` result says about the server. The result's own
    /// `protocolVersion` (initialize) wins over `version` (the version the request was made in).
    pub fn from_result(version: ProtocolVersion, v: &Value) -> BackendInfo {
        BackendInfo {
            version: v
                .get("protocolVersion")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(version),
            capabilities: v
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({})),
            server_info: v.get("serverInfo").cloned().unwrap_or(Value::Null),
            instructions: v
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// The era of the negotiated version.
    pub fn era(&self) -> Era {
        self.version.era()
    }
}

/// A live connection to one configured server.
#[derive(Debug)]
// One per configured server, held behind an Arc: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    /// A local stdio child process (one per user).
    Stdio(stdio::StdioBackend),
    /// A remote Streamable HTTP server.
    Http(http::HttpBackend),
    /// A remote server on the legacy HTTP+SSE transport.
    Sse(sse::SseBackend),
}

impl Backend {
    /// Builds the backend for a server entry. Nothing is contacted until the first call.
    pub fn build(
        config: &ServerConfig,
        timeout: Duration,
        hub: Arc<ChangeHub>,
        credentials: Option<Arc<gatehouse_identity::OutboundCredential>>,
        stderr: &Arc<stderr::StderrPolicy>,
        runtimes: &Arc<gatehouse_runtime::Runtimes>,
    ) -> Result<Backend, BackendError> {
        // A local server speaking HTTP in its container is an HTTP backend the gateway runs.
        if let (ServerKind::Stdio { .. }, Some(http)) = (
            config.kind(),
            config.isolation.as_ref().and_then(|i| i.http.as_ref()),
        ) {
            return Ok(Backend::Http(http::HttpBackend::local(
                config,
                http,
                timeout,
                hub,
                credentials,
                stderr.clone(),
                runtimes.clone(),
            )?));
        }
        match config.kind() {
            ServerKind::Stdio { .. } => Ok(Backend::Stdio(stdio::StdioBackend::new(
                config.clone(),
                timeout,
                hub,
                credentials,
                stderr.clone(),
                runtimes.clone(),
            ))),
            ServerKind::Remote {
                transport: Transport::Sse,
                ..
            } => Ok(Backend::Sse(sse::SseBackend::new(
                config,
                timeout,
                hub,
                credentials,
            )?)),
            ServerKind::Remote { .. } => Ok(Backend::Http(http::HttpBackend::new(
                config,
                timeout,
                hub,
                credentials,
            )?)),
        }
    }

    /// The server's configured name.
    pub fn name(&self) -> &str {
        match self {
            Backend::Stdio(b) => b.name(),
            Backend::Http(b) => b.name(),
            Backend::Sse(b) => b.name(),
        }
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        match self {
            Backend::Stdio(b) => b.timeout(),
            Backend::Http(b) => b.timeout(),
            Backend::Sse(b) => b.timeout(),
        }
    }

    /// Sends the request `decided` names, with `params` (already in client-neutral form: the
    /// backend adds or strips era-specific `_meta` itself). Dropping the future cancels the
    /// call at the server. Only [`crate::upstream`] and the catalog call this (test:
    /// `only_the_table_creates_decisions`).
    pub async fn call(
        &self,
        decided: &Decided,
        outbound: Outbound,
        params: Option<Value>,
        client: &ClientContext,
        events: Option<mpsc::Sender<CallEvent>>,
    ) -> Result<Message, BackendError> {
        let method = decided.method();
        let fut = async {
            match self {
                Backend::Stdio(b) => b.call(method, params, client, events).await,
                Backend::Http(b) => b.call(method, params, client, events, outbound.0).await,
                Backend::Sse(b) => b.call(method, params, client, events).await,
            }
        };
        match tokio::time::timeout(self.timeout(), fut).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout {
                server: self.name().to_string(),
                timeout: self.timeout(),
            }),
        }
    }

    /// The outbound credential for one call made for `client`'s caller: the step of the
    /// request path between authorization and sending (never the caller's own token). Remote
    /// Streamable HTTP servers get a header per request; a stdio server's credential is in its
    /// environment and a legacy HTTP+SSE server's is its connection's, so theirs is empty.
    pub async fn credential(&self, client: &ClientContext) -> Result<Outbound, BackendError> {
        match self {
            Backend::Http(b) => b.authorize(client).await.map(Outbound),
            Backend::Stdio(_) | Backend::Sse(_) => Ok(Outbound(None)),
        }
    }

    /// Sends the notification `decided` names (e.g. roots changes).
    pub async fn notify(
        &self,
        decided: &Decided,
        params: Option<Value>,
        client: &ClientContext,
    ) -> Result<(), BackendError> {
        let method = decided.method();
        match self {
            Backend::Stdio(b) => b.notify(method, params, client).await,
            Backend::Http(b) => b.notify(method, params, client).await,
            Backend::Sse(b) => b.notify(method, params).await,
        }
    }

    /// What the server said about itself, contacting it first if needed.
    pub async fn info(&self, client: &ClientContext) -> Result<Arc<BackendInfo>, BackendError> {
        match self {
            Backend::Stdio(b) => b.info(client).await,
            Backend::Http(b) => b.info(client).await,
            Backend::Sse(b) => b.info().await,
        }
    }

    /// Opens a handshake-era session for one handshake-era client at an HTTP backend that
    /// speaks that era (also a dual-era one: the client then keeps its own era end to end).
    /// Stdio and stateless-only backends return `None`.
    pub async fn open_session(
        &self,
        decided: &Decided,
        client: &ClientContext,
    ) -> Option<UpstreamSession> {
        debug_assert_eq!(decided.method(), "initialize");
        match self {
            Backend::Stdio(_) | Backend::Sse(_) => None,
            Backend::Http(b) => b.open_session(client).await,
        }
    }

    /// Ends an upstream session opened by [`Backend::open_session`].
    pub async fn close_session(&self, session: &UpstreamSession) {
        if let Backend::Http(b) = self {
            b.close_session(session).await;
        }
    }

    /// Stops child processes and closes sessions.
    pub async fn shutdown(&self) {
        match self {
            Backend::Stdio(b) => b.shutdown().await,
            Backend::Http(b) => b.shutdown().await,
            Backend::Sse(b) => b.shutdown().await,
        }
    }
}

/// The versions worth trying for a `protocol:` setting, best first.
pub(crate) fn handshake_version(setting: ProtocolSetting) -> ProtocolVersion {
    match setting {
        ProtocolSetting::V2025_06_18 => ProtocolVersion::V2025_06_18,
        ProtocolSetting::V2025_03_26 => ProtocolVersion::V2025_03_26,
        ProtocolSetting::V2024_11_05 => ProtocolVersion::V2024_11_05,
        _ => ProtocolVersion::LATEST_HANDSHAKE,
    }
}
