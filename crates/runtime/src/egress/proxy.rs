//! The gateway side of a server's egress: the DNS listener answering allowed names with
//! addresses of a private pool, and the TCP proxy deciding every redirected connection by its
//! original destination.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_config::EgressPolicy;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dns;
use super::peek::{self, Peeked};

/// The pool the DNS listener answers from: 198.18.0.0/15 (reserved for benchmarking, never a
/// real destination). The n-th allowed host name gets the (n+1)-th address.
const POOL_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const POOL_SIZE: u32 = 1 << 17;

/// At most this many connections of one server at once; more wait for one to end.
const MAX_CONNECTIONS: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to say which host it wants before the server is assumed to
/// speak first.
const PEEK_TIMEOUT: Duration = Duration::from_secs(1);

/// What every decision of one server's proxy needs.
#[derive(Debug)]
pub(crate) struct Decider {
    pub server: String,
    pub policy: EgressPolicy,
    /// Allowed host names, by pool index.
    hosts: Vec<String>,
    /// The DNS server names are resolved through (`None`: the system's resolver).
    resolver: Option<SocketAddr>,
    /// The addresses each name resolved to last, to say "rebinding" when a name moved.
    seen: Mutex<HashMap<String, Vec<IpAddr>>>,
}

/// Where a redirected connection goes, or why not.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Connect to the first of these that answers; `name` is the allowed name asked for, which
    /// a TLS SNI or HTTP `Host` must match.
    Connect {
        targets: Vec<SocketAddr>,
        name: Option<String>,
    },
    Refuse(String),
}

impl Decider {
    pub(crate) fn new(server: &str, policy: EgressPolicy, resolver: Option<SocketAddr>) -> Self {
        let hosts = policy.hosts().into_iter().map(String::from).collect();
        Decider {
            server: server.into(),
            policy,
            hosts,
            resolver,
            seen: Mutex::default(),
        }
    }

    /// The pool address of an allowed host name.
    pub(crate) fn pool_address(&self, name: &str) -> Option<Ipv4Addr> {
        let i = self.hosts.iter().position(|h| h == name)? as u32;
        Some(Ipv4Addr::from(POOL_BASE + 1 + i))
    }

    fn pool_name(&self, ip: Ipv4Addr) -> Option<Option<&str>> {
        let n = u32::from(ip).wrapping_sub(POOL_BASE);
        (n < POOL_SIZE).then(|| {
            let i = n.checked_sub(1)? as usize;
            self.hosts.get(i).map(String::as_str)
        })
    }

    /// Decides a connection whose original destination was `dst`.
    pub(crate) async fn decide(&self, dst: SocketAddrV4) -> Verdict {
        let (ip, port) = (*dst.ip(), dst.port());
        if ip.is_loopback() {
            // Only a connect to the proxy's own port arrives unredirected.
            return Verdict::Refuse("a direct connect to the egress proxy".into());
        }
        let name = match self.pool_name(ip) {
            None if self.policy.allows_address(IpAddr::V4(ip), port) => {
                return Verdict::Connect {
                    targets: vec![SocketAddr::V4(dst)],
                    name: None,
                };
            }
            None => return Verdict::Refuse("no egress rule allows this address and port".into()),
            Some(None) => return Verdict::Refuse("an address the egress DNS never gave".into()),
            Some(Some(name)) => name,
        };
        if !self.policy.allows_name(name, port) {
            return Verdict::Refuse(format!("no egress rule allows {name} on port {port}"));
        }
        let addrs = match self.resolve(name).await {
            Ok(a) if a.is_empty() => return Verdict::Refuse(format!("{name} has no address")),
            Ok(a) => a,
            Err(e) => return Verdict::Refuse(format!("cannot resolve {name}: {e}")),
        };
        let before = self
            .seen
            .lock()
            .expect("seen lock")
            .insert(name.to_string(), addrs.clone());
        // One forbidden address refuses the whole answer: picking the others would leave
        // the choice to whoever controls the name's records.
        for ip in &addrs {
            if let Err(e) = self.policy.check_resolved(*ip) {
                let moved = before
                    .filter(|b| b.iter().all(|ip| self.policy.check_resolved(*ip).is_ok()))
                    .map(|b| format!("DNS rebinding ({name} resolved to {b:?} before): "))
                    .unwrap_or_default();
                return Verdict::Refuse(format!("{moved}{name}: {e}, which no egress rule names"));
            }
        }
        Verdict::Connect {
            targets: addrs.into_iter().map(|ip| (ip, port).into()).collect(),
            name: Some(name.to_string()),
        }
    }

    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let lookup = async {
            match self.resolver {
                Some(server) => query(server, name)
                    .await
                    .map(|a| a.into_iter().map(IpAddr::V4).collect()),
                None => tokio::net::lookup_host((name, 0))
                    .await
                    .map(|a| a.map(|s| s.ip()).collect())
                    .map_err(|e| e.to_string()),
            }
        };
        tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
            .await
            .map_err(|_| "the resolver did not answer in time".to_string())?
    }
}

