//! Identity for Gatehouse: who is calling (inbound) and what a backend sees of them (outbound).
//!
//! Inbound, every virtual server with `auth` is an OAuth 2.1 resource server
//! ([`ResourceServer`]): it validates bearer tokens — JWTs against the issuer's keys
//! ([`jwks`]), opaque tokens by introspection, SPIFFE and Kubernetes workload tokens against
//! their trust bundles — and turns them into a [`Principal`]. Outbound, a server's
//! `credentials` ([`outbound`]) obtain the token the backend sees: exchanged for the user,
//! the user's own delegated token from the vault, or Gatehouse's own. The caller's token is
//! never forwarded.
//!
//! This crate must not depend on the gateway: it knows tokens and principals, not MCP.

pub mod cache;
pub mod discovery;
mod error;
mod introspect;
pub mod jwks;
pub mod outbound;
pub mod principal;
mod resource;
pub mod verify;

pub use error::{CredentialError, IdentityError};
pub use outbound::OutboundCredential;
pub use principal::{Caller, InboundToken, Principal, PrincipalKind};
pub use resource::{AuthFailure, MAX_TOKEN_BYTES, ResourceServer, idp_client};
pub use verify::{Reason, Refusal};

/// Describes a reqwest error without its URL's query (which could hold a secret) — the
/// caller adds the URL it wants to show.
pub(crate) fn http_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "invalid response"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}
