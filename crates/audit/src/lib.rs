//! The Gatehouse audit trail.
//!
//! Every decision point of the gateway produces one [`AuditEvent`]. The [`Journal`] writes
//! events as JSON Lines into segment files, each line hash-chained to the one before it, with
//! checkpoints signed by an Ed25519 key ([`chain`]). [`verify()`] walks the chains and names
//! every edit, deletion, reordering or truncation. [`ArgumentRecorder`] decides what of a
//! call's arguments is written; [`Coalescer`] keeps floods of unauthenticated failures from
//! drowning the journal; [`bound`] keeps every recorded string within
//! `audit.max_field_bytes`; [`index`] keeps a queryable index (without argument values) in the
//! store, with hourly [`usage`] rollups; [`anomaly`] detectors judge what it indexes against
//! baselines kept there. All three read a journal line through its typed [`line`] view.
#![warn(missing_docs)]

pub mod anomaly;
pub mod arguments;
pub mod bound;
pub mod chain;
pub mod coalesce;
pub mod event;
pub mod export;
pub mod format;
pub mod index;
pub mod journal;
pub mod line;
pub mod reader;
pub mod retention;
pub mod segments;
pub mod sinks;
pub mod usage;
pub mod verify;

use std::path::PathBuf;

pub use arguments::{ArgumentRecorder, RecordedArguments};
pub use bound::FieldCut;
pub use coalesce::{Coalescer, FailureKey};
pub use event::{
    ArgumentsDigest, AuditEvent, ClientRecord, EventKind, Outcome, PolicyRecord, PrincipalRecord,
    ResultRecord, ResultStatus, TargetRecord,
};
pub use journal::{Journal, JournalOptions, JournalStats};
pub use reader::{JournalLine, SegmentFile, StoredEvent};
pub use verify::{Damage, DamageKind, VerifyReport, verify};

/// Why the audit trail could not do something.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file or directory of the journal could not be used.
    #[error("audit journal: {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// An event could not be written (the journal's writer reported it).
    #[error("audit journal write failed: {0}")]
    Write(String),
    /// The signing key could not be used.
    #[error("audit signing key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The journal was closed.
    #[error("the audit journal is closed")]
    Closed,
    /// The index in the store failed.
    #[error("audit index: {0}")]
    Index(#[from] gatehouse_store::StoreError),
}