/// Asks the DNS server `server` for the A records of `name`.
async fn query(server: SocketAddr, name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    let mut id = 0u16;
    // SAFETY: getrandom writes at most 2 bytes into `id`.
    unsafe { libc::getrandom((&mut id as *mut u16).cast(), 2, 0) };
    sock.send(&dns::build_query(id, name))
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // A datagram for another id (a late answer, a spoofing attempt) is skipped.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return dns::parse_a_answers(&buf[..n], id);
        }
    }
}

/// Answers the sandbox's DNS queries until the task is aborted.
pub(crate) async fn serve_dns(sock: UdpSocket, d: Arc<Decider>) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Some(q) = dns::parse_query(&buf[..n]) else {
            continue;
        };
        let reply = match d.pool_address(&q.name) {
            Some(a) => dns::answer(&q, dns::NOERROR, &[a]),
            None => {
                tracing::info!(server = %d.server, name = %q.name, "egress refused: DNS name not in the allow-list");
                dns::answer(&q, dns::NXDOMAIN, &[])
            }
        };
        let _ = sock.send_to(&reply, from).await;
    }
}

/// Accepts redirected connections until the task is aborted; their tasks end with it.
pub(crate) async fn serve_tcp(listener: TcpListener, d: Arc<Decider>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let d = d.clone();
        conns.spawn(async move {
            relay(stream, &d).await;
            drop(permit);
        });
    }
}

async fn relay(mut inside: TcpStream, d: &Decider) {
    let dst = match original_destination(&inside) {
        Ok(dst) => dst,
        Err(e) => {
            tracing::warn!(server = %d.server, error = %e, "egress refused: no original destination");
            return;
        }
    };
    let verdict = match d.decide(dst).await {
        Verdict::Connect { targets, name } => match name {
            None => Ok((targets, Vec::new())),
            Some(name) => first_bytes_for(&mut inside, &name)
                .await
                .map(|first| (targets, first)),
        },
        Verdict::Refuse(reason) => Err(reason),
    };
    let (targets, first) = match verdict {
        Ok(v) => v,
        Err(reason) => {
            tracing::warn!(server = %d.server, destination = %dst, %reason, "egress refused");
            // A reset, as a refused connect would give, rather than an orderly close the
            // client could take for an empty answer.
            let _ = inside.set_zero_linger();
            return;
        }
    };
    let mut last = String::new();
    for target in &targets {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(mut outside)) => {
                tracing::debug!(server = %d.server, destination = %dst, %target, "egress connected");
                if outside.write_all(&first).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                return;
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    tracing::info!(server = %d.server, destination = %dst, targets = ?targets, error = %last, "egress connect failed");
}

/// The connection's first bytes, when they are TLS or HTTP naming `name` (or a protocol
/// where the server speaks first, or another one); an error when they name another host or
/// none. Read, not peeked: they are written to the target once it is connected.
async fn first_bytes_for(inside: &mut TcpStream, name: &str) -> Result<Vec<u8>, String> {
    let deadline = tokio::time::Instant::now() + PEEK_TIMEOUT;
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(deadline, inside.read(&mut buf)).await;
        match read {
            // Nothing said: a protocol where the server speaks first.
            Err(_) if first.is_empty() => return Ok(first),
            Err(_) => return Err("an incomplete TLS or HTTP start".into()),
            Ok(Ok(0)) | Ok(Err(_)) => return Err("closed before saying anything".into()),
            Ok(Ok(n)) => first.extend_from_slice(&buf[..n]),
        }
        match peek::named_host(&first) {
            Peeked::More if first.len() < peek::MAX_PEEK => {}
            Peeked::More | Peeked::Other => return Ok(first),
            Peeked::Names(Some(host)) if host == name => return Ok(first),
            Peeked::Names(Some(host)) => {
                return Err(format!(
                    "asked for {name} but names {host} (TLS SNI or HTTP Host)"
                ));
            }
            Peeked::Names(None) => {
                return Err(format!(
                    "asked for {name} but names no host (TLS SNI or HTTP Host)"
                ));
            }
        }
    }
}

