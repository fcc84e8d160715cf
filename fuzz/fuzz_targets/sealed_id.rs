//! Fuzz target `sealed_id`: the check lives in `fuzz/checks/sealed_id.rs`, shared with the replay test.
#![no_main]

#[path = "../checks/sealed_id.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
