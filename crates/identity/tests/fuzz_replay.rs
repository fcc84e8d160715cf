//! The committed inputs of the `jwt` fuzz target (`fuzz/`), replayed through the same check:
//! a real resource server with a JWKS file, tokens signed with a key made at start.

#[path = "../../../fuzz/checks/jwt.rs"]
mod jwt;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn jwt_inputs_replay() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "jwt", jwt::check);
}
