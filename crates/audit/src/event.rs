//! The audit event: one line of the journal.
//!
//! The journal writer puts `seq`, `prev`, `id` and `instance` in front of the fields below;
//! everything else is what the gateway knew when the event happened. Fields that do not apply
//! are left out rather than written as `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bound::FieldCut;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// An MCP request from a client (any method), allowed, denied or failed.
    #[serde(rename = "mcp.request")]
    Request,
    /// A request refused before its caller was authenticated (401, 403, bad origin, …);
    /// identical ones from one source are coalesced (`count`).
    #[serde(rename = "auth.failure")]
    AuthFailure,
    /// A handshake-era session was opened (`initialize`).
    #[serde(rename = "session.start")]
    SessionStart,
    /// A handshake-era session ended: by its client (`DELETE`), or by the gateway, with
    /// `reason` saying why (`idle`, `ttl`, `cap_principal`, `cap_total`).
    #[serde(rename = "session.end")]
    SessionEnd,
    /// The configuration was reloaded, or a reload was rejected.
    #[serde(rename = "config.change")]
    ConfigChange,
    /// The policy set changed, or a new set was rejected.
    #[serde(rename = "policy.change")]
    PolicyChange,
    /// This journal (one gateway process) started; links to the previous one.
    #[serde(rename = "journal.start")]
    JournalStart,
    /// A detector found a principal or server far from its baseline (see `detail`).
    #[serde(rename = "anomaly")]
    Anomaly,
    /// Retention removed expired segment files (`detail` names them and the new anchor).
    #[serde(rename = "retention")]
    Retention,
}

impl EventKind {
    /// The name written in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Request => "mcp.request",
            EventKind::AuthFailure => "auth.failure",
            EventKind::SessionStart => "session.start",
            EventKind::SessionEnd => "session.end",
            EventKind::ConfigChange => "config.change",
            EventKind::PolicyChange => "policy.change",
            EventKind::JournalStart => "journal.start",
            EventKind::Anomaly => "anomaly",
            EventKind::Retention => "retention",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Served; the result may still report a tool error (see `result.status`).
    Ok,
    /// Failed: a JSON-RPC error from the gateway or the server.
    Error,
    /// Denied by policy.
    Denied,
    /// Refused before dispatch: malformed, oversized, bad headers, unknown session, …
    Rejected,
    /// No valid credentials (HTTP 401).
    Unauthenticated,
    /// Authenticated but not allowed (HTTP 403: scopes, origin).
    Forbidden,
    /// The client went away (or cancelled) before the response.
    Cancelled,
}

impl Outcome {
    /// The name written in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
            Outcome::Rejected => "rejected",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// What a caller got back, as `result.status` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultStatus {
    /// A result.
    Ok,
    /// A JSON-RPC error.
    Error,
    /// A result with `isError`.
    ToolError,
    /// A 2026-07-28 `input_required` result (MRTR).
    InputRequired,
}

impl ResultStatus {
    /// The name written in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Ok => "ok",
            ResultStatus::Error => "error",
            ResultStatus::ToolError => "tool_error",
            ResultStatus::InputRequired => "input_required",
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened (RFC 3339, UTC, microseconds).
    pub time: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// How it ended.
    pub outcome: Outcome,
    /// The gateway's request id (`x-request-id`), also in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<PrincipalRecord>,
    /// With what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientRecord>,
    /// The virtual server (endpoint) called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_server: Option<String>,
    /// The backend server that served it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The JSON-RPC method (or the HTTP method for requests that were not JSON-RPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The tool, prompt or resource used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRecord>,
    /// The arguments, recorded per the server's `audit.arguments` mode (redacted by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// Size and digest of the arguments when they are hashed or too large to record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_digest: Option<ArgumentsDigest>,
    /// Bytes of the request body (the JSON-RPC message as received).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
    /// What the caller got back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultRecord>,
    /// Time from the request's arrival to its response, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// The policy decision, when policies decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRecord>,
    /// W3C trace id of the request's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// A digest of the handshake-era session id (the id itself is a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// How many identical events this line stands for (coalesced failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Why (refusals, rejections, changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Type-specific details (versions of a change, the previous journal, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    /// The strings that were longer than `audit.max_field_bytes` and were cut (they end with
    /// `…`), by field path (`method`, `client.name`, `principal.groups[2]`, `detail.tool`):
    /// the original's length and SHA-256. Set by the journal as it writes the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<BTreeMap<String, FieldCut>>,
}

impl AuditEvent {
    /// An event of `kind` with `outcome`, stamped now, and nothing else.
    pub fn new(kind: EventKind, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            time: now_rfc3339(),
            kind,
            outcome,
            request_id: None,
            principal: None,
            client: None,
            virtual_server: None,
            server: None,
            method: None,
            target: None,
            arguments: None,
            arguments_digest: None,
            request_bytes: None,
            result: None,
            latency_us: None,
            policy: None,
            trace_id: None,
            session: None,
            count: None,
            reason: None,
            detail: None,
            truncated: None,
        }
    }
}

/// The current time as the journal writes it.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PrincipalRecord {
    /// `user`, `workload` or `anonymous`.
    pub kind: String,
    /// The subject (`sub`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// The token's issuer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// E-mail, when the token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Tenant, when mapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Groups from the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The OAuth client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The calling program.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClientRecord {
    /// `clientInfo.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `clientInfo.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The connection's source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// A tool, prompt or resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// `tool`, `prompt` or `resource`.
    pub kind: String,
    /// Its name as the client used it (a URI for resources).
    pub name: String,
    /// What a tool does, as policies see it: `read`, `write`, `delete` or `execute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// Size and SHA-256 of an argument document (and a prefix, when it was too large).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgumentsDigest {
    /// Bytes of the JSON document.
    pub bytes: u64,
    /// SHA-256 of the JSON document as received, hex.
    pub sha256: String,
    /// The start of the (redacted) document, when it exceeded the recording limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// What the caller got back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// `ok`, `error`, `tool_error` (a result with `isError`) or `input_required`.
    pub status: String,
    /// The JSON-RPC error code, for errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// The error message, for errors (cut to `audit.max_field_bytes` like every recorded
    /// string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Bytes of the response.
    pub bytes: u64,
    /// The HTTP status, for responses that were not JSON-RPC results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

/// A policy decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// `allow` or `deny`.
    pub decision: String,
    /// The policies that decided (ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// The policy set's version (content hash).
    pub version: String,
    /// The engine (`cedar`, `rego`, `http`).
    pub engine: String,
    /// The deciding policy's `@reason`, or why evaluation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Obligations attached to the decision (`kind:target`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<String>,
}
