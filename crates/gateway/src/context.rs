//! The context of one client request as it travels through dispatch and catalog.

use std::collections::HashMap;

use gatehouse_wire::Era;
use tokio::sync::mpsc;

use crate::backend::{CallEvent, ClientContext, UpstreamSession};
use crate::snapshot::Member;

/// Who is calling and how to reach them while the call runs.
#[derive(Debug, Clone)]
pub struct CallCtx {
    /// Client capabilities and info.
    pub client: ClientContext,
    /// Upstream sessions by server name (handshake-era HTTP members).
    pub upstream: HashMap<String, UpstreamSession>,
    /// The client's era.
    pub era: Era,
    /// The protocol version the client speaks (shown to policies).
    pub protocol_version: String,
    /// Where in-flight notifications and server→client requests go.
    pub events: Option<mpsc::Sender<CallEvent>>,
    /// The client's `Mcp-Param-*` headers (lower-case names), checked against the arguments of
    /// stateless `tools/call`s.
    pub param_headers: Vec<(String, String)>,
}

impl CallCtx {
    /// The client context for calls to one member (with the client's upstream session there).
    pub fn for_member(&self, member: &Member) -> ClientContext {
        let mut c = self.client.clone();
        c.upstream_session = self.upstream.get(&member.server.config.name).cloned();
        c
    }
}

impl CallCtx {
    /// True when the client sees `member` through a handshake-era session of its own (its view
    /// of the member's items may differ from the gateway's stateless view).
    pub fn has_own_session(&self, member: &Member) -> bool {
        self.upstream.contains_key(&member.server.config.name)
    }
}
