//! Fuzz target `jwt`: the check lives in `fuzz/checks/jwt.rs`, shared with the replay test.
#![no_main]

#[path = "../checks/jwt.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
