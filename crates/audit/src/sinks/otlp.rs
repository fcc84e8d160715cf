//! OpenTelemetry logs over OTLP: one `LogRecord` per event, as protobuf over HTTP
//! (`POST {url}/v1/logs`) or gRPC (`opentelemetry.proto.collector.logs.v1.LogsService/Export`).
//!
//! The record's `event_name` is `gatehouse.audit.<type>` (the OTLP field that marks a record
//! as an event; the older `event.name` attribute is deprecated in the semantic conventions),
//! its time the event's, its severity from the outcome, its body the journal event as JSON
//! text, and its `trace_id` the event's so a backend links the record to the request's trace.
//! Attributes use the names Gatehouse's spans use (`mcp.method.name`, `gen_ai.tool.name`,
//! `gatehouse.server`, …) so logs and traces join on the same keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use gatehouse_config::{OtlpProtocol, SinkConfig};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::http;
use super::{Delivered, Shipped, Sink, SinkError};
use crate::event::Outcome;

/// The OTLP logs sink.
pub struct OtlpLogsSink {
    config: SinkConfig,
    transport: Transport,
    host: String,
}

enum Transport {
    Http {
        client: reqwest::Client,
        url: reqwest::Url,
    },
    Grpc {
        endpoint: Box<Endpoint>,
        metadata: tonic::metadata::MetadataMap,
        client: Option<LogsServiceClient<Channel>>,
    },
}

impl OtlpLogsSink {
    /// Builds it from its config (`protocol` http, the default, or grpc).
    pub fn new(config: &SinkConfig) -> Result<OtlpLogsSink, SinkError> {
        let bad = |what: String| SinkError::Config(format!("audit.sinks {}: {what}", config.name));
        let transport = match config.protocol.unwrap_or(OtlpProtocol::Http) {
            OtlpProtocol::Http => Transport::Http {
                client: http::client(config)?,
                url: http::endpoint(config, "v1/logs")?,
            },
            OtlpProtocol::Grpc => {
                let url = config.url.clone().unwrap_or_default();
                let mut endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| bad(format!("url: {e}")))?
                    .timeout(config.timeout.get())
                    .connect_timeout(config.timeout.get().min(Duration::from_secs(10)));
                if url.starts_with("https://") {
                    let mut tls = ClientTlsConfig::new().with_native_roots();
                    if let Some(ca) = &config.ca {
                        let pem = std::fs::read(ca)
                            .map_err(|e| bad(format!("ca {}: {e}", ca.display())))?;
                        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                    }
                    endpoint = endpoint
                        .tls_config(tls)
                        .map_err(|e| bad(format!("tls: {e}")))?;
                }
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (k, v) in &config.headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(k.to_lowercase().as_bytes())
                        .map_err(|e| bad(format!("headers: {k:?}: {e}")))?;
                    let value = v.parse().map_err(|_| {
                        bad(format!(
                            "headers: the value of {k:?} is not valid gRPC metadata"
                        ))
                    })?;
                    metadata.insert(key, value);
                }
                Transport::Grpc {
                    endpoint: Box::new(endpoint),
                    metadata,
                    client: None,
                }
            }
        };
        Ok(OtlpLogsSink {
            config: config.clone(),
            transport,
            host: http::hostname(),
        })
    }

    fn request(&self, batch: &[Shipped]) -> ExportLogsServiceRequest {
        let observed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "gatehouse"), kv("host.name", &self.host)],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "gatehouse.audit".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records: batch.iter().map(|s| record(s, observed)).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    async fn export(&mut self, request: ExportLogsServiceRequest) -> Result<(), SinkError> {
        let what = format!("otlp_logs {}", self.config.name);
        let answer = match &mut self.transport {
            Transport::Http { client, url } => {
                let req = client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(request.encode_to_vec());
                let (status, after, body) = http::exchange(&what, req).await?;
                if !status.is_success() {
                    // OTLP/HTTP errors carry a protobuf google.rpc.Status; its message is
                    // the readable part.
                    let text = String::from_utf8_lossy(&body)
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect::<String>();
                    return Err(http::failure_of(&what, status, after, &text));
                }
                ExportLogsServiceResponse::decode(body.as_slice()).unwrap_or_default()
            }
            Transport::Grpc {
                endpoint,
                metadata,
                client,
            } => {
                if client.is_none() {
                    let channel = endpoint.connect().await.map_err(|e| {
                        SinkError::retry(format!("{what}: connect: {}", http::error_chain(&e)))
                    })?;
                    *client = Some(LogsServiceClient::new(channel));
                }
                let Some(c) = client.as_mut() else {
                    return Err(SinkError::retry(format!("{what}: no connection")));
                };
                let mut req = tonic::Request::new(request);
                *req.metadata_mut() = metadata.clone();
                match c.export(req).await {
                    Ok(r) => r.into_inner(),
                    Err(status) => {
                        let e = grpc_failure(&what, &status);
                        if matches!(e, SinkError::Retry { .. }) {
                            // Reconnect next time: the channel may point at a dead peer.
                            *client = None;
                        }
                        return Err(e);
                    }
                }
            }
        };
        if let Some(p) = answer.partial_success
            && p.rejected_log_records > 0
        {
            // OTLP says not to retry these, and does not say which they were.
            tracing::warn!(sink = %self.config.name, rejected = p.rejected_log_records, message = %p.error_message, "OTLP receiver dropped some audit records");
        }
        Ok(())
    }
}

