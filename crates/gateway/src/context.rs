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
    /// The view of a handshake-era caller that has not initialized yet (a legacy HTTP+SSE
    /// connection before `initialize`): no capabilities, no upstream sessions.
    pub fn handshake(caller: &gatehouse_identity::Caller) -> CallCtx {
        CallCtx {
            client: ClientContext {
                caller: caller.clone(),
                ..Default::default()
            },
            upstream: HashMap::new(),
            era: Era::Handshake,
            protocol_version: gatehouse_wire::ProtocolVersion::LATEST_HANDSHAKE
                .as_str()
                .to_string(),
            events: None,
            param_headers: Vec::new(),
        }
    }

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
