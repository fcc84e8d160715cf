//! `gatehouse audit export`: writes a time range of the journal, in a SIEM's layout, to a
//! folder the user controls, with a manifest, checksums and a signature.
//!
//! Exit codes: 0 when the export is written and the source journal verified intact; 1 when
//! it is written but `verify` found damage in the journal (the manifest lists it, so the
//! export stays an honest copy of what is there); 2 for usage errors and for exports that
//! could not be written.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use gatehouse_audit::export::{ExportOptions, VerifySummary, export as write_export};
use gatehouse_config::EventFormat;

use crate::audit::{Location, instant};

/// Layout of the exported events.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    /// The journal's own lines, byte for byte (hash chain fields included).
    Jsonl,
    /// OCSF API Activity (class 6003) JSON, one per line.
    Ocsf,
    /// Elastic Common Schema JSON, one per line.
    Ecs,
    /// ArcSight Common Event Format, one per line.
    Cef,
}

impl From<ExportFormat> for EventFormat {
    fn from(f: ExportFormat) -> EventFormat {
        match f {
            ExportFormat::Jsonl => EventFormat::Jsonl,
            ExportFormat::Ocsf => EventFormat::Ocsf,
            ExportFormat::Ecs => EventFormat::Ecs,
            ExportFormat::Cef => EventFormat::Cef,
        }
    }
}

/// Arguments of `audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    location: Location,
    /// Events at or after this time: a duration ago (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_instant)]
    since: Option<i64>,
    /// Events before this time (exclusive): a duration ago or an RFC 3339 time.
    #[arg(long, value_parser = parse_instant)]
    until: Option<i64>,
    /// Layout of the event files.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    /// Where the export goes (created; must be empty).
    #[arg(long)]
    out: PathBuf,
    /// Verify the journal's hash chains first and record the result in the manifest
    /// (default).
    #[arg(long, overrides_with = "no_verify")]
    verify: bool,
    /// Skip verification (the manifest says it was not run).
    #[arg(long, overrides_with = "verify")]
    no_verify: bool,
    /// Start a new event file once one holds this many bytes.
    #[arg(long, default_value_t = 128 * 1024 * 1024)]
    max_file_bytes: u64,
    /// Sign the manifest with this private key instead of the journal's signing key.
    #[arg(long)]
    signing_key: Option<PathBuf>,
}

fn parse_instant(text: &str) -> Result<i64, String> {
    instant(text).map_err(|e| format!("{e:#}"))
}

/// `audit export`: true when written from an intact (or unverified) journal.
pub fn export(args: &ExportArgs) -> anyhow::Result<bool> {
    let config = args.location.config()?;
    let journal = args.location.journal_dir(config.as_ref());
    if !journal.is_dir() {
        anyhow::bail!(
            "{} is not a journal directory (pass --data-dir, --config or --dir)",
            journal.display()
        );
    }
    if let (Some(s), Some(u)) = (args.since, args.until)
        && s >= u
    {
        anyhow::bail!("--since must be before --until");
    }
    let verified = if args.no_verify {
        None
    } else {
        let report = gatehouse_audit::verify(&journal, None)?;
        for d in &report.damages {
            eprintln!("verify: {d}");
        }
        Some(VerifySummary::from(&report))
    };
    let options = ExportOptions {
        journal: journal.clone(),
        out: args.out.clone(),
        format: args.format.into(),
        since: args.since,
        until: args.until,
        max_file_bytes: args.max_file_bytes,
        signing_key: Some(
            args.signing_key
                .clone()
                .unwrap_or_else(|| args.location.signing_key(config.as_ref())),
        ),
        verified,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_message("reading the journal");
        b
    });
    let done = write_export(&options, &mut |lines| {
        if let Some(b) = &bar {
            b.set_position(lines);
            b.set_message(format!("{lines} journal lines read"));
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let done = done?;
    let m = &done.manifest;
    if let Some(why) = &done.unsigned {
        eprintln!("warning: the manifest is not signed: {why}");
    }
    println!(
        "exported {} event(s) from {} chain(s) into {} ({} file(s), {})",
        m.events,
        m.chains.len(),
        args.out.display(),
        m.files.len(),
        match &m.signature.key_id {
            Some(id) => format!("manifest signed by key {id}"),
            None => "manifest unsigned".to_string(),
        }
    );
    println!(
        "check it with: (cd {} && sha256sum -c SHA256SUMS)",
        args.out.display()
    );
    match &m.verify {
        Some(v) if !v.intact => {
            eprintln!(
                "the source journal has {} problem(s); they are listed in the manifest",
                v.damages.len()
            );
            Ok(false)
        }
        _ => Ok(true),
    }
}
