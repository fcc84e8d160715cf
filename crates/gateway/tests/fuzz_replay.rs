//! The committed inputs of the `sealed_id` fuzz target (`fuzz/`), replayed through the same
//! check.

#[path = "../../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../../fuzz/checks/sealed_id.rs"]
mod sealed_id;

#[test]
fn sealed_id_inputs_replay() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "sealed_id", sealed_id::check);
}
