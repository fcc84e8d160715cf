//! Loads a configuration file and prints every problem, one per line:
//! `cargo run -p gatehouse-config --example check -- gatehouse.yaml`.
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: check FILE");
        return ExitCode::from(2);
    };
    match gatehouse_config::load_file(&path) {
        Ok(config) => {
            println!(
                "{}: ok ({} servers, {} virtual servers)",
                path.display(),
                config.servers.len(),
                config.virtual_servers.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
