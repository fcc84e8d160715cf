//! The host name a connection's first bytes carry: the TLS ClientHello's SNI or the HTTP
//! request's `Host`. A connection to an allowed name that announces another host (domain
//! fronting, another virtual host behind the same address) is refused.

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Peeked {
    /// Not enough bytes yet to tell.
    More,
    /// TLS or HTTP naming this host (lower case, without a port); `None`: it names none.
    Names(Option<String>),
    /// Neither TLS nor HTTP: nothing to compare.
    Other,
}

/// The most bytes read before deciding; a ClientHello fits in one 16 KiB record.
pub(crate) const MAX_PEEK: usize = 16 * 1024 + 5;

/// Reads `buf`, the connection's first bytes.
pub(crate) fn named_host(buf: &[u8]) -> Peeked {
    match buf.first() {
        None => Peeked::More,
        Some(0x16) => tls_sni(buf),
        Some(b'A'..=b'Z') => http_host(buf),
        Some(_) => Peeked::Other,
    }
}

fn tls_sni(buf: &[u8]) -> Peeked {
    if buf.len() < 5 {
        return Peeked::More;
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    let Some(record) = buf.get(5..5 + len) else {
        return if buf.len() >= MAX_PEEK {
            Peeked::Names(None)
        } else {
            Peeked::More
        };
    };
    Peeked::Names(client_hello_sni(record))
}

/// The `server_name` of a ClientHello (RFC 8446 4.1.2, RFC 6066 3).
fn client_hello_sni(h: &[u8]) -> Option<String> {
    let mut r = Reader(h);
    if r.u8()? != 1 {
        return None;
    }
    r.skip(3 + 2 + 32)?; // length, legacy_version, random
    let n = usize::from(r.u8()?);
    r.skip(n)?; // session id
    let n = usize::from(r.u16()?);
    r.skip(n)?; // cipher suites
    let n = usize::from(r.u8()?);
    r.skip(n)?; // compression methods
    let n = usize::from(r.u16()?);
    let mut ext = Reader(r.take(n)?);
    while let (Some(kind), Some(len)) = (ext.u16(), ext.u16()) {
        let data = ext.take(usize::from(len))?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(data);
        let n = usize::from(list.u16()?);
        let mut names = Reader(list.take(n)?);
        while let Some(name_type) = names.u8() {
            let n = usize::from(names.u16()?);
            let name = names.take(n)?;
            if name_type == 0 {
                return std::str::from_utf8(name)
                    .ok()
                    .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

fn http_host(buf: &[u8]) -> Peeked {
    // A request line starts with an upper-case method and a space.
    let method = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match buf.get(method) {
        None if method < 16 => return Peeked::More,
        Some(b' ') if method > 0 => {}
        _ => return Peeked::Other,
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_PEEK {
            Peeked::Names(None)
        } else {
            Peeked::More
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let host = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("host")
            .then(|| value.trim())
    });
    Peeked::Names(host.map(|h| {
        let h = match h.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => h,
        };
        h.trim_end_matches('.').to_ascii_lowercase()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal TLS 1.3 ClientHello naming `sni`, with another extension before it.
    fn client_hello(sni: &str) -> Vec<u8> {
        let mut name = vec![0];
        name.extend((sni.len() as u16).to_be_bytes());
        name.extend(sni.as_bytes());
        let mut sni_ext = (name.len() as u16).to_be_bytes().to_vec();
        sni_ext.extend(name);
        let mut exts = vec![0x00, 0x2b, 0, 3, 2, 3, 4]; // supported_versions
        exts.extend([0, 0]);
        exts.extend((sni_ext.len() as u16).to_be_bytes());
        exts.extend(sni_ext);
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![1, 0];
        hs.extend((body.len() as u16).to_be_bytes());
        hs.extend(body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn the_sni_of_a_client_hello_is_read_also_when_it_arrives_in_pieces() {
        let hello = client_hello("API.Example.com");
        assert_eq!(
            named_host(&hello),
            Peeked::Names(Some("api.example.com".into()))
        );
        assert_eq!(named_host(&hello[..20]), Peeked::More);
        assert_eq!(named_host(&hello[..3]), Peeked::More);
        let mut garbled = hello.clone();
        garbled[5] = 2; // not a ClientHello
        assert_eq!(named_host(&garbled), Peeked::Names(None));
    }

    #[test]
    fn the_host_of_an_http_request_is_read_without_its_port() {
        let req = b"GET / HTTP/1.1\r\nUser-Agent: x\r\nhost: Allowed.test:8080\r\n\r\n";
        assert_eq!(named_host(req), Peeked::Names(Some("allowed.test".into())));
        assert_eq!(named_host(&req[..20]), Peeked::More);
        assert_eq!(named_host(b"GET / HTTP/1.0\r\n\r\n"), Peeked::Names(None));
        assert_eq!(named_host(b"GE"), Peeked::More);
        // Binary protocols and a client that speaks lower case are not judged.
        assert_eq!(
            named_host(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
            Peeked::Other
        );
        assert_eq!(named_host(b"SSH-2.0-OpenSSH_9.2\r\n"), Peeked::Other);
    }
}