/// The error for a gRPC status: retry for the codes OTLP names retryable, configuration
/// for authentication, else refused.
fn grpc_failure(what: &str, status: &tonic::Status) -> SinkError {
    use tonic::Code;
    let message = format!("{what}: gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss
        | Code::ResourceExhausted
        | Code::Unknown
        | Code::Internal => SinkError::retry(message),
        Code::Unauthenticated | Code::PermissionDenied => SinkError::Config(message),
        _ => SinkError::Rejected(message),
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// Severity of an outcome: refusals are warnings, failures errors.
pub fn severity(outcome: Outcome) -> (SeverityNumber, &'static str) {
    match outcome {
        Outcome::Ok | Outcome::Cancelled => (SeverityNumber::Info, "INFO"),
        Outcome::Denied | Outcome::Rejected | Outcome::Unauthenticated | Outcome::Forbidden => {
            (SeverityNumber::Warn, "WARN")
        }
        Outcome::Error => (SeverityNumber::Error, "ERROR"),
    }
}

/// The log record of one event.
pub fn record(s: &Shipped, observed: u64) -> LogRecord {
    let e = &s.event.event;
    let (number, text) = severity(e.outcome);
    let mut attributes = vec![
        kv("gatehouse.event.id", &s.event.id),
        kv("gatehouse.event.type", e.kind.as_str()),
        kv("gatehouse.outcome", e.outcome.as_str()),
    ];
    let mut opt = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            attributes.push(kv(k, v));
        }
    };
    opt("user.id", e.principal.as_ref().map(|p| p.subject.as_str()));
    opt(
        "user.email",
        e.principal.as_ref().and_then(|p| p.email.as_deref()),
    );
    opt("mcp.method.name", e.method.as_deref());
    opt(
        "gen_ai.tool.name",
        e.target
            .as_ref()
            .filter(|t| t.kind == "tool")
            .map(|t| t.name.as_str()),
    );
    opt("gatehouse.server", e.server.as_deref());
    opt("gatehouse.virtual_server", e.virtual_server.as_deref());
    opt(
        "client.address",
        e.client.as_ref().and_then(|c| c.ip.as_deref()),
    );
    opt("mcp.session.id", e.session.as_deref());
    opt(
        "gatehouse.policy.decision",
        e.policy.as_ref().map(|p| p.decision.as_str()),
    );
    if let Some(us) = e.latency_us {
        attributes.push(kv_int("gatehouse.latency_us", us as i64));
    }
    let trace_id = e
        .trace_id
        .as_deref()
        .and_then(|t| hex::decode(t).ok())
        .filter(|b| b.len() == 16 && b.iter().any(|&x| x != 0))
        .unwrap_or_default();
    LogRecord {
        time_unix_nano: http::unix_nanos(&e.time).unwrap_or(observed),
        observed_time_unix_nano: observed,
        severity_number: number as i32,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(
                String::from_utf8_lossy(&s.raw).into_owned(),
            )),
        }),
        attributes,
        dropped_attributes_count: 0,
        flags: 0,
        trace_id,
        span_id: Vec::new(),
        event_name: format!("gatehouse.audit.{}", e.kind.as_str()),
    }
}

impl Sink for OtlpLogsSink {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move {
            let request = self.request(batch);
            self.export(request).await?;
            Ok(Delivered::default())
        })
    }
}
