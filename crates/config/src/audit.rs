//! The `audit:` block (the tamper-evident journal) and the per-server recording of arguments.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::audit_sinks::{AnomalyConfig, RetentionConfig, SinkConfig};
use crate::duration::DurationSpec;

/// Keys whose values are replaced by `[redacted]` in recorded arguments, at any depth and in
/// any letter case; `audit.secret_keys` adds to them.
pub const DEFAULT_SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "access_token",
    "refresh_token",
    "client_secret",
    "private_key",
    "cookie",
];

/// The audit journal. On by default (even without this block): every request, denial,
/// authentication failure, session and configuration change is written to
/// `<data-dir>/audit/` as hash-chained JSON Lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `false` turns the journal off (a startup warning says so). Default `true`.
    pub enabled: bool,
    /// Where segment files go (default `<data-dir>/audit`); relative to the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// When an event counts as written, and so what a crash or a power loss can lose.
    pub durability: Durability,
    /// What happens when the journal cannot be written (disk full, I/O error).
    pub on_failure: OnFailure,
    /// Ed25519 private key (PKCS#8 PEM or 32 raw bytes base64) that signs checkpoints;
    /// relative to the config file. Default: generated once into
    /// `<data-dir>/keys/audit-signing.key`. Keep it where the journal's writers cannot reach
    /// for the strongest guarantee (see docs/audit.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// Start a new segment file after this many bytes (default 64 MiB).
    pub segment_bytes: u64,
    /// How arguments of tool calls, prompts and completions are recorded by default
    /// (`servers[].audit` overrides per server).
    pub arguments: ArgumentsMode,
    /// Largest recorded argument document in bytes (default 4096); larger ones are recorded
    /// as their size, SHA-256 and a prefix.
    pub max_argument_bytes: u32,
    /// Longest string recorded in an event, in the index and in log lines (default 1024
    /// bytes): a method name, a resource URI, a client's name. A longer one is cut and
    /// recorded with its original length and SHA-256.
    pub max_field_bytes: u32,
    /// Extra keys (beyond the built-in list: password, token, secret, api_key,
    /// authorization, …) whose values are redacted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_keys: Vec<String>,
    /// Identical failures before authentication (same source, endpoint and reason) within
    /// this interval become one event with a count (default 10s).
    pub coalesce: DurationSpec,
    /// Where the journal is shipped (SIEMs, syslog, files, OTLP logs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkConfig>,
    /// How long segment files are kept, per class of event (default: forever).
    #[serde(skip_serializing_if = "RetentionConfig::is_default")]
    pub retention: RetentionConfig,
    /// The anomaly detectors (on by default).
    #[serde(skip_serializing_if = "AnomalyConfig::is_default")]
    pub anomalies: AnomalyConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            dir: None,
            durability: Durability::Process,
            on_failure: OnFailure::Refuse,
            signing_key: None,
            segment_bytes: 64 * 1024 * 1024,
            arguments: ArgumentsMode::Redacted,
            max_argument_bytes: 4096,
            max_field_bytes: 1024,
            secret_keys: Vec::new(),
            coalesce: DurationSpec::from_secs(10),
            sinks: Vec::new(),
            retention: RetentionConfig::default(),
            anomalies: AnomalyConfig::default(),
        }
    }
}

impl AuditConfig {
    /// True when every setting is the default (kept out of serialized configs).
    pub fn is_default(&self) -> bool {
        self == &AuditConfig::default()
    }
}

/// When an audit event counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Written to the segment file before the response is released, and fsync'd at least
    /// every second: survives a crash of Gatehouse, may lose the last second on power loss.
    #[default]
    Process,
    /// The response also waits for the group-committed fsync: survives power loss.
    Fsync,
}

/// What to do when the journal cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Answer calls with an error rather than serve them unaudited.
    #[default]
    Refuse,
    /// Keep serving and log every event that could not be written.
    Serve,
}

