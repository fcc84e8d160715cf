//! The little DNS a sandbox with an allow-list needs (RFC 1035): reading a query, answering it
//! from the allow-list, and asking a test resolver for A records. Never a recursive resolver:
//! the sandbox's queries stop here, so no name leaves the machine through DNS.

use std::net::Ipv4Addr;

/// Success.
pub(crate) const NOERROR: u8 = 0;
/// The name does not exist (for the sandbox: it is not in the allow-list).
pub(crate) const NXDOMAIN: u8 = 3;
/// An IPv4 address record.
pub(crate) const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

/// One question of a query, as much as an answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub id: u16,
    /// The opcode and recursion-desired bits, copied into the answer.
    pub flags: u16,
    /// Lower case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question section as received, echoed in the answer.
    question: Vec<u8>,
}

/// Reads a query: a header and exactly one question. Anything else (`None`) is dropped.
pub(crate) fn parse_query(msg: &[u8]) -> Option<Query> {
    if msg.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    // A response (QR set) or several questions is never what a stub resolver sends.
    if flags & 0x8000 != 0 || qdcount != 1 {
        return None;
    }
    let (name, end) = read_name(msg, 12)?;
    let fixed = msg.get(end..end + 4)?;
    Some(Query {
        id,
        flags,
        name,
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        question: msg[12..end + 4].to_vec(),
    })
}

/// A name written as labels, without compression (a question has no earlier name to point
/// at); its end offset. Only letters, digits, `-` and `_` are read: anything else is not a
/// host name an allow-list can name.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 || name.len() + len > 253 {
            return None;
        }
        let label = msg.get(at..at + len)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    Some((name, at))
}

/// The answer to `q`: `rcode`, and one A record per address (only for an A question in
/// class IN; other types get an empty answer, so clients fall back to IPv4).
pub(crate) fn answer(q: &Query, rcode: u8, addrs: &[Ipv4Addr]) -> Vec<u8> {
    let addrs = if q.qtype == TYPE_A && q.qclass == CLASS_IN && rcode == NOERROR {
        addrs
    } else {
        &[]
    };
    // QR, the query's opcode and RD, RA; authoritative, so stub resolvers do not retry.
    let flags = 0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | u16::from(rcode & 0xf);
    let mut out = Vec::with_capacity(12 + q.question.len() + 16 * addrs.len());
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&q.question);
    for a in addrs {
        // A pointer to the question's name, A, IN, a TTL of 0 (the proxy decides at every
        // connect anyway), four bytes.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        out.extend_from_slice(&a.octets());
    }
    out
}

/// A recursive query for the A records of `name`.
pub(crate) fn build_query(id: u16, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

/// The A records of a response to query `id`, in the order given.
pub(crate) fn parse_a_answers(msg: &[u8], id: u16) -> Result<Vec<Ipv4Addr>, String> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return Err("not a response to the query".into());
    }
    let rcode = msg[3] & 0xf;
    if rcode != NOERROR {
        return Err(format!("the resolver answered rcode {rcode}"));
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at).ok_or("a truncated question")? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at).ok_or("a truncated answer")?;
        let fixed = msg.get(at..at + 10).ok_or("a truncated answer")?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = msg
            .get(at + 10..at + 10 + len)
            .ok_or("a truncated answer")?;
        if rtype == TYPE_A && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Ok(out)
}

/// The offset after a possibly compressed name.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A glibc-style query for `name` of `qtype`, with an EDNS0 record appended.
    fn glibc_query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = build_query(0xbeef, name);
        q[10..12].copy_from_slice(&1u16.to_be_bytes());
        let n = q.len();
        q[n - 4..n - 2].copy_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        q
    }

    #[test]
    fn a_query_is_read_and_answered_with_its_question_and_addresses() {
        let q = parse_query(&glibc_query("Allowed.TEST.", TYPE_A)).unwrap();
        assert_eq!(q.name, "allowed.test");
        assert_eq!((q.id, q.qtype, q.qclass), (0xbeef, TYPE_A, 1));
        let a = answer(&q, NOERROR, &[Ipv4Addr::new(198, 18, 0, 1)]);
        assert_eq!(
            parse_a_answers(&a, 0xbeef).unwrap(),
            [Ipv4Addr::new(198, 18, 0, 1)]
        );
        assert_eq!(a[3] & 0xf, NOERROR);
        assert_eq!(a[2] & 0x01, 0x01, "RD is copied");
        // AAAA gets an empty answer, not an error, so the client uses IPv4.
        let q6 = parse_query(&glibc_query("allowed.test", 28)).unwrap();
        let a6 = answer(&q6, NOERROR, &[Ipv4Addr::new(198, 18, 0, 1)]);
        assert_eq!(u16::from_be_bytes([a6[6], a6[7]]), 0);
        let nx = answer(&q, NXDOMAIN, &[Ipv4Addr::new(198, 18, 0, 1)]);
        assert_eq!(nx[3] & 0xf, NXDOMAIN);
        assert_eq!(
            parse_a_answers(&nx, 0xbeef).unwrap_err(),
            "the resolver answered rcode 3"
        );
    }

    #[test]
    fn malformed_or_hostile_messages_are_not_read() {
        assert_eq!(parse_query(&[0; 11]), None);
        let mut response = glibc_query("a.test", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), None);
        let mut truncated = build_query(1, "a.test");
        truncated.truncate(16);
        assert_eq!(parse_query(&truncated), None);
        // A compression pointer in a question, a label of 64 bytes, a byte a host name never has.
        let mut pointer = build_query(1, "a.test");
        pointer[12] = 0xc0;
        assert_eq!(parse_query(&pointer), None);
        assert_eq!(parse_query(&build_query(1, &"x".repeat(64))), None);
        assert_eq!(parse_query(&build_query(1, "a b.test")), None);
        assert!(parse_a_answers(&[0xff; 40], 1).is_err());
        let q = parse_query(&build_query(7, "a.test")).unwrap();
        assert!(parse_a_answers(&answer(&q, NOERROR, &[]), 8).is_err());
    }
}
