//! `gatehouse audit …`: verify the journal's chains, query its index.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use gatehouse_store::AuditFilter;

/// Where the journal (and the store) are: the same flags as `gatehouse up`.
#[derive(Debug, Args)]
pub struct Location {
    /// Configuration file: its `audit.dir` and `store` are used.
    #[arg(long, short, env = "GATEHOUSE_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory `gatehouse up` used.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = ".gatehouse")]
    pub data_dir: PathBuf,
    /// The journal directory itself (overrides the config and the data directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl Location {
    /// The configuration, when `--config` was given.
    pub fn config(&self) -> anyhow::Result<Option<gatehouse_config::Config>> {
        self.config
            .as_ref()
            .map(|p| {
                gatehouse_config::load_file(p)
                    .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
            })
            .transpose()
    }

    /// The store: `database_url`, else the config's `store.url`, else SQLite in the data
    /// directory.
    pub async fn open_store(
        &self,
        database_url: Option<&str>,
        config: Option<&gatehouse_config::Config>,
    ) -> anyhow::Result<gatehouse_store::Store> {
        let url = database_url
            .map(str::to_string)
            .or_else(|| config?.store.as_ref().map(|s| s.url.clone()));
        Ok(gatehouse_store::Store::open_or_embedded(url.as_deref(), &self.data_dir).await?)
    }

    /// The key that signs the journal's checkpoints: the config's `audit.signing_key`, else
    /// `<data-dir>/keys/audit-signing.key` (where `gatehouse up` creates it).
    pub fn signing_key(&self, config: Option<&gatehouse_config::Config>) -> PathBuf {
        let defaults = gatehouse_config::AuditConfig::default();
        let audit = config.map_or(&defaults, |c| &c.audit);
        gatehouse_audit::journal::signing_key_path(audit, &self.data_dir).0
    }

    /// The journal directory: `--dir`, else the config's `audit.dir`, else the data
    /// directory's `audit/`.
    pub fn journal_dir(&self, config: Option<&gatehouse_config::Config>) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| config.and_then(|c| c.audit.dir.clone()))
            .unwrap_or_else(|| self.data_dir.join("audit"))
    }
}

/// Arguments of `audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    location: Location,
    /// Trust only checkpoints signed by this Ed25519 key (PEM public key, or the private key
    /// file). Default: the keys published in the journal's `keys/` folder.
    #[arg(long)]
    public_key: Option<PathBuf>,
}

/// Output format of `audit query`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum QueryFormat {
    /// One line per event.
    Table,
    /// The full events (with arguments), one JSON object per line.
    Json,
}

/// Arguments of `audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    location: Location,
    /// Database (default: `store.url` of the config, else SQLite in the data directory).
    #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
    database_url: Option<String>,
    /// Subject or e-mail of the caller.
    #[arg(long)]
    user: Option<String>,
    /// Tool, prompt or resource name.
    #[arg(long)]
    tool: Option<String>,
    /// Backend server.
    #[arg(long)]
    server: Option<String>,
    /// Virtual server.
    #[arg(long)]
    virtual_server: Option<String>,
    /// Outcome.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        ["ok", "error", "denied", "rejected", "unauthenticated", "forbidden", "cancelled"]))]
    outcome: Option<String>,
    /// Event type.
    #[arg(long = "type", value_parser = clap::builder::PossibleValuesParser::new(
        ["mcp.request", "auth.failure", "session.start", "session.end", "config.change",
         "policy.change", "journal.start", "anomaly", "retention"]))]
    kind: Option<String>,
    /// Since: a duration ago (`1h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Until: a duration ago or an RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
}

/// `audit verify`: true when every chain is intact.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<bool> {
    let config = args.location.config()?;
    let dir = args.location.journal_dir(config.as_ref());
    if !dir.is_dir() {
        anyhow::bail!(
            "{} is not a journal directory (pass --data-dir, --config or --dir)",
            dir.display()
        );
    }
    let key = args
        .public_key
        .as_deref()
        .map(gatehouse_audit::chain::read_public_key)
        .transpose()?;
    let report = gatehouse_audit::verify(&dir, key.as_ref())?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for d in &report.damages {
        println!("{d}");
    }
    let summary = format!(
        "{}: {} chain(s), {} event(s), {} signed checkpoint(s)",
        dir.display(),
        report.chains,
        report.events,
        report.checkpoints
    );
    if report.intact() {
        println!("{summary}: intact");
    } else {
        println!("{summary}: {} problem(s)", report.damages.len());
    }
    Ok(report.intact())
}

/// A `--since`/`--until` value as unix microseconds.
pub fn instant(text: &str) -> anyhow::Result<i64> {
    if let Some(us) = gatehouse_audit::index::unix_micros(text) {
        return Ok(us);
    }
    let ago = humantime::parse_duration(text)
        .with_context(|| format!("{text:?} is neither a duration (1h, 7d) nor an RFC 3339 time"))?;
    let t = std::time::SystemTime::now() - ago;
    let d = t.duration_since(std::time::UNIX_EPOCH)?;
    Ok(i64::try_from(d.as_micros())?)
}

/// `audit query`: brings the index up to date, then prints the matching events.
pub async fn query(args: &QueryArgs) -> anyhow::Result<bool> {
    let config = args.location.config()?;
    let dir = args.location.journal_dir(config.as_ref());
    let store = args
        .location
        .open_store(args.database_url.as_deref(), config.as_ref())
        .await?;
    let index = store.audit_index();
    gatehouse_audit::index::catch_up(&index, &dir)
        .await
        .with_context(|| format!("cannot index the journal in {}", dir.display()))?;
    let filter = AuditFilter {
        user: args.user.clone(),
        target: args.tool.clone(),
        server: args.server.clone(),
        virtual_server: args.virtual_server.clone(),
        outcome: args.outcome.clone(),
        kind: args.kind.clone(),
        since_us: args.since.as_deref().map(instant).transpose()?,
        until_us: args.until.as_deref().map(instant).transpose()?,
        limit: args.limit,
    };
    let rows = index.query(&filter).await?;
    match args.format {
        QueryFormat::Json => {
            for row in &rows {
                println!("{}", gatehouse_audit::index::read_event(&dir, row)?);
            }
        }
        QueryFormat::Table => print_table(&rows),
    }
    store.close().await;
    Ok(true)
}

fn print_table(rows: &[gatehouse_store::IndexedEvent]) {
    let time = |us: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.max(0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            vec![
                time(r.time_us),
                r.kind.clone(),
                r.outcome.clone(),
                r.email
                    .clone()
                    .or_else(|| r.subject.clone())
                    .unwrap_or_else(|| "-".into()),
                opt(&r.virtual_server),
                opt(&r.server),
                format!("{} {}", opt(&r.method), r.target.as_deref().unwrap_or(""))
                    .trim()
                    .to_string(),
                r.latency_us
                    .map_or_else(|| "-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
            ]
        })
        .collect();
    crate::table::print(
        &[
            "TIME", "TYPE", "OUTCOME", "USER", "ENDPOINT", "SERVER", "REQUEST", "LATENCY",
        ],
        &cells,
    );
    println!("({} event(s), newest first)", rows.len());
}
