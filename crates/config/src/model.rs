//! The typed configuration model.
//!
//! Every struct denies unknown fields so that typos are errors rather than
//! silently ignored settings. Servers are one flat struct (not an enum with
//! `#[serde(flatten)]`, which would disable `deny_unknown_fields`); the
//! remote/stdio split is enforced by validation and exposed via
//! [`ServerConfig::kind`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditConfig, ServerAudit};
use crate::auth::{AuthConfig, CredentialsConfig, ListenerTls, ToolScopes};
use crate::duration::DurationSpec;
use crate::isolation::IsolationConfig;
use crate::limits::{ConnectionLimits, SessionLimits, StderrLimits};
use crate::policy::{PoliciesConfig, ToolOperations};
use crate::telemetry::{AdminConfig, TelemetryConfig};

/// Pattern for server and virtual server names.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// The complete Gatehouse configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Configuration format version. Only `1` exists; leaving it out means `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Settings of the gateway's own HTTP listener.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Upstream MCP servers the gateway can connect to; a virtual server exposes them by
    /// naming them in its `include`.
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    /// MCP endpoints exposed by the gateway, each combining the tools, prompts and resources
    /// of one or more upstream servers.
    #[serde(default)]
    pub virtual_servers: Vec<VirtualServerConfig>,
    /// Where Gatehouse persists state (default: SQLite in the data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreConfig>,
    /// Authorization of every tool call, resource read and prompt by declarative policy.
    /// Without it authorization is off (a startup warning says so); with it the default is
    /// deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<PoliciesConfig>,
    /// OpenTelemetry export (traces and metrics over OTLP, MCP semantic conventions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryConfig>,
    /// The admin listener serving Prometheus `/metrics` and `/healthz`. Without it there
    /// is no admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// The tamper-evident audit journal (on by default).
    #[serde(default, skip_serializing_if = "AuditConfig::is_default")]
    pub audit: AuditConfig,
}

/// The database Gatehouse persists state in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB` (use `${ENV}` for a password; the CLI's
    /// `--database-url` overrides it).
    pub url: String,
}

impl Config {
    /// The upstream server called `name`.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The virtual server called `name`.
    pub fn virtual_server(&self, name: &str) -> Option<&VirtualServerConfig> {
        self.virtual_servers.iter().find(|v| v.name == name)
    }

    /// The timeout for one call to `server`: its own `timeout`, else
    /// `gateway.request_timeout`.
    pub fn call_timeout(&self, server: &ServerConfig) -> Duration {
        server.timeout.unwrap_or(self.gateway.request_timeout).get()
    }
}

/// Settings of the gateway's own HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Socket address to listen on, e.g. `127.0.0.1:8080` (the CLI's
    /// `--listen` overrides it).
    pub listen: String,
    /// Largest accepted request body, in bytes (default 4 MiB). A larger body gets `413`;
    /// one whose declared length is larger is refused before any of it is read.
    pub max_body_bytes: u64,
    /// How long one call to an upstream server may take, unless the server sets its own
    /// `timeout`.
    pub request_timeout: DurationSpec,
    /// On shutdown (SIGINT/SIGTERM), how long in-flight requests may take to finish before
    /// the remaining connections are closed.
    pub shutdown_grace: DurationSpec,
    /// Extra browser origins allowed to call the gateway (exact match, e.g.
    /// `https://app.example.com`). Loopback origins are always allowed for
    /// loopback listeners.
    pub allowed_origins: Vec<String>,
    /// How long a handshake-era session lasts after it opened, however active it is
    /// (`sessions.idle_timeout` ends an idle one sooner). Its sealed `Mcp-Session-Id` is
    /// refused afterwards.
    pub session_ttl: DurationSpec,
    /// Serve HTTPS with this certificate (recommended for any non-loopback listener).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// The URL clients reach the gateway at (behind a proxy or load balancer), e.g.
    /// `https://mcp.example.com`; default: derived from `listen`. Used for OAuth redirect URIs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// How long a client may take to send a request body once its headers arrived
    /// (default 30s); slower bodies get `408`.
    pub body_timeout: DurationSpec,
    /// Most bytes of request bodies being read at once, over all connections (default
    /// 256 MiB); a request that would exceed it gets `503` with `Retry-After`.
    pub max_body_bytes_in_flight: u64,
    /// Most bytes queued for one legacy HTTP+SSE stream whose client does not read
    /// (default 16 MiB); past it the stream ends with an error event and its calls stop.
    pub sse_queue_bytes: u64,
    /// Bounds on client connections.
    #[serde(skip_serializing_if = "is_default")]
    pub connections: ConnectionLimits,
    /// Bounds on handshake-era sessions.
    #[serde(skip_serializing_if = "is_default")]
    pub sessions: SessionLimits,
    /// Bounds on what stdio servers write to stderr.
    #[serde(skip_serializing_if = "is_default")]
    pub stderr: StderrLimits,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl GatewayConfig {
    /// Default listen address.
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8080";
    /// Default request body limit (4 MiB).
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

    /// `listen` parsed as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: Self::DEFAULT_LISTEN.to_string(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            request_timeout: DurationSpec::from_secs(60),
            shutdown_grace: DurationSpec::from_secs(10),
            allowed_origins: Vec::new(),
            session_ttl: DurationSpec::from_secs(24 * 60 * 60),
            tls: None,
            public_url: None,
            body_timeout: DurationSpec::from_secs(30),
            max_body_bytes_in_flight: 256 * 1024 * 1024,
            sse_queue_bytes: 16 * 1024 * 1024,
            connections: ConnectionLimits::default(),
            sessions: SessionLimits::default(),
            stderr: StderrLimits::default(),
        }
    }
}

