//! The `telemetry:` block (OpenTelemetry export over OTLP) and the `admin:` listener
//! (Prometheus `/metrics` and `/healthz`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;

/// Service name reported to OpenTelemetry when `telemetry.service_name` is absent.
pub const DEFAULT_SERVICE_NAME: &str = "gatehouse";

/// OpenTelemetry traces and metrics of every MCP request, following the MCP semantic
/// conventions. Read at startup only: a change needs a restart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Export spans and metrics over OTLP to a collector or vendor. Without it nothing is
    /// exported (the Prometheus metrics of the admin listener still work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpConfig>,
    /// `service.name` of the exported resource. Default `gatehouse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl TelemetryConfig {
    /// `service_name`, or `gatehouse` when unset.
    pub fn service_name(&self) -> &str {
        self.service_name.as_deref().unwrap_or(DEFAULT_SERVICE_NAME)
    }
}

/// Where and how to export over the OpenTelemetry Protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's base URL, e.g. `http://127.0.0.1:4318` (http) or
    /// `http://127.0.0.1:4317` (grpc). For `http`, `/v1/traces` and `/v1/metrics` are
    /// appended to its path, as with `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (`https://otlp.example.com/otlp` exports to `…/otlp/v1/traces`). `https://` uses TLS
    /// with the system's trust roots.
    pub endpoint: String,
    /// The OTLP transport. Default `http`, the OpenTelemetry default.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Headers sent with every export, e.g. a vendor's API key
    /// (`x-api-key: ${OTLP_KEY}`). Sent as gRPC metadata with `grpc`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Export spans (one SERVER span per request, one CLIENT span per backend call).
    /// Default true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub traces: bool,
    /// Export the `mcp.*.operation.duration` and session duration histograms. Default true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub metrics: bool,
    /// How often metrics are exported. Default 10s.
    #[serde(default = "default_export_interval")]
    pub export_interval: DurationSpec,
    /// Record `mcp.resource.uri` on `resources/*` spans. Off by default: URIs can name
    /// private documents, and the MCP conventions make the attribute opt-in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record_resource_uri: bool,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`), usually port 4318.
    #[default]
    Http,
    /// OTLP/gRPC, usually port 4317.
    Grpc,
}

impl OtlpProtocol {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Http => "http",
            OtlpProtocol::Grpc => "grpc",
        }
    }
}

/// The admin listener: Prometheus metrics at `/metrics` and liveness at `/healthz`, on an
/// address of its own so it can stay private while the MCP endpoints are public.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// IP address and port, e.g. `127.0.0.1:9090`. It has no authentication: keep it on
    /// loopback or a private network.
    pub listen: String,
}

impl AdminConfig {
    /// The listen address; validation guarantees it parses.
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_export_interval() -> DurationSpec {
    DurationSpec(Duration::from_secs(10))
}
