//! The OpenTelemetry pipeline: OTLP exporters, the tracer and meter providers, and the
//! `Telemetry` handle the gateway keeps for its whole life.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use gatehouse_config::{OtlpConfig, OtlpProtocol, TelemetryConfig};
use opentelemetry::metrics::{Histogram as OtelHistogram, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{
    MetricExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::error::TelemetryError;
use crate::metrics::Metrics;
use crate::span::{RequestInfo, RequestSpan};

/// Bucket bounds (seconds) of the OpenTelemetry duration histograms: exactly the MCP
/// semantic conventions' advice, so dashboards built for the conventions line up.
pub const SEMCONV_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Longest [`Telemetry::shutdown`] waits for the last export.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

const SCOPE: &str = "gatehouse";

/// The gateway's observability: Prometheus [`Metrics`] always, OpenTelemetry spans and
/// metrics over OTLP when configured. Cheap to clone; every clone is the same pipeline, and
/// [`Telemetry::reconfigure`] (a reload of `telemetry`) changes it for all of them.
#[derive(Clone, Debug)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    metrics: Arc<Metrics>,
    /// `service.instance.id` of every pipeline this process builds.
    instance: String,
    /// The pipeline new requests record into. A request keeps the one it started with, so a
    /// reload never splits a request's spans over two exporters; a replaced pipeline flushes
    /// and stops when its last request ends ([`Inner`]'s `Drop`).
    current: ArcSwap<Inner>,
}

/// One OpenTelemetry pipeline: what a `telemetry` config built.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) metrics: Arc<Metrics>,
    /// The config it was built from (a reload with an equal one keeps it).
    config: TelemetryConfig,
    pub(crate) tracer: Option<SdkTracer>,
    pub(crate) instruments: Option<Instruments>,
    pub(crate) record_resource_uri: bool,
    providers: Mutex<Option<Providers>>,
}

#[derive(Debug)]
pub(crate) struct Instruments {
    pub(crate) server_duration: OtelHistogram<f64>,
    pub(crate) client_duration: OtelHistogram<f64>,
    pub(crate) session_duration: OtelHistogram<f64>,
}

