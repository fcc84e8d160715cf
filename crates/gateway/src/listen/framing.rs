//! Follows HTTP/1 message framing in the bytes a connection reads, to learn what hyper does
//! not tell: how many bytes a chunked body declares in its chunk-size lines. A body whose
//! chunks declare more than the limit (`FFFFFFFFFFFFFFFF` with one byte behind it) can then
//! be refused at once instead of after its bytes arrive, which may be never.
//!
//! It only observes: bytes pass through unchanged, and on anything it does not follow
//! (HTTP/2, an upgrade, a malformed head, an oversized head) it stops for the connection,
//! leaving the byte count and the body timeout as the bounds.

/// Longest request head followed; longer heads stop the observer.
const MAX_HEAD: usize = 64 * 1024;
/// Most header lines parsed (hyper's default).
const MAX_HEADERS: usize = 100;

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping this many body bytes of a `Content-Length` body.
    Length(u64),
    /// In a chunk-size line: the size so far, and whether extensions started.
    ChunkSize { size: u64, ext: bool },
    /// Skipping this many bytes of chunk data.
    ChunkData(u64),
    /// Expecting the CR LF after chunk data; true once the CR was seen.
    ChunkEnd(bool),
    /// In the trailer section; true while the current line is empty so far.
    Trailers(bool),
    /// Not following this connection.
    Off,
}

/// What the observer reports: the declared size (a lower bound while a chunk-size line is
/// still arriving) of the chunked body of the `message`-th request on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Declared {
    pub(crate) message: u64,
    pub(crate) bytes: u64,
}

/// The framing observer of one connection.
#[derive(Debug)]
pub(crate) struct Framing {
    state: State,
    message: u64,
    declared: u64,
}

impl Framing {
    pub(crate) fn new() -> Framing {
        Framing {
            state: State::Head(Vec::new()),
            message: 0,
            declared: 0,
        }
    }

    /// Follows `bytes`; returns the latest declared size of a chunked body, if it grew.
    pub(crate) fn read(&mut self, mut bytes: &[u8]) -> Option<Declared> {
        let mut report = None;
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return report,
                State::Head(head) => {
                    let old = head.len();
                    head.extend_from_slice(bytes);
                    let from = old.saturating_sub(3);
                    let Some(end) = find(&head[from..], b"\r\n\r\n").map(|i| from + i + 4) else {
                        if head.len() > MAX_HEAD {
                            self.state = State::Off;
                        }
                        return report;
                    };
                    let consumed = end - old;
                    let head = std::mem::take(head);
                    self.state = self.start(&head[..end]);
                    bytes = &bytes[consumed..];
                }
                State::Length(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkData(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.state = State::ChunkEnd(false);
                    }
                }
                State::ChunkSize { size, ext } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match (b, *ext) {
                        (b'\n', _) => {
                            self.state = if *size == 0 {
                                State::Trailers(true)
                            } else {
                                self.declared = self.declared.saturating_add(*size);
                                State::ChunkData(*size)
                            };
                        }
                        (_, true) | (b';' | b'\r' | b' ' | b'\t', _) => *ext = true,
                        (_, false) => match (b as char).to_digit(16) {
                            Some(d) => {
                                *size = size.saturating_mul(16).saturating_add(u64::from(d));
                                report = Some(Declared {
                                    message: self.message,
                                    bytes: self.declared.saturating_add(*size),
                                });
                            }
                            None => self.state = State::Off,
                        },
                    }
                }
                State::ChunkEnd(cr) => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match (b, *cr) {
                        (b'\r', false) => State::ChunkEnd(true),
                        (b'\n', true) => State::ChunkSize {
                            size: 0,
                            ext: false,
                        },
                        _ => State::Off,
                    };
                }
                State::Trailers(empty) => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match b {
                        b'\n' if *empty => self.state = State::Head(Vec::new()),
                        b'\n' => *empty = true,
                        b'\r' => {}
                        _ => *empty = false,
                    }
                }
            }
        }
        report
    }

    /// The state after a complete request head: how its body is framed.
    fn start(&mut self, head: &[u8]) -> State {
        // Servers ignore empty lines before a request line (RFC 9112, 2.2); so does hyper.
        let start = head
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .unwrap_or(head.len());
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&head[start..]), Ok(httparse::Status::Complete(_))) {
            return State::Off;
        }
        if req.method == Some("CONNECT") {
            return State::Off;
        }
        self.message += 1;
        let mut chunked = None;
        let mut length = None;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("upgrade") {
                return State::Off;
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let Some(n) = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                else {
                    return State::Off;
                };
                if length.is_some_and(|l| l != n) {
                    return State::Off;
                }
                length = Some(n);
            }
        }
        match (chunked, length) {
            (Some(true), _) => {
                self.declared = 0;
                State::ChunkSize {
                    size: 0,
                    ext: false,
                }
            }
            (Some(false), _) => State::Off,
            (None, Some(n)) if n > 0 => State::Length(n),
            (None, _) => State::Head(Vec::new()),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNKED: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn reports_an_absurd_chunk_size_while_it_arrives() {
        let mut f = Framing::new();
        assert_eq!(f.read(CHUNKED), None);
        let got = f.read(b"FFFFFFFF").unwrap();
        assert_eq!(
            got,
            Declared {
                message: 1,
                bytes: 0xFFFF_FFFF
            }
        );
        let got = f.read(b"FFFFFFFFFFFF\r\nx").unwrap();
        assert_eq!(got.bytes, u64::MAX, "saturates");
    }

    #[test]
    fn follows_pipelined_messages_of_every_framing_byte_by_byte() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        stream
            .extend_from_slice(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n1\r\n23");
        stream.extend_from_slice(CHUNKED);
        stream
            .extend_from_slice(b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n");
        stream.extend_from_slice(CHUNKED);
        stream.extend_from_slice(b"7\r\n");
        let mut f = Framing::new();
        let mut reports = Vec::new();
        for b in &stream {
            reports.extend(f.read(std::slice::from_ref(b)));
        }
        assert_eq!(
            reports,
            vec![
                Declared {
                    message: 3,
                    bytes: 3
                },
                Declared {
                    message: 3,
                    bytes: 3 + 1
                },
                Declared {
                    message: 3,
                    bytes: 3 + 0x10
                },
                Declared {
                    message: 3,
                    bytes: 3 + 0x10
                },
                Declared {
                    message: 4,
                    bytes: 7
                },
            ]
        );
        // The same stream in one read ends with the same report.
        let mut f = Framing::new();
        assert_eq!(
            f.read(&stream),
            Some(Declared {
                message: 4,
                bytes: 7
            })
        );
    }

    #[test]
    fn stops_following_what_it_does_not_understand() {
        for stream in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            let mut f = Framing::new();
            f.read(stream);
            assert!(
                matches!(f.state, State::Off),
                "{:?}",
                String::from_utf8_lossy(stream)
            );
            assert_eq!(
                f.read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFF"),
                None
            );
        }
    }
}
