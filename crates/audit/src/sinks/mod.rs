//! Shipping the journal to receivers: SIEMs, syslog, files, OpenTelemetry logs.
//!
//! A [`SinkRunner`] per configured sink reads the segment files from the sink's own cursor
//! (kept in the store), hands batches of complete lines to its [`Sink`], and moves the cursor
//! only after the receiver took them. A receiver that is down holds back only its own sink:
//! the runner retries with backoff (or the receiver's `Retry-After`) and catches up when it
//! is back. Delivery is at least once; every event carries its stable `id`
//! (`<instance>-<seq>`) so a receiver can drop duplicates. Events a receiver refuses for good
//! (a 400 for that body) go to the sink's dead-letter file, `sinks/<name>.rejected.jsonl` in
//! the journal directory, so nothing is lost and nothing blocks the rest.

pub mod elastic;
pub mod file;
pub mod http;
pub mod lag;
pub mod otlp;
pub mod runner;
pub mod sentinel;
pub mod splunk;
pub mod syslog;

use std::time::Duration;

use futures::future::BoxFuture;
use gatehouse_config::{SinkConfig, SinkKind};

use crate::reader::StoredEvent;

pub use runner::{Progress, ProgressHook, SinkRunner, dead_letter_path};

/// One event on its way to a receiver.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// The journal line, without its newline.
    pub raw: Vec<u8>,
    /// The line parsed.
    pub event: StoredEvent,
}

/// What a receiver did with a batch it accepted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Events (by index in the batch) the receiver refused for good, with its reason; they
    /// go to the dead-letter file.
    pub rejected: Vec<(usize, String)>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Try the whole batch again later (receiver down, 429, 5xx, timeout).
    #[error("{message}")]
    Retry {
        /// What happened (never holds a credential).
        message: String,
        /// How long the receiver asked us to wait (`Retry-After`).
        after: Option<Duration>,
    },
    /// The receiver refused the whole batch for good (e.g. 400 for this body): it goes to
    /// the dead-letter file.
    #[error("{0}")]
    Rejected(String),
    /// The sink cannot work as configured (bad URL, unreadable secret or CA).
    #[error("{0}")]
    Config(String),
}

impl SinkError {
    /// A retryable failure without a receiver-given wait.
    pub fn retry(message: impl Into<String>) -> SinkError {
        SinkError::Retry {
            message: message.into(),
            after: None,
        }
    }
}

/// A receiver of journal events.
pub trait Sink: Send + Sync {
    /// Delivers `batch` (in journal order). `Ok` means the receiver has it (minus the
    /// [`Delivered::rejected`] events); the cursor then moves past it.
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>>;
}

/// Builds the sink `config` describes.
pub fn build(config: &SinkConfig) -> Result<Box<dyn Sink>, SinkError> {
    match config.kind {
        SinkKind::File => file::FileSink::new(config).map(|s| Box::new(s) as Box<dyn Sink>),
        SinkKind::Syslog => syslog::SyslogSink::new(config).map(|s| Box::new(s) as Box<dyn Sink>),
        SinkKind::SplunkHec => {
            splunk::SplunkSink::new(config).map(|s| Box::new(s) as Box<dyn Sink>)
        }
        SinkKind::Elasticsearch => {
            elastic::ElasticSink::new(config).map(|s| Box::new(s) as Box<dyn Sink>)
        }
        SinkKind::Sentinel => {
            sentinel::SentinelSink::new(config).map(|s| Box::new(s) as Box<dyn Sink>)
        }
        SinkKind::OtlpLogs => otlp::OtlpLogsSink::new(config).map(|s| Box::new(s) as Box<dyn Sink>),
    }
}

/// Where a sink sends, for people: the file, or the URL without credentials or query.
pub fn destination(config: &SinkConfig) -> String {
    if let Some(p) = &config.path {
        return p.display().to_string();
    }
    let Some(url) = &config.url else {
        return String::new();
    };
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => url.clone(),
    }
}
