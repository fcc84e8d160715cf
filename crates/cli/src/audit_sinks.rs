//! `gatehouse audit sinks`: each configured sink's lag and last error. (Scaffold.)

use clap::Args;

use crate::audit::Location;

/// Arguments of `audit sinks`.
#[derive(Debug, Args)]
pub struct SinksArgs {
    #[command(flatten)]
    location: Location,
}

/// `audit sinks`.
pub async fn sinks(args: &SinksArgs) -> anyhow::Result<bool> {
    let _ = &args.location;
    anyhow::bail!("audit sinks is not built yet")
}
