//! Test hosts in network namespaces the test creates, and a DNS server of the test suite: the
//! egress tests never send a packet to an address outside this machine.
//!
//! A [`TestHost`] is a network namespace joined to this one by a veth pair: it is
//! `10.231.N.2`, this side `10.231.N.1`, and it serves small HTTP answers on the TCP ports it
//! was given and counts datagrams on its UDP port, logging every connection it accepted — the
//! outside view every refusal is checked against. Needs root (`ip netns`, `setns`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One test host: `10.231.N.2` in its own namespace.
pub struct TestHost {
    pub ip: Ipv4Addr,
    netns: String,
    veth: String,
    /// Every accepted TCP connection's local port, and every datagram's port, in order.
    log: Arc<Mutex<Vec<String>>>,
}

fn ip(args: &str) -> std::process::Output {
    Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("ip (iproute2) runs")
}

fn must(args: &str) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestHost {
    /// Host number `n` (1-254, unique among the tests running at once), serving HTTP on
    /// `tcp_ports` and counting datagrams on `udp_port`.
    pub fn new(n: u8, tcp_ports: &[u16], udp_port: u16) -> TestHost {
        let netns = format!("gh-egress-{n}");
        let veth = format!("ghe{n}a");
        // What a test that died earlier left behind.
        let _ = ip(&format!("netns del {netns}"));
        let _ = ip(&format!("link del {veth}"));
        must(&format!("netns add {netns}"));
        must(&format!("link add {veth} type veth peer name ghe{n}b"));
        must(&format!("link set ghe{n}b netns {netns}"));
        must(&format!("addr add 10.231.{n}.1/24 dev {veth}"));
        must(&format!("link set {veth} up"));
        must(&format!("-n {netns} addr add 10.231.{n}.2/24 dev ghe{n}b"));
        must(&format!("-n {netns} link set ghe{n}b up"));
        must(&format!("-n {netns} link set lo up"));
        let host = TestHost {
            ip: Ipv4Addr::new(10, 231, n, 2),
            netns,
            veth,
            log: Arc::default(),
        };
        let (tcp, udp) = host.listen_inside(tcp_ports, udp_port);
        for l in tcp {
            let log = host.log.clone();
            std::thread::spawn(move || serve_http(l, log));
        }
        let log = host.log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((_, _)) = udp.recv_from(&mut buf) {
                log.lock().unwrap().push(format!("udp {udp_port}"));
            }
        });
        host
    }

    /// Opens the sockets from a thread that joined the host's namespace; sockets stay in
    /// the namespace they were created in.
    fn listen_inside(
        &self,
        tcp_ports: &[u16],
        udp_port: u16,
    ) -> (Vec<std::net::TcpListener>, UdpSocket) {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.netns)).unwrap();
        let (ip, ports) = (self.ip, tcp_ports.to_vec());
        std::thread::spawn(move || {
            // SAFETY: setns on a namespace descriptor; affects only this thread.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0,
                "setns: {}",
                std::io::Error::last_os_error()
            );
            let tcp = ports
                .iter()
                .map(|p| std::net::TcpListener::bind((ip, *p)).unwrap())
                .collect();
            (tcp, UdpSocket::bind((ip, udp_port)).unwrap())
        })
        .join()
        .unwrap()
    }

    /// What the host logged so far: `tcp PORT` per connection, `udp PORT` per datagram.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = ip(&format!("netns del {}", self.netns));
        let _ = ip(&format!("link del {}", self.veth));
    }
}

/// Answers every connection with `HTTP 200` and a body naming the host and port.
fn serve_http(l: std::net::TcpListener, log: Arc<Mutex<Vec<String>>>) {
    let local = l.local_addr().unwrap();
    for mut c in l.incoming().map_while(Result::ok) {
        log.lock().unwrap().push(format!("tcp {}", local.port()));
        std::thread::spawn(move || {
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!("hello from {local}");
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
    }
}

/// A DNS server of the test suite on loopback: each name answers the next address of its
/// list (the last one again once the list is used up), other names NXDOMAIN. Written here,
/// apart from the gateway's own DNS code, so the two cannot share a mistake.
pub struct TestDns {
    pub addr: SocketAddr,
    /// The names asked, in order.
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl TestDns {
    pub fn start(names: &[(&str, &[Ipv4Addr])]) -> TestDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let mut answers: HashMap<String, (Vec<Ipv4Addr>, usize)> = names
            .iter()
            .map(|(n, a)| (n.to_string(), (a.to_vec(), 0)))
            .collect();
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let q = &buf[..n];
                // The question: labels from byte 12 to the zero byte, then type and class.
                let mut at = 12;
                let mut labels = Vec::new();
                while at < n && q[at] != 0 {
                    let len = q[at] as usize;
                    labels.push(String::from_utf8_lossy(&q[at + 1..at + 1 + len]).to_string());
                    at += 1 + len;
                }
                let name = labels.join(".");
                let question = &q[12..at + 5];
                log.lock().unwrap().push(name.clone());
                let addr = answers.get_mut(&name).map(|(list, i)| {
                    let a = list[(*i).min(list.len() - 1)];
                    *i += 1;
                    a
                });
                let mut out = vec![q[0], q[1], 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
                match addr {
                    Some(a) => {
                        out[7] = 1;
                        out.extend_from_slice(question);
                        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
                        out.extend_from_slice(&a.octets());
                    }
                    None => {
                        out[3] = 0x83;
                        out.extend_from_slice(question);
                    }
                }
                let _ = sock.send_to(&out, from);
            }
        });
        TestDns { addr, asked }
    }
}
