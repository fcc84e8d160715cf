//! Errors of starting and stopping the telemetry pipeline.

/// Why telemetry could not start or flush.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// OTLP export runs on the Tokio runtime, and there was none.
    #[error("OTLP export needs a Tokio runtime: start telemetry from async code")]
    NoRuntime,
    /// An exporter could not be built from the configuration.
    #[error("cannot export {signal} over OTLP to {endpoint}: {source}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The collector URL.
        endpoint: String,
        /// The exporter's reason.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A configured header is not a valid HTTP header or gRPC metadata entry.
    #[error("OTLP header {name:?} is not a valid header name and value")]
    Header {
        /// The header name.
        name: String,
    },
    /// Flushing or stopping the exporters failed.
    #[error("flushing telemetry failed: {0}")]
    Shutdown(String),
}
