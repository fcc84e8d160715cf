//! `gatehouse audit export`: writes a time range of the journal, in a SIEM's layout, to a
//! folder the user controls, with a manifest and checksums. (Scaffold.)

use std::path::PathBuf;

use clap::Args;

use crate::audit::Location;

/// Arguments of `audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    location: Location,
    /// Where the export goes (created; must be empty).
    #[arg(long)]
    out: PathBuf,
}

/// `audit export`.
pub fn export(args: &ExportArgs) -> anyhow::Result<bool> {
    let _ = (&args.location, &args.out);
    anyhow::bail!("audit export is not built yet")
}
