//! A typed view of one journal line: the fields the index, the usage rollups and the anomaly
//! detectors read, parsed once per line for all three.
//!
//! It sits below those three modules, which all read it and none of which reads another's
//! types: the index drives the rollups and the detectors by handing each line's view to them.
//! The view is deliberately partial (no arguments, no policy) so parsing stays cheap, and its
//! closed vocabularies — the event type, the outcome, the result's status — are typed
//! ([`Known`]) rather than compared as text; a value this build does not know (a line written
//! by a newer one) is kept as text, so it is still indexed.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::event::{EventKind, Outcome, ResultStatus};

/// A closed vocabulary written into journal lines as text.
pub trait Code: Copy + PartialEq + Sized + 'static {
    /// Every value, to look text up.
    const ALL: &'static [Self];
    /// The text written in the journal.
    fn code(self) -> &'static str;
    /// The value `text` names, if any.
    fn from_code(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.code() == text)
    }
}

impl Code for EventKind {
    const ALL: &'static [Self] = &[
        EventKind::Request,
        EventKind::AuthFailure,
        EventKind::SessionStart,
        EventKind::SessionEnd,
        EventKind::ConfigChange,
        EventKind::PolicyChange,
        EventKind::JournalStart,
        EventKind::Anomaly,
        EventKind::Retention,
    ];
    fn code(self) -> &'static str {
        self.as_str()
    }
}

impl Code for Outcome {
    const ALL: &'static [Self] = &[
        Outcome::Ok,
        Outcome::Error,
        Outcome::Denied,
        Outcome::Rejected,
        Outcome::Unauthenticated,
        Outcome::Forbidden,
        Outcome::Cancelled,
    ];
    fn code(self) -> &'static str {
        self.as_str()
    }
}

impl Code for ResultStatus {
    const ALL: &'static [Self] = &[
        ResultStatus::Ok,
        ResultStatus::Error,
        ResultStatus::ToolError,
        ResultStatus::InputRequired,
    ];
    fn code(self) -> &'static str {
        self.as_str()
    }
}

/// A value of a closed vocabulary as a line holds it: one this build knows, or other text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known<T> {
    /// A value this build knows.
    Is(T),
    /// Text this build does not know (written by another version).
    Other(String),
}

impl<T: Code> Known<T> {
    /// Whether it is `value`.
    pub fn is(&self, value: T) -> bool {
        matches!(self, Known::Is(v) if *v == value)
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        match self {
            Known::Is(v) => v.code(),
            Known::Other(text) => text,
        }
    }
}

impl<'de, T: Code> Deserialize<'de> for Known<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text<T>(PhantomData<T>);
        impl<T: Code> Visitor<'_> for Text<T> {
            type Value = Known<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Known<T>, E> {
                Ok(T::from_code(text).map_or_else(|| Known::Other(text.to_string()), Known::Is))
            }
        }
        d.deserialize_str(Text(PhantomData))
    }
}

/// The fields of a journal line the index, the usage rollups and the anomaly detectors read.
#[derive(Debug, Deserialize)]
pub struct LineView {
    /// The chain (gateway process) that wrote it.
    pub instance: String,
    /// Its number in the chain.
    pub seq: i64,
    /// When it happened (RFC 3339).
    pub time: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: Known<EventKind>,
    /// How it ended.
    pub outcome: Known<Outcome>,
    /// Who called.
    #[serde(default)]
    pub principal: Option<PrincipalView>,
    /// From where.
    #[serde(default)]
    pub client: Option<ClientView>,
    /// The virtual server.
    #[serde(default)]
    pub virtual_server: Option<String>,
    /// The backend server.
    #[serde(default)]
    pub server: Option<String>,
    /// The JSON-RPC method.
    #[serde(default)]
    pub method: Option<String>,
    /// The tool, prompt or resource.
    #[serde(default)]
    pub target: Option<TargetView>,
    /// Microseconds from request to response.
    #[serde(default)]
    pub latency_us: Option<i64>,
    /// Bytes of the request.
    #[serde(default)]
    pub request_bytes: Option<u64>,
    /// What the caller got back.
    #[serde(default)]
    pub result: Option<ResultView>,
}

/// The caller, as far as the index, rollups and detectors read it.
#[derive(Debug, Deserialize)]
pub struct PrincipalView {
    /// `user`, `workload` or `anonymous`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// The token's issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The connection.
#[derive(Debug, Deserialize)]
pub struct ClientView {
    /// The source address.
    #[serde(default)]
    pub ip: Option<String>,
}

/// The item used.
#[derive(Debug, Deserialize)]
pub struct TargetView {
    /// Its name (a URI for resources).
    pub name: String,
    /// `read`, `write`, `delete` or `execute`.
    #[serde(default)]
    pub operation: Option<String>,
}

/// The result.
#[derive(Debug, Deserialize)]
pub struct ResultView {
    /// `ok`, `error`, `tool_error` or `input_required`.
    pub status: Known<ResultStatus>,
    /// Bytes of the response.
    #[serde(default)]
    pub bytes: u64,
}

impl LineView {
    /// The view of one line; an error for a line that is not a journal event.
    pub fn parse(line: &[u8]) -> Result<LineView, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// Whether it is an MCP request (what rollups count and detectors judge).
    pub fn is_request(&self) -> bool {
        self.kind.is(EventKind::Request)
    }

    /// Its time in unix microseconds (0 for a time the journal would never write).
    pub fn time_us(&self) -> i64 {
        unix_micros(&self.time).unwrap_or(0)
    }
}

/// Unix microseconds of an RFC 3339 time.
pub fn unix_micros(time: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(time).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

/// Start of the hour of `time_us` (unix microseconds), in unix seconds.
pub fn hour_of(time_us: i64) -> i64 {
    time_us.div_euclid(3_600_000_000) * 3600
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_are_typed_and_unknown_ones_kept_as_text() {
        let line = br#"{"instance":"i","seq":3,"time":"2026-01-01T00:00:00Z","type":"mcp.request",
            "outcome":"denied","result":{"status":"tool_error","bytes":9},"extra":{"x":1}}"#;
        let v = LineView::parse(line).unwrap();
        assert!(v.is_request());
        assert!(v.outcome.is(Outcome::Denied));
        assert!(
            v.result
                .as_ref()
                .unwrap()
                .status
                .is(ResultStatus::ToolError)
        );
        assert_eq!(v.time_us(), 1_767_225_600_000_000);
        let newer = br#"{"instance":"i","seq":4,"time":"2026-01-01T00:00:00Z","type":"mcp.future",
            "outcome":"vanished"}"#;
        let v = LineView::parse(newer).unwrap();
        assert!(!v.is_request());
        assert_eq!(v.kind, Known::Other("mcp.future".into()));
        assert_eq!(v.outcome.as_str(), "vanished");
        assert!(LineView::parse(br#"{"seq":"x"}"#).is_err());
    }

    #[test]
    fn every_code_reads_back() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_code(k.code()), Some(*k));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_code(o.code()), Some(*o));
        }
        for s in ResultStatus::ALL {
            assert_eq!(ResultStatus::from_code(s.code()), Some(*s));
        }
    }
}
