//! `gatehouse usage report`: calls, errors, latency, bytes and estimated tokens per user,
//! group, tenant, server or tool, from the usage rollups in the store. (Scaffold.)

use clap::Args;

use crate::audit::Location;

/// Arguments of `usage report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    location: Location,
}

/// `usage report`.
pub async fn report(args: &ReportArgs) -> anyhow::Result<bool> {
    let _ = &args.location;
    anyhow::bail!("usage report is not built yet")
}