/// One upstream MCP server: remote (`url`) or a local process (`command`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Unique name, 1-64 characters of `A-Z a-z 0-9 _ -`.
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Remote server endpoint (`http://` or `https://`), e.g. `https://mcp.example.com/mcp`.
    /// Exactly one of `url` and `command` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Remote only: HTTP transport (default `streamable_http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// MCP protocol version to speak upstream (default `auto`: negotiate the newest version
    /// both sides support).
    #[serde(default, skip_serializing_if = "ProtocolSetting::is_auto")]
    pub protocol: ProtocolSetting,
    /// Remote only: static headers sent with every upstream request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Remote only: TLS settings (paths relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Per-call timeout for this server (overrides
    /// `gateway.request_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Local process to start and talk to over stdio (looked up on `PATH`), started when
    /// first needed and restarted, with backoff, after it exits. Exactly one of `url` and
    /// `command` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Stdio only: arguments of `command`, passed as they are (no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Stdio only: extra environment variables for the process. In the sandbox they join
    /// `PATH`, `HOME`, `TMPDIR` and `LANG` as its whole environment; with `runtime: process`
    /// they are added to the gateway's own environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Stdio only: working directory (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Stdio only: stop the process after it has been idle this long
    /// (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<DurationSpec>,
    /// Stdio only: where the process runs and what it may touch. Absent: the sandbox with the
    /// minimal profile on Linux (no network, a read-only view of what the command needs,
    /// resource limits); required elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationConfig>,
    /// Scopes a caller needs per tool (by the server's own tool names), e.g.
    /// `{ update_issue: [jira:write] }`. A caller lacking them gets `403 insufficient_scope`.
    #[serde(default, skip_serializing_if = "ToolScopes::is_empty")]
    pub scopes: ToolScopes,
    /// The credential Gatehouse sends upstream on the caller's behalf (never the caller's own
    /// token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsConfig>,
    /// What each tool does, for policies (`resource.operation`), keyed by the server's own
    /// tool names, e.g. `{ search: read, update_issue: write }`. Tools not listed are
    /// derived from their annotations when `trust_annotations` is set, else `write`.
    #[serde(default, skip_serializing_if = "ToolOperations::is_empty")]
    pub operations: ToolOperations,
    /// Believe the server's tool annotations (`readOnlyHint` → read, `destructiveHint` →
    /// delete) when classifying operations and show them to policies. Off by default:
    /// annotations are the server's claims about itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_annotations: bool,
    /// How the audit journal records this server's arguments.
    #[serde(default, skip_serializing_if = "ServerAudit::is_default")]
    pub audit: ServerAudit,
}

static EMPTY_MAP: BTreeMap<String, String> = BTreeMap::new();

impl ServerConfig {
    /// Default for [`ServerConfig::idle_timeout`].
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

    /// The server's connection details. A validated config has exactly one
    /// of `url` and `command`; `url` wins if both are somehow set.
    pub fn kind(&self) -> ServerKind<'_> {
        match &self.url {
            Some(url) => ServerKind::Remote {
                url,
                transport: self.transport.unwrap_or_default(),
                headers: self.headers.as_ref().unwrap_or(&EMPTY_MAP),
                tls: self.tls.as_ref(),
            },
            None => ServerKind::Stdio {
                command: self.command.as_deref().unwrap_or_default(),
                args: self.args.as_deref().unwrap_or_default(),
                env: self.env.as_ref().unwrap_or(&EMPTY_MAP),
                cwd: self.cwd.as_deref(),
            },
        }
    }

    /// How long a stdio process may stay idle before it is stopped.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
            .map_or(Self::DEFAULT_IDLE_TIMEOUT, DurationSpec::get)
    }
}

