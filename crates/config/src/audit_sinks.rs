//! `audit.sinks` (where the journal is shipped), `audit.retention` (how long it is kept) and
//! `audit.anomalies` (the detectors that watch it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::SecretRef;
use crate::duration::DurationSpec;
use crate::model::NAME_PATTERN;
use crate::telemetry::OtlpProtocol;

/// One destination the journal is shipped to. Each sink reads the journal from its own
/// cursor, so a sink that is down loses nothing: it catches up when it is back. Every event
/// carries its stable id (`<instance>-<seq>`) so a receiver can drop the duplicates an
/// at-least-once delivery can produce. Which fields a `type` needs is checked when the
/// config is loaded.
//
// One flat struct, not an enum, so that unknown fields stay errors (see the model's module
// docs); a plain comment, not a doc comment, so that it stays out of the JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique name; the sink's cursor is kept under it, so renaming a sink ships the whole
    /// journal again.
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// What receives the events.
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// Event layout for `file` and `syslog` (default `jsonl`, the journal's own lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<EventFormat>,
    /// `file`: the file events are appended to (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Where to send: `udp://host:514`, `tcp://host:601` or `tls://host:6514` (syslog);
    /// the base URL of the Splunk HTTP Event Collector, Elasticsearch/OpenSearch, the Azure
    /// Monitor data collection endpoint, or the OTLP collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Splunk HEC token, or Elasticsearch API key (the base64 `id:key` form), as
    /// `env:NAME` or `file:path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    /// Elasticsearch basic-auth user (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Elasticsearch basic-auth password, as `env:NAME` or `file:path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Splunk index, or Elasticsearch index / data stream (default `gatehouse-audit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Splunk `source` (default `gatehouse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Splunk `sourcetype` (default `gatehouse:audit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// Sentinel: the Entra ID tenant of the app registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Sentinel: the app registration's client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Sentinel: the app registration's secret, as `env:NAME` or `file:path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// Sentinel: the data collection rule's immutable id (`dcr-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcr_id: Option<String>,
    /// Sentinel: the stream declared in the rule (default `Custom-GatehouseAudit_CL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Sentinel: the Entra ID authority (default `https://login.microsoftonline.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// `otlp_logs`: the OTLP transport (default `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// Extra HTTP headers (or gRPC metadata) sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// PEM file of the CA that signs the receiver's certificate (TLS syslog and `https://`
    /// URLs), in addition to the system's roots; relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// `syslog`: the facility name (default `local0`; `auth`, `authpriv`, `local0`…`local7`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// Where a new sink (one with no cursor yet) starts reading the journal (default
    /// `beginning`).
    #[serde(default, skip_serializing_if = "SinkStart::is_beginning")]
    pub start: SinkStart,
    /// Only these event types are shipped (default: all), e.g. `[mcp.request, anomaly]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Most events per delivery (default 500).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// How long a sink waits for more events before it delivers a partial batch
    /// (default 1s).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: DurationSpec,
    /// Time limit of one delivery (default 10s).
    #[serde(default = "default_timeout")]
    pub timeout: DurationSpec,
    /// Longest wait between retries of a failing delivery (default 60s); waits start at
    /// 500ms and double, or follow the receiver's `Retry-After`.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: DurationSpec,
}

fn default_batch_size() -> u32 {
    500
}
fn default_flush_interval() -> DurationSpec {
    DurationSpec::from_secs(1)
}
fn default_timeout() -> DurationSpec {
    DurationSpec::from_secs(10)
}
fn default_max_backoff() -> DurationSpec {
    DurationSpec::from_secs(60)
}

/// Where a new sink starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkStart {
    /// Ship the whole journal (a backfill).
    #[default]
    Beginning,
    /// Ship only what is written from the sink's first start on.
    Now,
}

impl SinkStart {
    /// True for the default (kept out of serialized configs).
    pub fn is_beginning(&self) -> bool {
        *self == SinkStart::Beginning
    }
}

