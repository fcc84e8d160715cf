//! Egress allow-lists, enforced at the network layer.
//!
//! A sandboxed server with a non-empty `network.egress` list gets a network namespace the
//! gateway builds for it ([`netns`]): every TCP connection leaving it is redirected by
//! nftables to this server's proxy, every DNS query to this server's DNS listener, everything
//! else is dropped. The server need not honour proxy variables (Node's `fetch` does not, a raw
//! connect to an address never would): the kernel redirects the packets.
//!
//! The DNS listener answers an allowed name with an address of a private pool and every other
//! name with NXDOMAIN. The proxy ([`proxy`]) reads each connection's original destination: a
//! pool address means that name, which the proxy resolves itself, on the gateway's side, at
//! connect time, and connects to the address it checked (so a name cannot point elsewhere
//! between check and connect); an address in an internal range is refused unless a range rule
//! names it (`gatehouse_config::egress`). A raw address is allowed only by a range rule.

mod dns;
mod netns;
mod peek;
mod proxy;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use gatehouse_config::EgressPolicy;

use crate::RuntimeError;

/// A server's egress: its network namespace and the tasks serving its proxy. Dropping it
/// (after the server's processes ended) stops the tasks, which closes the sockets, and
/// closes the last descriptor of the namespace, which the kernel then removes.
///
/// Also a containerised HTTP server's own namespace without an allow-list
/// ([`Egress::adopt`]): its loopback only, no proxy, no way out.
#[derive(Debug)]
pub struct Egress {
    netns: std::os::fd::OwnedFd,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Egress {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Egress {
    /// Builds the namespace and starts the proxy for `server`. `resolver` is the DNS server
    /// names are resolved through (`None`: the system's resolver).
    pub(crate) async fn start(
        server: &str,
        policy: EgressPolicy,
        resolver: Option<SocketAddr>,
    ) -> Result<Egress, RuntimeError> {
        let ns = tokio::task::spawn_blocking(netns::create)
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("network namespace: {e}")))?
            .map_err(|e| RuntimeError::Unavailable(format!("server \"{server}\": {e}")))?;
        let listen = |r: std::io::Result<()>| {
            r.map_err(|e| RuntimeError::Unavailable(format!("egress proxy: {e}")))
        };
        listen(ns.tcp.set_nonblocking(true))?;
        listen(ns.udp.set_nonblocking(true))?;
        let tcp = tokio::net::TcpListener::from_std(ns.tcp)
            .map_err(|e| RuntimeError::Unavailable(format!("egress proxy: {e}")))?;
        let udp = tokio::net::UdpSocket::from_std(ns.udp)
            .map_err(|e| RuntimeError::Unavailable(format!("egress DNS: {e}")))?;
        tracing::info!(server, egress = ?policy_text(&policy), resolver = ?resolver, "egress allow-list in force: own network namespace, every connection through the gateway's proxy");
        let decider = Arc::new(proxy::Decider::new(server, policy, resolver));
        Ok(Egress {
            netns: ns.fd,
            tasks: vec![
                tokio::spawn(proxy::serve_tcp(tcp, decider.clone())),
                tokio::spawn(proxy::serve_dns(udp, decider)),
            ],
        })
    }

    /// The network namespace of a running container (`/proc/<its pid>/ns/net`), for a
    /// containerised HTTP server without an allow-list: the engine made it with nothing but
    /// its loopback (`network_mode: none`), and the gateway connects from inside
    /// ([`Egress::connect`]).
    pub(crate) fn adopt(pid: i64) -> std::io::Result<Egress> {
        let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?.into();
        Ok(Egress {
            netns,
            tasks: Vec::new(),
        })
    }

    /// Whether connections leave through an egress proxy (an allow-list); `false` for a
    /// private namespace.
    pub fn has_allow_list(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Connects to `port` on the namespace's loopback (IPv4, then IPv6): how the gateway
    /// reaches an HTTP server listening inside. Fails at once when nothing listens there yet.
    pub async fn connect(&self, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let ns = self.netns.try_clone()?;
        let stream = tokio::task::spawn_blocking(move || {
            let timeout = std::time::Duration::from_secs(2);
            let v4 = SocketAddr::from(([127, 0, 0, 1], port));
            netns::connect_in(&ns, v4, timeout).or_else(|e4| {
                let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
                // The IPv4 error is the one that says most (IPv6 may be off in the namespace).
                netns::connect_in(&ns, v6, timeout).map_err(|_| e4)
            })
        })
        .await
        .map_err(std::io::Error::other)??;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        tokio::net::TcpStream::from_std(stream)
    }

    /// The namespace's descriptor, for the sandbox to join (`setns` before `bwrap` runs) or
    /// the container engine to open (`ns:/proc/<gateway>/fd/<fd>`).
    pub(crate) fn netns_fd(&self) -> RawFd {
        self.netns.as_raw_fd()
    }
}

/// For `gatehouse validate`: the effective allow-list of a sandboxed or containerised server that has one, and
/// what enforcing it needs. `None` for other servers.
pub fn note(server: &gatehouse_config::ServerConfig) -> Option<String> {
    let iso = server.isolation.as_ref()?;
    if iso.network.egress.is_empty() || iso.runtime() == gatehouse_config::RuntimeKind::Process {
        return None;
    }
    let policy = EgressPolicy::parse(&iso.network.egress).ok()?;
    Some(format!(
        "server \"{}\" may connect only to {} (TCP, through its own egress proxy; names resolved by the gateway, internal addresses only where a range rule names them); the gateway needs root or CAP_NET_ADMIN and CAP_SYS_ADMIN, and nft and ip, to start it",
        server.name,
        policy_text(&policy).join(", ")
    ))
}

fn policy_text(p: &EgressPolicy) -> Vec<String> {
    p.rules()
        .iter()
        .map(|r| match r {
            gatehouse_config::EgressRule::Host { host, port } => format!("{host}:{port}"),
            gatehouse_config::EgressRule::Net { addr, prefix, port } => {
                format!("{addr}/{prefix}:{port}")
            }
        })
        .collect()
}

/// What a sandbox's `/etc/resolv.conf` says: the namespace's own DNS listener.
pub(crate) const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions attempts:2 timeout:2\n";
