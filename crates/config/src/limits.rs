//! Bounds on what one client (or one backend) can make the gateway hold: connections, request
//! bodies, sessions, stream queues and a stdio server's stderr. Every bound has a default
//! that is safe on a small machine; each one that bites shows as a metric and, where a caller
//! is refused, a specific error.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;

/// Bounds on client connections to the gateway's listener (`gateway.connections`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Most client connections open at once (default 10000). Further connections are
    /// accepted and closed at once. The effective bound is also kept below the process's
    /// open-file limit minus `fd_reserve`.
    pub max: u32,
    /// Most connections open at once from one source address (default 512).
    pub max_per_ip: u32,
    /// How long a client may take to send a request's headers (default 10s); slower
    /// connections are closed.
    pub header_timeout: DurationSpec,
    /// How long a keep-alive connection may sit idle between requests (default 60s).
    pub idle_timeout: DurationSpec,
    /// File descriptors kept free for the journal, the audit index, the store and backends
    /// (default 256): connections are refused before the process's limit is reached.
    pub fd_reserve: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: 10_000,
            max_per_ip: 512,
            header_timeout: DurationSpec::from_secs(10),
            idle_timeout: DurationSpec::from_secs(60),
            fd_reserve: 256,
        }
    }
}

/// Bounds on handshake-era sessions (`gateway.sessions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SessionLimits {
    /// A session that saw no request for this long expires (default 1h), whatever
    /// `gateway.session_ttl` says.
    pub idle_timeout: DurationSpec,
    /// Most live sessions per principal (default 100); for unauthenticated endpoints, per
    /// source address. When a new session would exceed it, the principal's session idle the
    /// longest is ended.
    pub max_per_principal: u32,
    /// Most live sessions on this process (default 20000); when full, the session idle the
    /// longest is ended.
    pub max: u32,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle_timeout: DurationSpec::from_secs(60 * 60),
            max_per_principal: 100,
            max: 20_000,
        }
    }
}

/// Bounds on what a stdio server writes to its stderr (`gateway.stderr`), which goes to the
/// gateway's log under the server's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StderrLimits {
    /// Longest stderr line logged, in bytes (default 4096); the rest of a longer line is
    /// dropped and counted.
    pub max_line_bytes: u32,
    /// Most stderr lines logged per second per process (default 50); the rest are dropped
    /// and counted.
    pub max_lines_per_second: u32,
}

impl Default for StderrLimits {
    fn default() -> Self {
        StderrLimits {
            max_line_bytes: 4096,
            max_lines_per_second: 50,
        }
    }
}
