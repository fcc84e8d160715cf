//! Fuzz target `headers_2026`: the check lives in `fuzz/checks/headers_2026.rs`, shared with the replay test.
#![no_main]

#[path = "../checks/headers_2026.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