#[derive(Debug, Clone)]
struct Providers {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Providers {
    /// Blocks until the last batch is exported: call it off the async runtime, whose tasks
    /// do the exporting.
    fn shutdown_blocking(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(t) = &self.tracer
            && let Err(e) = t.shutdown()
        {
            problems.push(format!("traces: {e}"));
        }
        if let Some(m) = &self.meter
            && let Err(e) = m.shutdown()
        {
            problems.push(format!("metrics: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The SDK flushes when its providers drop, blocking until a runtime task answers;
        // on a runtime thread that can deadlock, so a forgotten shutdown runs elsewhere.
        let providers = self.providers.get_mut().ok().and_then(Option::take);
        if let Some(p) = providers {
            let _ = std::thread::Builder::new()
                .name("telemetry-shutdown".into())
                .spawn(move || {
                    let _ = p.shutdown_blocking();
                });
        }
    }
}

impl Telemetry {
    /// Starts the pipeline `config` describes with a new [`Metrics`] registry. Without
    /// `otlp` nothing is exported and requests cost a few atomic adds.
    ///
    /// `instance` identifies this replica (`service.instance.id`), e.g. the host name.
    /// Call it inside a Tokio runtime: the exporters run as tasks on it.
    pub fn start(config: &TelemetryConfig, instance: &str) -> Result<Telemetry, TelemetryError> {
        Telemetry::start_with_metrics(config, instance, Metrics::new())
    }

    /// [`Telemetry::start`] recording into an existing registry.
    pub fn start_with_metrics(
        config: &TelemetryConfig,
        instance: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Telemetry, TelemetryError> {
        let pipeline = Inner::build(config, instance, metrics.clone())?;
        Ok(Telemetry {
            shared: Arc::new(Shared {
                metrics,
                instance: instance.to_string(),
                current: ArcSwap::from_pointee(pipeline),
            }),
        })
    }

    /// Prometheus metrics only: no spans, no OTLP.
    pub fn metrics_only(metrics: Arc<Metrics>) -> Telemetry {
        Telemetry {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(Inner::metrics_only(
                    metrics.clone(),
                    TelemetryConfig::default(),
                )),
                metrics,
                instance: String::new(),
            }),
        }
    }

    /// Follows a reload of `telemetry`: builds the pipeline `config` describes and makes new
    /// requests record into it; requests already running finish on the old one, which then
    /// exports what it holds and stops. Returns whether anything changed (an equal config
    /// keeps the running pipeline). On an error the running pipeline stays.
    /// Call it inside a Tokio runtime.
    pub fn reconfigure(&self, config: &TelemetryConfig) -> Result<bool, TelemetryError> {
        if self.shared.current.load().config == *config {
            return Ok(false);
        }
        let next = Inner::build(config, &self.shared.instance, self.shared.metrics.clone())?;
        self.shared.current.store(Arc::new(next));
        Ok(true)
    }
}

impl Inner {
    fn metrics_only(metrics: Arc<Metrics>, config: TelemetryConfig) -> Inner {
        Inner {
            metrics,
            config,
            tracer: None,
            instruments: None,
            record_resource_uri: false,
            providers: Mutex::new(None),
        }
    }

    fn build(
        config: &TelemetryConfig,
        instance: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Inner, TelemetryError> {
        let Some(otlp) = &config.otlp else {
            return Ok(Inner::metrics_only(metrics, config.clone()));
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TelemetryError::NoRuntime);
        }
        let resource = Resource::builder()
            .with_service_name(config.service_name().to_string())
            .with_attributes([
                KeyValue::new("service.instance.id", instance.to_string()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let scope = InstrumentationScope::builder(SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer_provider = if otlp.traces {
            let exporter = span_exporter(otlp)?;
            let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
            Some(
                SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource.clone())
                    .build(),
            )
        } else {
            None
        };
        let meter_provider = if otlp.metrics {
            let exporter = metric_exporter(otlp)?;
            let reader = PeriodicReader::builder(exporter, Tokio)
                .with_interval(otlp.export_interval.get())
                .build();
            Some(
                SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource)
                    .build(),
            )
        } else {
            None
        };
        let tracer = tracer_provider
            .as_ref()
            .map(|p| p.tracer_with_scope(scope.clone()));
        let instruments = meter_provider.as_ref().map(|p| {
            let meter = p.meter_with_scope(scope);
            let histogram = |name: &'static str, description: &'static str| {
                meter
                    .f64_histogram(name)
                    .with_unit("s")
                    .with_description(description)
                    .with_boundaries(SEMCONV_DURATION_BUCKETS.to_vec())
                    .build()
            };
            Instruments {
                server_duration: histogram(
                    "mcp.server.operation.duration",
                    "Duration of MCP requests served by the gateway, from receipt to response.",
                ),
                client_duration: histogram(
                    "mcp.client.operation.duration",
                    "Duration of MCP requests the gateway sent to backend servers.",
                ),
                session_duration: histogram(
                    "mcp.server.session.duration",
                    "Duration of MCP sessions the gateway served.",
                ),
            }
        });
        Ok(Inner {
            metrics,
            config: config.clone(),
            tracer,
            instruments,
            record_resource_uri: otlp.record_resource_uri,
            providers: Mutex::new(Some(Providers {
                tracer: tracer_provider,
                meter: meter_provider,
            })),
        })
    }
}

impl Telemetry {
    /// The Prometheus registry (serve it with [`crate::admin_router`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Whether spans are recorded and exported. When false a [`RequestSpan`] holds no
    /// OpenTelemetry span at all.
    pub fn tracing_enabled(&self) -> bool {
        self.shared.current.load().tracer.is_some()
    }

    /// Starts the span of one request at the front door, in the current pipeline.
    pub fn request(&self, info: RequestInfo<'_>) -> RequestSpan {
        RequestSpan::start(self.shared.current.load_full(), info)
    }

    /// A session of virtual server `vs` started (the `gatehouse_active_sessions` gauge).
    pub fn session_opened(&self, vs: &str) {
        self.shared.metrics.session_opened(vs);
    }

    /// A session of `vs` that lasted `duration` ended: lowers the gauge and records
    /// `mcp.server.session.duration`.
    pub fn session_closed(&self, vs: &str, protocol_version: Option<&str>, duration: Duration) {
        self.shared.metrics.session_closed(vs);
        if let Some(i) = &self.shared.current.load().instruments {
            let mut attrs = vec![
                KeyValue::new("network.transport", "tcp"),
                KeyValue::new("network.protocol.name", "http"),
                KeyValue::new("gatehouse.virtual_server", vs.to_string()),
            ];
            if let Some(v) = protocol_version {
                attrs.push(KeyValue::new("mcp.protocol.version", v.to_string()));
            }
            i.session_duration.record(duration.as_secs_f64(), &attrs);
        }
    }

    /// Exports what is buffered and stops the exporters (on SIGTERM). Waits at most 10
    /// seconds; later calls do nothing.
    pub async fn shutdown(&self) -> Result<(), TelemetryError> {
        let providers = self
            .shared
            .current
            .load()
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(providers) = providers else {
            return Ok(());
        };
        // The SDK blocks its caller until a runtime task finishes the export.
        let job = tokio::task::spawn_blocking(move || providers.shutdown_blocking());
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, job).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(TelemetryError::Shutdown(e)),
            Ok(Err(e)) => Err(TelemetryError::Shutdown(e.to_string())),
            Err(_) => Err(TelemetryError::Shutdown(format!(
                "the exporters did not finish within {SHUTDOWN_TIMEOUT:?}"
            ))),
        }
    }
}

/// The collector URL of one signal. OTLP/HTTP posts to a path per signal; gRPC uses the
/// base URL (the service name is the path).
fn signal_endpoint(otlp: &OtlpConfig, signal: &str) -> String {
    match otlp.protocol {
        OtlpProtocol::Http => format!("{}/v1/{signal}", otlp.endpoint.trim_end_matches('/')),
        OtlpProtocol::Grpc => otlp.endpoint.clone(),
    }
}

fn metadata(otlp: &OtlpConfig) -> Result<MetadataMap, TelemetryError> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &otlp.headers {
        let bad = || TelemetryError::Header { name: name.clone() };
        let n = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let v = http::HeaderValue::from_str(value).map_err(|_| bad())?;
        headers.insert(n, v);
    }
    Ok(MetadataMap::from_headers(headers))
}

fn http_headers(otlp: &OtlpConfig) -> HashMap<String, String> {
    otlp.headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// TLS for an `https://` gRPC endpoint with the system's trust roots (tonic trusts none
/// unless told).
fn grpc_tls(otlp: &OtlpConfig) -> Option<ClientTlsConfig> {
    otlp.endpoint
        .starts_with("https://")
        .then(|| ClientTlsConfig::new().with_enabled_roots())
}

fn span_exporter(otlp: &OtlpConfig) -> Result<SpanExporter, TelemetryError> {
    let endpoint = signal_endpoint(otlp, "traces");
    let built = match otlp.protocol {
        OtlpProtocol::Http => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&endpoint)
            .with_headers(http_headers(otlp))
            .build(),
        OtlpProtocol::Grpc => {
            let mut b = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&endpoint)
                .with_metadata(metadata(otlp)?);
            if let Some(tls) = grpc_tls(otlp) {
                b = b.with_tls_config(tls);
            }
            b.build()
        }
    };
    built.map_err(|source| TelemetryError::Exporter {
        signal: "traces",
        endpoint,
        source,
    })
}

fn metric_exporter(otlp: &OtlpConfig) -> Result<MetricExporter, TelemetryError> {
    let endpoint = signal_endpoint(otlp, "metrics");
    let built = match otlp.protocol {
        OtlpProtocol::Http => MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&endpoint)
            .with_headers(http_headers(otlp))
            .build(),
        OtlpProtocol::Grpc => {
            let mut b = MetricExporter::builder()
                .with_tonic()
                .with_endpoint(&endpoint)
                .with_metadata(metadata(otlp)?);
            if let Some(tls) = grpc_tls(otlp) {
                b = b.with_tls_config(tls);
            }
            b.build()
        }
    };
    built.map_err(|source| TelemetryError::Exporter {
        signal: "metrics",
        endpoint,
        source,
    })
}
