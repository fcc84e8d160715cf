//! Process-wide counters, exposed on the admin listener once telemetry lands.

use std::sync::atomic::AtomicU64;

/// Name clashes between members found at run time (the first include won).
pub static NAME_CONFLICTS: AtomicU64 = AtomicU64::new(0);
/// Requests rejected before dispatch (malformed, oversized, bad headers).
pub static REJECTED_REQUESTS: AtomicU64 = AtomicU64::new(0);