/// How the arguments of a call are recorded in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArgumentsMode {
    /// Not recorded.
    Off,
    /// Only the SHA-256 of the argument document.
    Hashed,
    /// Recorded, with values under secret-looking keys (and `servers[].audit.redact` paths)
    /// replaced by `[redacted]`.
    #[default]
    Redacted,
    /// Recorded as sent (still capped at `max_argument_bytes`).
    Full,
}

impl ArgumentsMode {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            ArgumentsMode::Off => "off",
            ArgumentsMode::Hashed => "hashed",
            ArgumentsMode::Redacted => "redacted",
            ArgumentsMode::Full => "full",
        }
    }
}

/// Per-server audit settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerAudit {
    /// How this server's arguments are recorded (default: `audit.arguments`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<ArgumentsMode>,
    /// JSON paths into the arguments whose values are always redacted, e.g.
    /// `$.fields.description` or `$.items[*].body` (`*` matches any key or index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
}

impl ServerAudit {
    /// True when nothing is set (kept out of serialized configs).
    pub fn is_default(&self) -> bool {
        self == &ServerAudit::default()
    }
}

/// One step of a redaction path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
    /// Any key of an object or any element of an array.
    Any,
}

/// Parses a redaction path such as `$.fields.description`, `$.items[*].body` or `$.a[0]`:
/// `$`, then `.key`, `.*`, `[N]`, `[*]` or `["key"]` steps.
pub fn parse_redact_path(text: &str) -> Result<Vec<PathStep>, String> {
    let rest = text.strip_prefix('$').ok_or_else(|| {
        format!("found {text:?}, expected a path starting with $, such as $.password")
    })?;
    let mut steps = Vec::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '.' => {
                let start = i + 1;
                let mut end = rest.len();
                while let Some(&(j, c)) = chars.peek() {
                    if c == '.' || c == '[' {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                let key = &rest[start..end];
                if key.is_empty() {
                    return Err(format!("found an empty key in {text:?}"));
                }
                steps.push(if key == "*" {
                    PathStep::Any
                } else {
                    PathStep::Key(key.to_string())
                });
            }
            '[' => {
                let close = rest[i..]
                    .find(']')
                    .map(|j| i + j)
                    .ok_or_else(|| format!("found an unclosed [ in {text:?}"))?;
                let inner = &rest[i + 1..close];
                let step = if inner == "*" {
                    PathStep::Any
                } else if let Ok(n) = inner.parse::<usize>() {
                    PathStep::Index(n)
                } else if let Some(key) = inner
                    .strip_prefix('"')
                    .and_then(|k| k.strip_suffix('"'))
                    .or_else(|| inner.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
                {
                    PathStep::Key(key.to_string())
                } else {
                    return Err(format!(
                        "found [{inner}] in {text:?}, expected [N], [*] or [\"key\"]"
                    ));
                };
                steps.push(step);
                while chars.peek().is_some_and(|&(j, _)| j <= close) {
                    chars.next();
                }
            }
            _ => {
                return Err(format!(
                    "found {c:?} at position {} of {text:?}, expected . or [",
                    i + 1
                ));
            }
        }
    }
    if steps.is_empty() {
        return Err(format!(
            "{text:?} names the whole document; use arguments: hashed or off instead"
        ));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redaction_paths() {
        use PathStep::*;
        assert_eq!(
            parse_redact_path("$.fields.description").unwrap(),
            vec![Key("fields".into()), Key("description".into())]
        );
        assert_eq!(
            parse_redact_path("$.items[*].body").unwrap(),
            vec![Key("items".into()), Any, Key("body".into())]
        );
        assert_eq!(
            parse_redact_path("$[\"a.b\"][2].*").unwrap(),
            vec![Key("a.b".into()), Index(2), Any]
        );
        for bad in ["password", "$", "$.", "$.a[", "$.a[x]", "$a", "$.a..b"] {
            assert!(parse_redact_path(bad).is_err(), "{bad} should be refused");
        }
    }
}
