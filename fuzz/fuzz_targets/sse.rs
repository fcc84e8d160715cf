//! Fuzz target `sse`: the check lives in `fuzz/checks/sse.rs`, shared with the replay test.
#![no_main]

#[path = "../checks/sse.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