/// The kinds of sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Appends to a local file, one event per line.
    File,
    /// RFC 5424 syslog over UDP, TCP (octet counting) or TLS (RFC 5425).
    Syslog,
    /// Splunk HTTP Event Collector (`/services/collector/event`).
    SplunkHec,
    /// Elasticsearch or OpenSearch `_bulk` API, documents in Elastic Common Schema.
    Elasticsearch,
    /// Microsoft Sentinel through the Azure Monitor Logs Ingestion API.
    Sentinel,
    /// OpenTelemetry logs over OTLP (HTTP or gRPC).
    OtlpLogs,
}

impl SinkKind {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Syslog => "syslog",
            SinkKind::SplunkHec => "splunk_hec",
            SinkKind::Elasticsearch => "elasticsearch",
            SinkKind::Sentinel => "sentinel",
            SinkKind::OtlpLogs => "otlp_logs",
        }
    }
}

/// How one event is laid out for a receiver or an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// The journal's own JSON line (with `id`, `seq`, `prev`, `instance`).
    #[default]
    Jsonl,
    /// Elastic Common Schema JSON.
    Ecs,
    /// OCSF API Activity (class 6003) JSON.
    Ocsf,
    /// ArcSight Common Event Format.
    Cef,
}

impl EventFormat {
    /// The name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EventFormat::Jsonl => "jsonl",
            EventFormat::Ecs => "ecs",
            EventFormat::Ocsf => "ocsf",
            EventFormat::Cef => "cef",
        }
    }
}

/// How long the journal is kept, per class of event. A segment file is removed when every
/// event in it has outlived its class's retention; the chain is then re-anchored in a signed
/// checkpoint so `gatehouse audit verify` still passes. Unset classes use `default`; without
/// `default`, they are kept forever.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long events of every class not set on its own are kept (default: forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<DurationSpec>,
    /// How long `tools/call` request events are kept (default: as `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<DurationSpec>,
    /// How long other MCP request events (`tools/list`, `resources/read`, …) are kept
    /// (default: as `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<DurationSpec>,
    /// How long `auth.failure` events are kept (default: as `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_failure: Option<DurationSpec>,
    /// How long `session.start` and `session.end` events are kept (default: as `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<DurationSpec>,
    /// How long `config.change` and `policy.change` events are kept (default: as `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<DurationSpec>,
    /// How long `anomaly` events are kept (default: as `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<DurationSpec>,
    /// How long the hourly usage rollups in the store (they name users) are kept, judged by
    /// the hour they count (default: as `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<DurationSpec>,
}

impl RetentionConfig {
    /// True when nothing is set (keep everything).
    pub fn is_default(&self) -> bool {
        self == &RetentionConfig::default()
    }
}

/// The anomaly detectors (see docs/audit.md, Anomalies). Each compares a principal's or a
/// server's current hour with its rolling baseline from the usage rollups, and writes an
/// `anomaly` event to the journal and `gatehouse_anomalies_total` when it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// `false` turns every detector off. Default `true`.
    pub enabled: bool,
    /// How far back the baseline looks (default 14d).
    pub window: DurationSpec,
    /// Fires when the current hour exceeds the baseline by this factor (default 3).
    pub factor: f64,
    /// The volume detectors fire only when the current hour also has at least this many
    /// calls (default 20), so quiet principals stay quiet.
    pub min_calls: u64,
    /// A baseline needs this much history before volume detectors judge against it
    /// (default 24h).
    pub min_history: DurationSpec,
    /// Authorization failures (denied, forbidden) by one principal within `failure_window`
    /// that fire the repeated-failure detector (default 5).
    pub failures: u64,
    /// The window `failures` is counted in (default 10m).
    pub failure_window: DurationSpec,
    /// Prefix length that makes an IPv4 source a "network" (default 24).
    pub ipv4_prefix: u8,
    /// Prefix length that makes an IPv6 source a "network" (default 48).
    pub ipv6_prefix: u8,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: true,
            window: DurationSpec::from_secs(14 * 86_400),
            factor: 3.0,
            min_calls: 20,
            min_history: DurationSpec::from_secs(86_400),
            failures: 5,
            failure_window: DurationSpec::from_secs(600),
            ipv4_prefix: 24,
            ipv6_prefix: 48,
        }
    }
}

impl AnomalyConfig {
    /// True when every setting is the default.
    pub fn is_default(&self) -> bool {
        self == &AnomalyConfig::default()
    }
}
