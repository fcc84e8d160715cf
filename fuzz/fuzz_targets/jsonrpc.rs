//! Fuzz target `jsonrpc`: the check lives in `fuzz/checks/jsonrpc.rs`, shared with the replay test.
#![no_main]

#[path = "../checks/jsonrpc.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