/// Where the server meant to connect before nftables redirected it here.
fn original_destination(s: &TcpStream) -> std::io::Result<SocketAddrV4> {
    // SAFETY: getsockopt writes at most `len` bytes into the zeroed sockaddr_in.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SO_ORIGINAL_DST (linux/netfilter_ipv4.h) on SOL_IP.
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: a valid socket, a buffer of `len` bytes owned by this frame.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decider(rules: &[&str], resolver: Option<SocketAddr>) -> Decider {
        let rules: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
        Decider::new("s", EgressPolicy::parse(&rules).unwrap(), resolver)
    }

    /// A DNS server on loopback answering each query with the next address of `answers`.
    async fn answering(answers: Vec<Ipv4Addr>) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for a in answers {
                let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                let q = dns::parse_query(&buf[..n]).unwrap();
                sock.send_to(&dns::answer(&q, dns::NOERROR, &[a]), from)
                    .await
                    .unwrap();
            }
        });
        addr
    }

    fn v4(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn names_ports_ranges_and_rebinding_are_decided_by_the_rules() {
        let dns = answering(vec![
            Ipv4Addr::new(10, 231, 1, 2),
            Ipv4Addr::new(10, 231, 2, 2),
            Ipv4Addr::new(127, 0, 0, 1),
        ])
        .await;
        let d = decider(
            &["web.test:8080", "10.231.1.0/24:8080", "other.test:443"],
            Some(dns),
        );
        let web = d.pool_address("web.test").unwrap();
        assert_eq!(web, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(d.pool_address("nope.test"), None);
        let at = |port| SocketAddrV4::new(web, port);
        assert_eq!(
            d.decide(at(8080)).await,
            Verdict::Connect {
                targets: vec!["10.231.1.2:8080".parse().unwrap()],
                name: Some("web.test".into())
            }
        );
        // Same name, second answer: a range no rule names, after an allowed one.
        let Verdict::Refuse(r) = d.decide(at(8080)).await else {
            panic!("rebinding allowed")
        };
        assert!(
            r.starts_with("DNS rebinding (web.test resolved to [10.231.1.2] before): web.test: 10.231.2.2 is in the private"),
            "{r}"
        );
        let Verdict::Refuse(r) = d.decide(at(8080)).await else {
            panic!("loopback allowed")
        };
        assert!(r.contains("loopback"), "{r}");
        // Ports and raw addresses.
        assert!(
            matches!(d.decide(at(8081)).await, Verdict::Refuse(r) if r.contains("on port 8081"))
        );
        assert_eq!(
            d.decide(v4("10.231.1.9:8080")).await,
            Verdict::Connect {
                targets: vec!["10.231.1.9:8080".parse().unwrap()],
                name: None
            }
        );
        for refused in [
            "10.231.2.2:8080",
            "10.231.1.9:22",
            "198.18.0.9:8080",
            "127.0.0.1:4000",
        ] {
            assert!(
                matches!(d.decide(v4(refused)).await, Verdict::Refuse(_)),
                "{refused}"
            );
        }
    }
}
