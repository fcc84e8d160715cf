//! The syslog sink: RFC 5424 messages over UDP, TCP (octet counting) or TLS.
//!
//! Each event becomes one message whose MSGID is the event type, whose structured data
//! (`[gatehouse@32473 id=… outcome=… user=… tool=…]`) carries what a syslog server filters
//! on, and whose MSG is the event in the sink's `format` (default `jsonl`). Over TCP and TLS
//! a broken connection is a retry: the batch is sent again on a new connection, so an
//! outage of the receiver loses nothing (a receiver may see a batch twice and can drop the
//! duplicates by `id`). UDP has no delivery feedback at all: use it only where losing
//! datagrams is acceptable.

pub mod message;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatehouse_config::SinkConfig;

use super::{Delivered, Shipped, Sink, SinkError};
use message::{Layout, hostname};
use transport::{Connection, Endpoint, Scheme, connect, tls_config};

/// Largest UDP datagram sent; longer messages are cut (RFC 5426 §3.2: receivers must take
/// 480 bytes, should take 2048, and most take 8 KiB; a datagram larger than the receiver's
/// limit is dropped whole, so cutting is the lesser loss).
pub const MAX_DATAGRAM: usize = 8192;

/// The syslog sink.
pub struct SyslogSink {
    name: String,
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    layout: Layout,
    timeout: Duration,
    connection: Option<Connection>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// Builds it from its config: `url` (`udp://`, `tcp://` or `tls://`), `facility`
    /// (default `local0`), `format`, `ca` and `timeout`.
    pub fn new(config: &SinkConfig) -> Result<SyslogSink, SinkError> {
        let err = |m: String| SinkError::Config(format!("audit.sinks {}: {m}", config.name));
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| err("a syslog sink needs `url`".into()))?;
        let endpoint = Endpoint::parse(url).map_err(err)?;
        let facility_name = config.facility.as_deref().unwrap_or("local0");
        let facility = Layout::facility(facility_name).ok_or_else(|| {
            err(format!(
                "facility {facility_name:?} is not a syslog facility"
            ))
        })?;
        let tls = match endpoint.scheme {
            Scheme::Tls => Some(tls_config(config.ca.as_deref()).map_err(err)?),
            _ => None,
        };
        Ok(SyslogSink {
            name: config.name.clone(),
            endpoint,
            tls,
            layout: Layout {
                facility,
                hostname: hostname(),
                format: config.format.unwrap_or_default(),
            },
            timeout: config.timeout.get(),
            connection: None,
        })
    }

    async fn send(&mut self, messages: &[String]) -> std::io::Result<()> {
        if self.connection.as_mut().is_some_and(Connection::closed) {
            self.connection = None;
        }
        if self.connection.is_none() {
            self.connection = Some(connect(&self.endpoint, self.tls.as_ref(), self.timeout).await?);
        }
        let c = self.connection.as_mut().expect("connected above");
        tokio::time::timeout(self.timeout, c.send(messages, MAX_DATAGRAM))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "send timed out"))?
    }
}

impl Sink for SyslogSink {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move {
            let messages: Vec<String> = batch
                .iter()
                .map(|s| self.layout.message(&s.event, &s.raw))
                .collect();
            match self.send(&messages).await {
                Ok(()) => Ok(Delivered::default()),
                Err(e) => {
                    // Whatever state the connection is in, the next attempt starts afresh.
                    self.connection = None;
                    Err(SinkError::retry(format!(
                        "audit.sinks {}: syslog {}:{}: {e}",
                        self.name, self.endpoint.host, self.endpoint.port
                    )))
                }
            }
        })
    }
}
