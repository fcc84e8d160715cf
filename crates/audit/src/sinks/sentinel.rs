//! Scaffold: the sentinel sink is not built yet.

use futures::future::BoxFuture;
use gatehouse_config::SinkConfig;

use super::{Delivered, Shipped, Sink, SinkError};

/// The sentinel sink.
#[derive(Debug)]
pub struct SentinelSink;

impl SentinelSink {
    /// Builds it from its config.
    pub fn new(config: &SinkConfig) -> Result<SentinelSink, SinkError> {
        Err(SinkError::Config(format!(
            "audit.sinks {}: {} sinks are not built yet",
            config.name,
            config.kind.as_str()
        )))
    }
}

impl Sink for SentinelSink {
    fn deliver<'a>(
        &'a mut self,
        _batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async { Err(SinkError::Config("not built yet".into())) })
    }
}
