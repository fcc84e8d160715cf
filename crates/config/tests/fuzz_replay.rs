//! The committed inputs of the `config_yaml` fuzz target (`fuzz/`), replayed through the same
//! check.

#[path = "../../../fuzz/checks/config_yaml.rs"]
mod config_yaml;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn config_yaml_inputs_replay() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "config_yaml",
        config_yaml::check,
    );
}
