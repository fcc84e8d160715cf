//! Fuzz target `config_yaml`: the check lives in `fuzz/checks/config_yaml.rs`, shared with the replay test.
#![no_main]

#[path = "../checks/config_yaml.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
