//! `gatehouse audit sinks`: each configured sink's delivered count, lag and last error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::audit::Location;

/// Output format of `audit sinks`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SinksFormat {
    /// One line per sink.
    Table,
    /// One JSON object per sink, one per line.
    Json,
}

/// Arguments of `audit sinks`.
#[derive(Debug, Args)]
pub struct SinksArgs {
    #[command(flatten)]
    location: Location,
    /// Database (default: `store.url` of the config, else SQLite in the data directory).
    #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
    database_url: Option<String>,
    /// Exit 1 when a sink is failing, or its oldest undelivered event is older than this
    /// (e.g. `5m`): for a cron job or a monitoring probe.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_lag: Option<Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SinksFormat::Table)]
    format: SinksFormat,
}

/// One sink's row.
struct Row {
    name: String,
    kind: String,
    destination: String,
    delivered: i64,
    rejected: i64,
    pending: u64,
    oldest: Option<String>,
    last_delivery: Option<i64>,
    last_error: Option<String>,
    failing_since: Option<i64>,
}

/// `audit sinks`: false (exit 1) when `--max-lag` is given and a sink is behind or failing.
pub async fn sinks(args: &SinksArgs) -> anyhow::Result<bool> {
    let config = args.location.config()?;
    let Some(config) = config else {
        anyhow::bail!("audit sinks needs --config: the sinks are defined in its audit.sinks");
    };
    let dir = args.location.journal_dir(Some(&config));
    let store = args
        .location
        .open_store(args.database_url.as_deref(), Some(&config))
        .await?;
    let cursors = store.sink_cursors();
    let status = cursors.status().await?;
    let mut rows = Vec::new();
    for sink in &config.audit.sinks {
        let lag = gatehouse_audit::sinks::lag::lag(&dir, &cursors.cursors(&sink.name).await?)?;
        let s = status.iter().find(|s| s.sink == sink.name);
        rows.push(Row {
            name: sink.name.clone(),
            kind: sink.kind.as_str().to_string(),
            destination: gatehouse_audit::sinks::destination(sink),
            delivered: s.map_or(0, |s| s.delivered),
            rejected: s.map_or(0, |s| s.rejected),
            pending: lag.lines,
            oldest: lag.oldest,
            last_delivery: s.and_then(|s| s.last_delivery),
            last_error: s.and_then(|s| s.last_error.clone()),
            failing_since: s.and_then(|s| s.failing_since),
        });
    }
    store.close().await;
    match args.format {
        SinksFormat::Json => {
            for r in &rows {
                println!(
                    "{}",
                    json!({
                        "name": r.name, "type": r.kind, "destination": r.destination,
                        "delivered": r.delivered, "rejected": r.rejected,
                        "pending": r.pending, "oldest_pending": r.oldest,
                        "last_delivery": r.last_delivery.map(rfc3339),
                        "last_error": r.last_error,
                        "failing_since": r.failing_since.map(rfc3339),
                    })
                );
            }
        }
        SinksFormat::Table => print_table(&rows),
    }
    if rows.is_empty() {
        eprintln!("no sinks are configured (audit.sinks)");
    }
    let Some(max) = args.max_lag else {
        return Ok(true);
    };
    let mut healthy = true;
    for r in &rows {
        if r.failing_since.is_some() {
            eprintln!(
                "{}: failing: {}",
                r.name,
                r.last_error.as_deref().unwrap_or("?")
            );
            healthy = false;
        }
        if let Some(age) = r.oldest.as_deref().and_then(age)
            && age > max
        {
            eprintln!(
                "{}: {} event(s) undelivered, the oldest {} old (more than {})",
                r.name,
                r.pending,
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(max)
            );
            healthy = false;
        }
    }
    Ok(healthy)
}

fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
        .to_string()
}

/// How long ago an RFC 3339 time was.
fn age(time: &str) -> Option<Duration> {
    let t = humantime::parse_rfc3339_weak(time).ok()?;
    SystemTime::now().duration_since(t).ok()
}

fn ago(unix: i64) -> String {
    let then = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    match SystemTime::now().duration_since(then) {
        Ok(d) => format!(
            "{} ago",
            humantime::format_duration(Duration::from_secs(d.as_secs()))
        ),
        Err(_) => "now".into(),
    }
}

fn print_table(rows: &[Row]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let lag = match (&r.oldest, r.pending) {
                (_, 0) => "0".to_string(),
                (Some(t), n) => format!(
                    "{n} (oldest {})",
                    age(t).map_or_else(
                        || t.clone(),
                        |d| format!(
                            "{} ago",
                            humantime::format_duration(Duration::from_secs(d.as_secs()))
                        )
                    )
                ),
                (None, n) => n.to_string(),
            };
            let error = match (&r.last_error, r.failing_since) {
                (Some(e), Some(since)) => format!("FAILING since {}: {e}", ago(since)),
                (Some(e), None) => format!("(recovered) {e}"),
                _ => "-".into(),
            };
            vec![
                r.name.clone(),
                r.kind.clone(),
                r.destination.clone(),
                if r.rejected > 0 {
                    format!("{} ({} rejected)", r.delivered, r.rejected)
                } else {
                    r.delivered.to_string()
                },
                lag,
                r.last_delivery.map_or_else(|| "never".into(), ago),
                error,
            ]
        })
        .collect();
    crate::table::print(
        &[
            "SINK",
            "TYPE",
            "DESTINATION",
            "DELIVERED",
            "PENDING",
            "LAST DELIVERY",
            "LAST ERROR",
        ],
        &cells,
    );
}
