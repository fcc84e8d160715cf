//! `gatehouse_wire::sse::Decoder` fed one input whole and split into chunks.
//!
//! The first 8 bytes seed the chunk sizes (1 to 32 bytes); the rest is the stream.
//! Invariants: the events do not depend on how the stream was split; what the decoder holds
//! (`buffered()`) stays within 3× what it was fed (an invalid UTF-8 byte becomes a 3-byte
//! U+FFFD in the event's data, and `buffered()` reports the memory really held); every
//! decoded event re-encodes (`encode`) to bytes that decode to the same event (the gateway
//! re-frames backend events that way).

use gatehouse_wire::sse::{Decoder, Event, encode};

/// Runs the check on one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    let (seed, stream) = data.split_at(data.len().min(8));
    let mut state = seed.iter().fold(0x9e37_79b9_7f4a_7c15u64, |s, b| {
        (s ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;

    let mut whole = Decoder::new();
    let one = whole.feed(stream);
    assert!(
        whole.buffered() <= 3 * stream.len(),
        "buffered {} > 3 × fed {}",
        whole.buffered(),
        stream.len()
    );

    let mut chunked = Decoder::new();
    let mut many = Vec::new();
    let mut fed = 0;
    while fed < stream.len() {
        // xorshift64: cheap, deterministic chunk sizes.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (state % 32) as usize + 1;
        let end = (fed + size).min(stream.len());
        many.extend(chunked.feed(&stream[fed..end]));
        fed = end;
        assert!(
            chunked.buffered() <= 3 * fed,
            "buffered {} > 3 × fed {fed}",
            chunked.buffered()
        );
    }
    assert_eq!(one, many, "events depend on how the stream was split");
    assert_eq!(whole.buffered(), chunked.buffered());

    for ev in &one {
        let bytes = encode(ev.id.as_deref(), ev.event.as_deref(), &ev.data);
        let back = Decoder::new().feed(&bytes);
        let expected = Event {
            retry: None,
            ..ev.clone()
        };
        assert_eq!(back, vec![expected], "re-encoded event decodes differently");
    }
}
