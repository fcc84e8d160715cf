//! The committed inputs of the wire fuzz targets (`fuzz/`), replayed through the same checks.

#[path = "../../../fuzz/checks/headers_2026.rs"]
mod headers_2026;
#[path = "../../../fuzz/checks/jsonrpc.rs"]
mod jsonrpc;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../../fuzz/checks/sse.rs"]
mod sse;

#[test]
fn jsonrpc_inputs_replay() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "jsonrpc", jsonrpc::check);
}

#[test]
fn sse_inputs_replay() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "sse", sse::check);
}

#[test]
fn headers_2026_inputs_replay() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "headers_2026",
        headers_2026::check,
    );
}
