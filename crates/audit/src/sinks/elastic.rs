//! Scaffold: the elastic sink is not built yet.

use futures::future::BoxFuture;
use gatehouse_config::SinkConfig;

use super::{Delivered, Shipped, Sink, SinkError};

/// The elastic sink.
#[derive(Debug)]
pub struct ElasticSink;

impl ElasticSink {
    /// Builds it from its config.
    pub fn new(config: &SinkConfig) -> Result<ElasticSink, SinkError> {
        Err(SinkError::Config(format!(
            "audit.sinks {}: {} sinks are not built yet",
            config.name,
            config.kind.as_str()
        )))
    }
}

impl Sink for ElasticSink {
    fn deliver<'a>(
        &'a mut self,
        _batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async { Err(SinkError::Config("not built yet".into())) })
    }
}
