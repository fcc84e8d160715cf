//! A real rsyslog receiving RFC 5424 syslog on loopback: UDP, TCP and TLS (gtls) inputs on
//! free ports, each writing what it receives to its own file with a template that shows
//! the parsed PRI, MSGID and structured data beside the raw message. Killed on drop; can be
//! killed and started again on the same ports (an outage).

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::free_port;

/// The transports the receiver listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `imudp`.
    Udp,
    /// `imtcp`, plain.
    Tcp,
    /// `imtcp` with the gtls stream driver.
    Tls,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// One message as rsyslog saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// PRI as rsyslog parsed it.
    pub pri: u16,
    /// MSGID as rsyslog parsed it.
    pub msgid: String,
    /// STRUCTURED-DATA as rsyslog parsed it.
    pub structured_data: String,
    /// The message as it arrived (framing removed).
    pub raw: String,
}

/// A running rsyslogd.
pub struct Rsyslog {
    bin: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The UDP input.
    pub udp: SocketAddr,
    /// The plain TCP input.
    pub tcp: SocketAddr,
    /// The TLS input.
    pub tls: SocketAddr,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

// A field separator rsyslog never produces inside PRI or MSGID, and the tests' events
// never hold.
const SEP: &str = "\u{1f}|";

impl Rsyslog {
    /// Starts rsyslogd `bin` with its TLS listener using `cert`/`key` (PEM) signed by `ca`.
    pub fn start(bin: &Path, ca: &Path, cert: &Path, key: &Path) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (tcp, tls) = (free_port(), free_port());
        let d = dir.path().display();
        let mut conf = format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k"
  DefaultNetstreamDriverCAFile="{ca}"
  DefaultNetstreamDriverCertFile="{cert}"
  DefaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imtcp" maxSessions="200")
template(name="wire" type="string" string="%pri%{SEP}%msgid%{SEP}%structured-data%{SEP}%rawmsg%\n")
input(type="imudp" address="127.0.0.1" port="{up}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{tp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{sp}" ruleset="tls"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"#,
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
            up = udp.port(),
            tp = tcp.port(),
            sp = tls.port(),
        );
        for t in ["udp", "tcp", "tls"] {
            conf.push_str(&format!(
                "ruleset(name=\"{t}\") {{ action(type=\"omfile\" file=\"{d}/{t}.log\" template=\"wire\") }}\n"
            ));
        }
        std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            bin: bin.to_path_buf(),
            child: None,
            dir,
            udp,
            tcp,
            tls,
        };
        r.start_again();
        r
    }

    /// Starts rsyslogd (again) on the same ports and waits until its TCP inputs accept.
    pub fn start_again(&mut self) {
        let d = self.dir.path();
        let mut child = Command::new(&self.bin)
            .arg("-n")
            .arg("-f")
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(self.tcp).is_err() || TcpStream::connect(self.tls).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("rsyslogd exited ({status}): {}", self.errors());
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen: {}",
                self.errors()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Kills rsyslogd outright (SIGKILL), as a crash or outage would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What rsyslogd wrote on stderr.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.err")).unwrap_or_default()
    }

    /// The messages received on `transport` so far.
    pub fn received(&self, transport: Transport) -> Vec<Received> {
        let path = self.dir.path().join(format!("{}.log", transport.name()));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(4, SEP);
                Some(Received {
                    pri: parts.next()?.parse().ok()?,
                    msgid: parts.next()?.to_string(),
                    structured_data: parts.next()?.to_string(),
                    raw: parts.next()?.to_string(),
                })
            })
            .collect()
    }

    /// Waits until `transport` received at least `n` messages (or `within` passed); returns
    /// what it has.
    pub async fn wait_for(
        &self,
        transport: Transport,
        n: usize,
        within: Duration,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received(transport);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
