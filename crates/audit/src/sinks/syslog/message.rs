//! RFC 5424 messages: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG`.

use gatehouse_config::{EventFormat, SYSLOG_FACILITIES};

use crate::event::{EventKind, Outcome};
use crate::format::{render, user_name};
use crate::reader::StoredEvent;

/// The structured-data element's id. 32473 is IANA's example Private Enterprise Number
/// (RFC 5612, reserved for documentation); a deployment that owns a PEN can search on this
/// SD-ID all the same, since the names inside are Gatehouse's own.
pub const SD_ID: &str = "gatehouse@32473";

/// UTF-8 byte order mark: RFC 5424 §6.4 marks a UTF-8 MSG with it.
const BOM: &str = "\u{feff}";

/// How messages are built for one sink.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Facility code (0–23).
    pub facility: u8,
    /// HOSTNAME field.
    pub hostname: String,
    /// How MSG is laid out.
    pub format: EventFormat,
}

impl Layout {
    /// The facility code of `name` (`None` for a name that is not one).
    pub fn facility(name: &str) -> Option<u8> {
        SYSLOG_FACILITIES
            .iter()
            .position(|f| *f == name)
            .map(|i| i as u8)
    }

    /// The RFC 5424 message of one event (no framing).
    pub fn message(&self, s: &StoredEvent, raw: &[u8]) -> String {
        let e = &s.event;
        let pri = u16::from(self.facility) * 8 + u16::from(severity(s));
        let mut m = format!(
            "<{pri}>1 {} {} gatehouse - {} [{SD_ID}",
            e.time,
            self.hostname,
            e.kind.as_str()
        );
        let mut param = |name: &str, value: Option<&str>| {
            if let Some(v) = value {
                m.push(' ');
                m.push_str(name);
                m.push_str("=\"");
                escape_into(&mut m, v);
                m.push('"');
            }
        };
        param("id", Some(&s.id));
        param("outcome", Some(e.outcome.as_str()));
        param("user", user_name(e));
        param("tool", e.target.as_ref().map(|t| t.name.as_str()));
        param("server", e.server.as_deref());
        param("vs", e.virtual_server.as_deref());
        param("method", e.method.as_deref());
        param("trace", e.trace_id.as_deref());
        m.push_str("] ");
        m.push_str(BOM);
        m.push_str(&render(self.format, s, raw));
        m
    }
}

/// Syslog severity of an event: 6 informational for what went as it should, 5 notice for
/// malformed requests, 4 warning for refusals and anomalies, 3 error for failures.
pub fn severity(s: &StoredEvent) -> u8 {
    if s.event.kind == EventKind::Anomaly {
        return 4;
    }
    match s.event.outcome {
        Outcome::Ok | Outcome::Cancelled => 6,
        Outcome::Rejected => 5,
        Outcome::Denied | Outcome::Forbidden | Outcome::Unauthenticated => 4,
        Outcome::Error => 3,
    }
}

/// Appends `v` as a PARAM-VALUE: `"`, `\` and `]` are escaped (RFC 5424 §6.3.3).
pub fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// This machine's name for HOSTNAME (printable US-ASCII, at most 255), `-` when unknown.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length, and gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() { "-".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_facilities() {
        let mut s = String::new();
        escape_into(&mut s, r#"a"b\c]d"#);
        assert_eq!(s, r#"a\"b\\c\]d"#);
        assert_eq!(Layout::facility("local0"), Some(16));
        assert_eq!(Layout::facility("authpriv"), Some(10));
        assert_eq!(Layout::facility("nope"), None);
    }
}
