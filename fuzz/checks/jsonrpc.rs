//! `gatehouse_wire::Message::parse` on arbitrary bytes.
//!
//! Invariants: a message that parses serialises to bytes that parse to an equal message, and
//! serialising that again gives the same bytes (the gateway relays what it parsed, so a
//! lossy round trip would alter what a backend or client receives). A refusal maps to one of
//! the two JSON-RPC codes, and the error response built from it is itself a valid message.

use gatehouse_wire::{Message, MessageKind, codes};

/// Runs the check on one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    match Message::parse(data) {
        Ok(msg) => {
            let bytes = msg.to_bytes();
            let again = Message::parse(&bytes).unwrap_or_else(|e| {
                panic!(
                    "re-serialised message does not parse: {e}\n{}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_same(&msg, &again);
            assert_eq!(
                again.to_bytes(),
                bytes,
                "serialising a re-parsed message changed its bytes"
            );
            // Accessors the request path calls on every message.
            let _ = msg.target_name();
            let _ = msg.meta();
            if msg.kind() == MessageKind::Result {
                assert!(msg.result.is_some(), "a result message without a result");
                assert!(
                    msg.result_value().is_some(),
                    "a result that parsed once does not parse as a value"
                );
            }
        }
        Err(e) => {
            let obj = e.to_error_object();
            assert!(
                obj.code == codes::PARSE_ERROR || obj.code == codes::INVALID_REQUEST,
                "unexpected error code {}",
                obj.code
            );
            let reply = Message::error(e.id(), obj);
            let parsed = Message::parse(&reply.to_bytes())
                .unwrap_or_else(|e| panic!("the error response does not parse: {e}"));
            assert_eq!(parsed.kind(), MessageKind::Error);
        }
    }
}

fn assert_same(a: &Message, b: &Message) {
    assert_eq!(a.id, b.id, "id changed in the round trip");
    assert_eq!(a.method, b.method, "method changed in the round trip");
    assert_eq!(a.params, b.params, "params changed in the round trip");
    assert_eq!(
        a.result.as_ref().map(|r| r.get()),
        b.result.as_ref().map(|r| r.get()),
        "result changed in the round trip"
    );
    assert_eq!(a.error, b.error, "error changed in the round trip");
    assert_eq!(a.kind(), b.kind(), "kind changed in the round trip");
}
