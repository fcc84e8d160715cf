//! Server-Sent Events: an encoder for the gateway's streams and an incremental decoder for
//! backends' streams.

use bytes::{Bytes, BytesMut};

/// One SSE event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field (the resumption cursor).
    pub id: Option<String>,
    /// The `event:` field; `None` means the default `message`.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: String,
    /// The `retry:` field in milliseconds.
    pub retry: Option<u64>,
}

/// Encodes an event. `data` must not contain a bare carriage return; JSON never does.
pub fn encode(id: Option<&str>, event: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// A keep-alive comment line.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

/// Incremental SSE parser: feed bytes as they arrive, take complete events out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Bytes of `buf` already known to hold no line end, so a long line is scanned once.
    scanned: usize,
    current: Event,
    has_data: bool,
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held for an event not yet complete (callers bound this against hostile peers).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.current.data.len()
    }

    /// Feeds a chunk and returns every event it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(pos) = self.buf[self.scanned..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
            .map(|p| p + self.scanned)
        {
            // A CR at the very end may be the first half of CRLF: wait for more bytes.
            if self.buf[pos] == b'\r' && pos + 1 == self.buf.len() {
                self.scanned = pos;
                return events;
            }
            self.scanned = 0;
            let line = self.buf.split_to(pos);
            let skip = if self.buf[0] == b'\r' && self.buf.get(1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let _ = self.buf.split_to(skip);
            if let Some(ev) = self.line(&line) {
                events.push(ev);
            }
        }
        self.scanned = self.buf.len();
        events
    }

    fn line(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            if !self.has_data && self.current.id.is_none() && self.current.retry.is_none() {
                self.current = Event::default();
                return None;
            }
            self.has_data = false;
            return Some(std::mem::take(&mut self.current));
        }
        if line[0] == b':' {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "id" => self.current.id = Some(value.to_string()),
            "event" => self.current.event = Some(value.to_string()),
            "retry" => self.current.retry = value.parse().ok(),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_split_chunks_and_crlf() {
        let mut d = Decoder::new();
        assert!(d.feed(b"event: endpoint\r\ndata: /mess").is_empty());
        let evs = d.feed(b"age?x=1\r\n\r\n: ping\n\nid: 7\ndata: {\"a\":1}\ndata: 2\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event.as_deref(), Some("endpoint"));
        assert_eq!(evs[0].data, "/message?x=1");
        assert_eq!(evs[1].id.as_deref(), Some("7"));
        assert_eq!(evs[1].data, "{\"a\":1}\n2");
    }

    #[test]
    fn long_line_in_small_chunks_is_assembled() {
        let mut d = Decoder::new();
        assert!(d.feed(b"data: ").is_empty());
        for _ in 0..1000 {
            assert!(d.feed(b"xxxxxxxxxx").is_empty());
        }
        assert!(d.buffered() >= 10_000);
        let evs = d.feed(b"\r\n\r\n");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data.len(), 10_000);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn encode_round_trips() {
        let bytes = encode(Some("s1-4"), None, "{\"x\":1}");
        let evs = Decoder::new().feed(&bytes);
        assert_eq!(
            evs,
            vec![Event {
                id: Some("s1-4".into()),
                event: None,
                data: "{\"x\":1}".into(),
                retry: None
            }]
        );
    }

    #[test]
    fn priming_event_with_empty_data_is_kept() {
        let evs = Decoder::new().feed(b"id: 1\nretry: 500\ndata:\n\n");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].retry, Some(500));
        assert_eq!(evs[0].data, "");
    }
}
