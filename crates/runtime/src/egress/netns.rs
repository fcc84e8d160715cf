//! A server's own network namespace, whose only way out is the gateway's egress proxy.
//!
//! Built on a thread of its own: `unshare(CLONE_NEWNET)` moves only the calling thread, so
//! the gateway's other threads stay where they are, and the thread ends when the namespace is
//! ready (nothing has to move back). Inside: `lo` up, a `local` route for every IPv4 address
//! (so a connect anywhere is routed, then redirected), nftables rules that redirect every TCP
//! connection to the proxy's port and every UDP datagram to port 53 to the DNS listener, and
//! drop everything else; then the proxy's two sockets, which stay in the namespace they were
//! created in while the gateway's tasks serve them from outside.
//!
//! The namespace belongs to the host's user namespace; the server runs in a user namespace
//! of its own without capabilities, so it can neither change these rules nor leave.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// The namespace and the proxy's sockets in it.
#[derive(Debug)]
pub(crate) struct Namespace {
    /// `/proc/thread-self/ns/net` of the building thread: what the sandbox joins (`setns`).
    pub fd: OwnedFd,
    /// Where every redirected TCP connection arrives (127.0.0.1, an ephemeral port).
    pub tcp: std::net::TcpListener,
    /// Where every DNS query arrives (127.0.0.1:53).
    pub udp: std::net::UdpSocket,
}

/// The requirement a failed namespace start names.
pub(crate) const PRIVILEGE: &str = "egress allow-lists need the gateway to run as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN, to give the server a network namespace of its own with nftables rules";

/// Builds the namespace. Errors name what is missing (privilege, `ip`, `nft`).
pub(crate) fn create() -> Result<Namespace, String> {
    std::thread::Builder::new()
        .name("gatehouse-netns".into())
        .spawn(build)
        .map_err(|e| format!("cannot start the network namespace thread: {e}"))?
        .join()
        .map_err(|_| "the network namespace thread panicked".to_string())?
}

/// Connects to `addr` from inside the namespace `ns`: the socket is made on a thread that
/// joined it (a socket stays in the namespace it was made in), so the connection reaches the
/// namespace's own loopback. Blocking; call it off the async threads.
pub(crate) fn connect_in(
    ns: &OwnedFd,
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> std::io::Result<std::net::TcpStream> {
    let ns = ns.try_clone()?;
    std::thread::Builder::new()
        .name("gatehouse-netns-connect".into())
        .spawn(move || {
            // SAFETY: setns takes a descriptor we own and a flag word; it moves only this
            // thread, which ends after the connect.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("cannot enter the server's network namespace (the gateway needs root or CAP_SYS_ADMIN to reach a containerised HTTP server): {e}"),
                ));
            }
            std::net::TcpStream::connect_timeout(&addr, timeout)
        })?
        .join()
        .map_err(|_| std::io::Error::other("the connecting thread panicked"))?
}

fn build() -> Result<Namespace, String> {
    // SAFETY: unshare takes a flag word; it changes only this thread's namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("{PRIVILEGE} (creating it failed: {e})"));
    }
    let fd: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| format!("cannot open the new network namespace: {e}"))?
        .into();
    // Children started from this thread are born in its network namespace.
    run(
        "ip",
        &["-batch", "-"],
        "link set lo up\nroute add local 0.0.0.0/0 dev lo table local\n",
        "iproute2",
    )?;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot open the egress proxy's port: {e}"))?;
    let port = tcp.local_addr().map_err(|e| e.to_string())?.port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:53")
        .map_err(|e| format!("cannot open the egress DNS port: {e}"))?;
    run("nft", &["-f", "-"], &rules(port), "nftables")?;
    Ok(Namespace { fd, tcp, udp })
}

/// The namespace's whole ruleset. Loopback stays loopback (the namespace's own, holding only
/// the proxy's sockets and what the server opens); the `filter` chain's policy drops what the
/// `nat` chain did not redirect: other UDP, ICMP, and IPv6 beyond `::1` (which has no route).
fn rules(port: u16) -> String {
    format!(
        "table inet gatehouse_egress {{
  chain nat_out {{
    type nat hook output priority -100; policy accept;
    ip daddr 127.0.0.0/8 return
    udp dport 53 redirect to :53
    meta l4proto tcp redirect to :{port}
  }}
  chain filter_out {{
    type filter hook output priority 0; policy drop;
    ip daddr 127.0.0.0/8 accept
    ip6 daddr ::1 accept
    ct status dnat accept
  }}
}}
"
    )
}

fn run(program: &str, args: &[&str], input: &str, package: &str) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("egress allow-lists need `{program}` (Debian package {package}): {e}")
        })?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .map_err(|e| format!("cannot write to {program}: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program} failed: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "setting up the server's network namespace with {program} failed ({}): {}",
            out.status,
            err.trim()
        ));
    }
    Ok(())
}
