//! The answer to a connection over a cap: on a plain listener a `503` with
//! `Connection: close` and a JSON-RPC error saying which cap, written without waiting; on a
//! TLS listener just the close (a handshake is not cheap).

use std::net::IpAddr;

use gatehouse_wire::{ErrorObject, Id, Message, codes};
use tokio::net::TcpStream;

use super::admission::{Admission, Refusal};

/// Most request bytes read (and discarded) before closing, so the close is a FIN the client
/// sees after the response rather than a reset that may destroy it.
const DRAIN_BYTES: usize = 16 * 1024;

/// The message a refused caller reads.
pub(crate) fn message(admission: &Admission, reason: Refusal, ip: IpAddr) -> String {
    match reason {
        Refusal::PerIp => format!(
            "too many connections from {ip}: at most {} at once (gateway.connections.max_per_ip); retry later",
            admission.max_per_ip()
        ),
        Refusal::Max => format!(
            "the gateway has its maximum of {} connections open (gateway.connections.max); retry later",
            admission.cap().connections
        ),
        Refusal::FdReserve => format!(
            "the gateway has {} connections open, all its open-file limit allows while keeping gateway.connections.fd_reserve descriptors free; retry later",
            admission.cap().connections
        ),
    }
}

/// Answers and closes `tcp` without waiting on the client.
pub(crate) fn refuse(tcp: TcpStream, plain: bool, message: &str) {
    if plain {
        let body = Message::error(
            Id::Null,
            ErrorObject::new(codes::BACKEND_UNAVAILABLE, message.to_string()),
        )
        .to_bytes();
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let mut response = head.into_bytes();
        response.extend_from_slice(&body);
        // A fresh socket's send buffer takes this at once; if it does not, the client just
        // sees the close.
        let _ = tcp.try_write(&response);
        let mut scratch = [0u8; 1024];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match tcp.try_read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
    drop(tcp);
}