/// Borrowed view of how to reach a server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServerKind<'a> {
    /// An MCP server reached over HTTP.
    Remote {
        /// Endpoint URL.
        url: &'a str,
        /// HTTP transport flavour.
        transport: Transport,
        /// Static headers sent upstream.
        headers: &'a BTreeMap<String, String>,
        /// TLS settings, if any.
        tls: Option<&'a TlsConfig>,
    },
    /// A local child process spoken to over stdio.
    Stdio {
        /// Program to run.
        command: &'a str,
        /// Its arguments.
        args: &'a [String],
        /// Extra environment variables.
        env: &'a BTreeMap<String, String>,
        /// Working directory (absolute after loading), if set.
        cwd: Option<&'a Path>,
    },
}

/// HTTP transport used to reach a remote server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Streamable HTTP (protocol 2025-03-26 and later).
    #[default]
    StreamableHttp,
    /// Legacy HTTP+SSE transport (protocol 2024-11-05).
    Sse,
}

/// TLS settings for a remote server. Paths are relative to the config
/// file's folder and made absolute on load.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust for the server's certificate, in addition to
    /// the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (requires `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate (requires `cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// Which MCP protocol version to use with an upstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum ProtocolSetting {
    /// Negotiate the newest version both sides support.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Protocol revision 2026-07-28.
    #[serde(rename = "2026-07-28")]
    V2026_07_28,
    /// Protocol revision 2025-11-25.
    #[serde(rename = "2025-11-25")]
    V2025_11_25,
    /// Protocol revision 2025-06-18.
    #[serde(rename = "2025-06-18")]
    V2025_06_18,
    /// Protocol revision 2025-03-26.
    #[serde(rename = "2025-03-26")]
    V2025_03_26,
    /// Protocol revision 2024-11-05 (HTTP+SSE era).
    #[serde(rename = "2024-11-05")]
    V2024_11_05,
}

impl ProtocolSetting {
    /// Every setting, newest pinned version first after `Auto`.
    pub const ALL: [ProtocolSetting; 6] = [
        ProtocolSetting::Auto,
        ProtocolSetting::V2026_07_28,
        ProtocolSetting::V2025_11_25,
        ProtocolSetting::V2025_06_18,
        ProtocolSetting::V2025_03_26,
        ProtocolSetting::V2024_11_05,
    ];

    /// The string used in configuration files (`"auto"` or a date).
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolSetting::Auto => "auto",
            ProtocolSetting::V2026_07_28 => "2026-07-28",
            ProtocolSetting::V2025_11_25 => "2025-11-25",
            ProtocolSetting::V2025_06_18 => "2025-06-18",
            ProtocolSetting::V2025_03_26 => "2025-03-26",
            ProtocolSetting::V2024_11_05 => "2024-11-05",
        }
    }

    /// True for [`ProtocolSetting::Auto`].
    pub fn is_auto(&self) -> bool {
        *self == ProtocolSetting::Auto
    }
}

impl std::fmt::Display for ProtocolSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An MCP endpoint exposed by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerConfig {
    /// Unique name, 1-64 characters of `A-Z a-z 0-9 _ -`.
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Unique HTTP path clients connect to, e.g. `/mcp`: starts with `/`, no trailing
    /// slash, not `/healthz`, `/readyz` or under `/.well-known`.
    pub path: String,
    /// When true, a member that is down fails list requests instead of
    /// just having its items missing.
    #[serde(default)]
    pub fail_closed: bool,
    /// OAuth 2.1 resource-server settings; without it the endpoint is unauthenticated (allowed
    /// only on loopback listeners unless `--insecure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// The upstream servers whose tools, prompts and resources this endpoint exposes. When
    /// two members expose the same name, the one listed first wins (a warning is logged).
    pub include: Vec<MemberConfig>,
}

/// One upstream server included in a virtual server, with tool filtering
/// and renaming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Name of a server from `servers`.
    pub server: String,
    /// Allow-list of tools, by the server's own names; absent = all tools. Prompts and
    /// resources are not filtered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Prefix added to every exposed tool and prompt name, e.g. `jira_`, to keep members'
    /// names apart (resource URIs are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// New names for tools, keyed by the server's own names (the prefix is
    /// added to the new name too).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Replacement descriptions for tools, keyed by the server's own names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub describe: BTreeMap<String, String>,
}

impl MemberConfig {
    /// Whether the allow-list (if any) lets `original` through.
    pub fn allows(&self, original: &str) -> bool {
        self.tools
            .as_ref()
            .is_none_or(|tools| tools.iter().any(|t| t == original))
    }

    /// The name under which the server's tool `original` is exposed, or
    /// `None` when the allow-list hides it.
    pub fn exposed_name(&self, original: &str) -> Option<String> {
        if !self.allows(original) {
            return None;
        }
        let base = self.rename.get(original).map_or(original, String::as_str);
        Some(format!("{}{base}", self.prefix.as_deref().unwrap_or("")))
    }

    /// The configured description for the server's tool `original`.
    pub fn description_override(&self, original: &str) -> Option<&str> {
        self.describe.get(original).map(String::as_str)
    }
}
