//! Where syslog messages go: UDP datagrams (RFC 5426), TCP with octet-counting framing
//! (RFC 6587 §3.4.1), or the same framing over TLS (RFC 5425).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The transport a `url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `udp://`: one datagram per message; lossy by nature.
    Udp,
    /// `tcp://`: octet-counted frames on one connection.
    Tcp,
    /// `tls://`: octet-counted frames over TLS.
    Tls,
}

/// A parsed syslog `url`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The transport.
    pub scheme: Scheme,
    /// Host name or address (no brackets).
    pub host: String,
    /// Port (default 514 for UDP/TCP, 6514 for TLS).
    pub port: u16,
}

impl Endpoint {
    /// Parses `udp://host:port`, `tcp://host:port` or `tls://host:port`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let u = url::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
        let scheme = match u.scheme() {
            "udp" => Scheme::Udp,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            other => {
                return Err(format!(
                    "url scheme {other:?}: expected udp://, tcp:// or tls://"
                ));
            }
        };
        let host = match u.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(format!("url {url:?} has no host")),
        };
        let port = u.port().unwrap_or(match scheme {
            Scheme::Tls => 6514,
            _ => 514,
        });
        Ok(Endpoint { scheme, host, port })
    }

    async fn resolve(&self) -> std::io::Result<SocketAddr> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{} does not resolve", self.host)))
    }
}

/// The TLS client settings: the system's roots plus the sink's `ca`.
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Roots the system cannot parse are skipped, as every TLS client does.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("ca {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("ca {}: no certificate in it", ca.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("ca {}: {e}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A byte stream to the receiver (plain TCP or TLS).
pub trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

/// An open connection.
pub enum Connection {
    /// A connected UDP socket.
    Udp(UdpSocket),
    /// A TCP or TLS stream.
    Stream(Box<dyn Stream>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connection::Udp(_) => "Connection::Udp",
            Connection::Stream(_) => "Connection::Stream",
        })
    }
}

/// Opens a connection to `endpoint` within `timeout`.
pub async fn connect(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> std::io::Result<Connection> {
    let open = async {
        let addr = endpoint.resolve().await?;
        match endpoint.scheme {
            Scheme::Udp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local).await?;
                s.connect(addr).await?;
                Ok(Connection::Udp(s))
            }
            Scheme::Tcp => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(Connection::Stream(Box::new(s)))
            }
            Scheme::Tls => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                let name = ServerName::try_from(endpoint.host.clone())
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", endpoint.host)))?;
                let config = tls
                    .cloned()
                    .ok_or_else(|| std::io::Error::other("no TLS settings"))?;
                let s = tokio_rustls::TlsConnector::from(config)
                    .connect(name, s)
                    .await?;
                Ok(Connection::Stream(Box::new(s)))
            }
        }
    };
    tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

impl Connection {
    /// Whether the receiver closed (or broke) the connection since the last write. Checked
    /// before every batch: a write into a connection the peer already closed "succeeds"
    /// into the kernel's buffer and is lost, so the sink must reconnect first.
    pub fn closed(&mut self) -> bool {
        let Connection::Stream(s) = self else {
            return false;
        };
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).now_or_never() {
                None => return false,
                Some(Ok(0)) | Some(Err(_)) => return true,
                // Syslog receivers send nothing we need; TLS 1.3 session tickets are
                // consumed by rustls on the way.
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends `messages` (already laid out), framed for the transport; UDP datagrams are cut
    /// to `max_datagram` bytes.
    pub async fn send(&mut self, messages: &[String], max_datagram: usize) -> std::io::Result<()> {
        match self {
            Connection::Udp(s) => {
                for m in messages {
                    s.send(crate::bound::prefix(m, max_datagram).as_bytes())
                        .await?;
                }
                Ok(())
            }
            Connection::Stream(s) => {
                let mut buf =
                    Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum::<usize>());
                for m in messages {
                    buf.extend_from_slice(m.len().to_string().as_bytes());
                    buf.push(b' ');
                    buf.extend_from_slice(m.as_bytes());
                }
                s.write_all(&buf).await?;
                s.flush().await
            }
        }
    }
}
