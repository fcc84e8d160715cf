//! Wire formats of the Model Context Protocol as Gatehouse speaks them.
//!
//! This crate knows JSON-RPC 2.0 framing, MCP protocol versions and eras, the HTTP headers of the
//! 2026-07-28 transport, the `_meta` keys that carry per-request context, and the Server-Sent
//! Events codec. It knows nothing of configuration, sessions or backends: every higher crate
//! builds on these types so that a message is parsed once and relayed without loss.
#![warn(missing_docs)]

pub mod capability;
pub mod headers;
pub mod jsonrpc;
pub mod meta;
pub mod sse;
pub mod version;

pub use jsonrpc::{ErrorObject, Id, Message, MessageKind, WireError, codes};
pub use version::{Era, ProtocolVersion};
