//! W3C Trace Context: reading `traceparent`/`tracestate` from a request and writing them
//! into the requests the gateway sends to backends.
//!
//! MCP carries the context in `params._meta` under the unprefixed keys `traceparent`,
//! `tracestate` (SEP-414, part of the 2026-07-28 specification); HTTP clients also send
//! the headers of the same names. `_meta` wins because it travels with the message through
//! any number of HTTP hops and over stdio.

use std::str::FromStr;

use http::HeaderMap;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use serde_json::{Map, Value};

/// Key of the trace parent, in `_meta` and as an HTTP header.
pub const TRACEPARENT: &str = "traceparent";
/// Key of the vendor trace state, in `_meta` and as an HTTP header.
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` kept; the W3C recommendation is that a vendor propagates at least
/// 512 characters, and anything longer is more likely abuse than state.
const MAX_TRACESTATE: usize = 512;

/// One position in a distributed trace: a trace id, the id of a span in it, the sampling
/// flag and the vendors' `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    tracestate: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` value (and an optional `tracestate`). Returns `None` for
    /// anything the W3C rules say to ignore: version `ff` or not two lowercase hex digits,
    /// a wrong length, uppercase or non-hex ids, all-zero trace or parent ids. A future
    /// version is read by its first four fields. An invalid `tracestate` is dropped, the
    /// `traceparent` kept.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let tp = traceparent.trim_matches([' ', '\t']).as_bytes();
        if tp.len() < 55 {
            return None;
        }
        let version = hex_byte(&tp[0..2])?;
        if version == 0xff || tp[2] != b'-' || tp[35] != b'-' || tp[52] != b'-' {
            return None;
        }
        // Version 00 is exactly 55 characters; later versions may append `-…` fields.
        if (version == 0 && tp.len() != 55) || (tp.len() > 55 && tp[55] != b'-') {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&tp[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, b) in span_id.iter_mut().enumerate() {
            *b = hex_byte(&tp[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&tp[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let tracestate = tracestate
            .map(|s| s.trim_matches([' ', '\t']))
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .filter(|s| TraceState::from_str(s).is_ok())
            .map(str::to_string);
        Some(TraceContext {
            trace_id,
            span_id,
            // Version 00 defines only the sampled bit; the others are reserved.
            flags: if version == 0 { flags & 0x01 } else { flags },
            tracestate,
        })
    }

    /// The trace id as 32 lowercase hex digits (what the audit journal records).
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// Whether the caller sampled (records) this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 1
    }

    /// The `tracestate`, if one came with it.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The `traceparent` value, version 00.
    pub fn traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.span_id);
        s.push_str(if self.sampled() { "-01" } else { "-00" });
        s
    }

    /// The context as an OpenTelemetry span context (`remote` for one from a client).
    pub(crate) fn to_span_context(&self, remote: bool) -> SpanContext {
        let state = self
            .tracestate
            .as_deref()
            .and_then(|s| TraceState::from_str(s).ok())
            .unwrap_or_default();
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            remote,
            state,
        )
    }

    /// The context of an OpenTelemetry span, if it is valid.
    pub(crate) fn from_span_context(sc: &SpanContext) -> Option<TraceContext> {
        if !sc.is_valid() {
            return None;
        }
        let state = sc.trace_state().header();
        Some(TraceContext {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            flags: sc.trace_flags().to_u8() & 0x01,
            tracestate: (!state.is_empty()).then_some(state),
        })
    }
}

/// The trace context of an incoming request: `params._meta` first, then the HTTP headers.
/// A source whose `traceparent` is missing or invalid is skipped; `tracestate` is taken from
/// the same source as the `traceparent` it belongs to.
pub fn extract(meta: Option<&Map<String, Value>>, headers: &HeaderMap) -> Option<TraceContext> {
    meta.and_then(from_meta).or_else(|| from_headers(headers))
}

/// The trace context in a request's `params._meta`, if valid.
pub fn from_meta(meta: &Map<String, Value>) -> Option<TraceContext> {
    let tp = meta.get(TRACEPARENT)?.as_str()?;
    TraceContext::parse(tp, meta.get(TRACESTATE).and_then(Value::as_str))
}

/// The trace context of the HTTP headers, if valid (the transport's context, which the
/// server span links to when `_meta` carried a different one).
pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let tp = parents.next()?.to_str().ok()?;
    if parents.next().is_some() {
        // Two traceparent headers: the W3C rules say the request has no trace context.
        return None;
    }
    // Several tracestate headers are one list, in order.
    let mut state = String::new();
    for value in headers.get_all(TRACESTATE) {
        let Ok(v) = value.to_str() else { continue };
        if !state.is_empty() {
            state.push(',');
        }
        state.push_str(v);
    }
    TraceContext::parse(tp, Some(&state))
}

/// Writes `ctx` into a request's `params._meta` as `traceparent` (and `tracestate`),
/// replacing any trace context already there.
pub fn inject_meta(meta: &mut Map<String, Value>, ctx: &TraceContext) {
    meta.insert(TRACEPARENT.into(), ctx.traceparent().into());
    match ctx.tracestate() {
        Some(state) => meta.insert(TRACESTATE.into(), state.into()),
        None => meta.remove(TRACESTATE),
    };
}

/// Writes `ctx` as `traceparent` (and `tracestate`) headers, replacing existing ones.
pub fn inject_headers(headers: &mut HeaderMap, ctx: &TraceContext) {
    if let Ok(v) = ctx.traceparent().parse() {
        headers.insert(TRACEPARENT, v);
    }
    match ctx.tracestate().and_then(|s| s.parse().ok()) {
        Some(v) => {
            headers.insert(TRACESTATE, v);
        }
        None => {
            headers.remove(TRACESTATE);
        }
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    // Only lowercase: W3C says uppercase ids are invalid, and accepting them would make
    // two spellings of one trace id.
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nibble(pair[0])? << 4 | nibble(pair[1])?)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Lowercase hex without the formatting machinery: this runs for every propagated call.
fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_version_00() {
        let ctx = TraceContext::parse(TP, Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")).unwrap();
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id(), "00f067aa0ba902b7");
        assert!(ctx.sampled());
        assert_eq!(ctx.traceparent(), TP);
        assert_eq!(
            ctx.tracestate(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        let unsampled = TraceContext::parse(&TP.replace("-01", "-00"), None).unwrap();
        assert!(!unsampled.sampled());
        // Reserved flag bits of version 00 are not propagated.
        let odd = TraceContext::parse(&TP.replace("-01", "-ff"), None).unwrap();
        assert_eq!(odd.traceparent(), TP);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        let bad = [
            "",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // non-hex version
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01", // long trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  // short parent id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  // short flags
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // 00 has 4 fields
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // future, no dash
        ];
        for tp in bad {
            assert_eq!(TraceContext::parse(tp, None), None, "{tp:?}");
        }
    }

    #[test]
    fn future_versions_keep_the_first_four_fields() {
        let ctx = TraceContext::parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
            None,
        )
        .unwrap();
        assert_eq!(ctx.traceparent(), TP);
    }

    #[test]
    fn invalid_tracestate_is_dropped() {
        let ctx = TraceContext::parse(TP, Some("not a list member")).unwrap();
        assert_eq!(ctx.tracestate(), None);
        let ctx = TraceContext::parse(TP, Some(&format!("k={}", "v".repeat(600)))).unwrap();
        assert_eq!(ctx.tracestate(), None);
        let ctx = TraceContext::parse(TP, Some("")).unwrap();
        assert_eq!(ctx.tracestate(), None);
    }

    #[test]
    fn meta_wins_over_headers_and_bad_meta_falls_back() {
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, other.parse().unwrap());
        headers.insert(TRACESTATE, "h=1".parse().unwrap());
        let meta = json!({"traceparent": TP, "tracestate": "m=1"});
        let ctx = extract(meta.as_object(), &headers).unwrap();
        assert_eq!(
            (ctx.traceparent().as_str(), ctx.tracestate()),
            (TP, Some("m=1"))
        );

        let bad = json!({"traceparent": "garbage", "tracestate": "m=1"});
        let ctx = extract(bad.as_object(), &headers).unwrap();
        assert_eq!(
            (ctx.traceparent().as_str(), ctx.tracestate()),
            (other, Some("h=1"))
        );

        let not_string = json!({"traceparent": 5});
        assert_eq!(
            extract(not_string.as_object(), &headers)
                .unwrap()
                .traceparent(),
            other
        );
        assert_eq!(extract(None, &HeaderMap::new()), None);
    }

    #[test]
    fn header_rules() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, TP.parse().unwrap());
        headers.append(TRACESTATE, "a=1".parse().unwrap());
        headers.append(TRACESTATE, "b=2".parse().unwrap());
        assert_eq!(
            extract(None, &headers).unwrap().tracestate(),
            Some("a=1,b=2")
        );
        headers.append(TRACEPARENT, TP.parse().unwrap());
        assert_eq!(extract(None, &headers), None, "two traceparent headers");
    }

    #[test]
    fn inject_round_trips() {
        let ctx = TraceContext::parse(TP, Some("a=1")).unwrap();
        let mut meta = Map::new();
        meta.insert("progressToken".into(), json!(7));
        meta.insert(TRACESTATE.into(), json!("stale=1"));
        inject_meta(&mut meta, &ctx);
        assert_eq!(meta["traceparent"], TP);
        assert_eq!(meta["tracestate"], "a=1");
        assert_eq!(meta["progressToken"], 7);
        let mut headers = HeaderMap::new();
        inject_headers(&mut headers, &ctx);
        assert_eq!(extract(None, &headers), Some(ctx.clone()));
        let bare = TraceContext::parse(TP, None).unwrap();
        inject_meta(&mut meta, &bare);
        inject_headers(&mut headers, &bare);
        assert!(!meta.contains_key(TRACESTATE));
        assert!(!headers.contains_key(TRACESTATE));
    }

    #[test]
    fn span_context_round_trip() {
        let ctx = TraceContext::parse(TP, Some("a=1")).unwrap();
        let sc = ctx.to_span_context(true);
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(TraceContext::from_span_context(&sc), Some(ctx));
        assert_eq!(
            TraceContext::from_span_context(&SpanContext::empty_context()),
            None
        );
    }
}
