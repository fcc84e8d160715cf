//! `gatehouse usage report`: calls, errors, latency, bytes and estimated tokens per user,
//! group, tenant, virtual server, server or tool, from the usage rollups in the store.

use anyhow::Context;
use clap::{Args, ValueEnum};
use gatehouse_store::{UsageBy, UsageCounts, UsageRow};
use serde_json::json;

use crate::audit::{Location, instant};

/// What the report adds up by.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum By {
    /// The caller (subject, shown with its e-mail).
    User,
    /// Each group of the caller (a call counts once under each of its caller's groups).
    Group,
    /// The caller's tenant.
    Tenant,
    /// The virtual server (endpoint).
    VirtualServer,
    /// The backend server.
    Server,
    /// The tool, prompt or resource.
    Tool,
}

impl By {
    fn store(self) -> UsageBy {
        match self {
            By::User => UsageBy::User,
            By::Group => UsageBy::Group,
            By::Tenant => UsageBy::Tenant,
            By::VirtualServer => UsageBy::VirtualServer,
            By::Server => UsageBy::Server,
            By::Tool => UsageBy::Tool,
        }
    }

    fn heading(self) -> &'static str {
        match self {
            By::User => "user",
            By::Group => "group",
            By::Tenant => "tenant",
            By::VirtualServer => "virtual_server",
            By::Server => "server",
            By::Tool => "tool",
        }
    }
}

/// Output format of `usage report`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// Aligned columns with a totals line.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON array.
    Json,
}

/// Arguments of `usage report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    location: Location,
    /// Database (default: `store.url` of the config, else SQLite in the data directory).
    #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
    database_url: Option<String>,
    /// What to add up by.
    #[arg(long, value_enum, default_value_t = By::User)]
    by: By,
    /// Since: a duration ago (`24h`, `30d`) or an RFC 3339 time; rounded down to the hour.
    #[arg(long, default_value = "30d")]
    since: String,
    /// Until: a duration ago or an RFC 3339 time; rounded up to the hour. Default: now.
    #[arg(long)]
    until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    /// At most this many lines, most calls first.
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

const HOUR_US: i64 = 3_600_000_000;

/// `usage report`: brings the index (and with it the rollups) up to date, then prints usage.
pub async fn report(args: &ReportArgs) -> anyhow::Result<bool> {
    if args.limit < 1 {
        anyhow::bail!("--limit must be at least 1 (got {})", args.limit);
    }
    let since_hour = instant(&args.since)?.div_euclid(HOUR_US) * 3600;
    let until_hour = match &args.until {
        Some(u) => (instant(u)? + HOUR_US - 1).div_euclid(HOUR_US) * 3600,
        None => i64::MAX / 2,
    };
    if until_hour <= since_hour {
        anyhow::bail!("--until must be later than --since");
    }
    let config = args.location.config()?;
    let dir = args.location.journal_dir(config.as_ref());
    let store = args
        .location
        .open_store(args.database_url.as_deref(), config.as_ref())
        .await?;
    if dir.is_dir() {
        gatehouse_audit::index::catch_up(&store.audit_index(), &dir)
            .await
            .with_context(|| format!("cannot index the journal in {}", dir.display()))?;
    }
    let rows = store
        .usage()
        .report(args.by.store(), since_hour, until_hour, args.limit)
        .await?;
    store.close().await;
    let out = match args.format {
        ReportFormat::Table => table(args.by, &rows, args.limit),
        ReportFormat::Csv => csv(args.by, &rows),
        ReportFormat::Json => serde_json::to_string_pretty(&json_rows(args.by, &rows))? + "\n",
    };
    print!("{out}");
    Ok(true)
}

fn label(by: By, row: &UsageRow) -> String {
    if let Some(email) = row.email.as_ref().filter(|_| by == By::User) {
        return email.clone();
    }
    match (by, row.key.is_empty()) {
        (By::User, true) => "(anonymous)".into(),
        (_, true) => "(none)".into(),
        _ => row.key.clone(),
    }
}

fn ms(us: Option<i64>) -> Option<f64> {
    us.map(|us| (us as f64 / 10.0).round() / 100.0)
}

fn json_rows(by: By, rows: &[UsageRow]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            let c = &r.counts;
            let mut v = json!({
                by.heading(): r.key,
                "calls": c.calls,
                "errors": c.errors,
                "tool_errors": c.tool_errors,
                "error_rate": (c.error_rate() * 10_000.0).round() / 10_000.0,
                "denied": c.denied,
                "avg_latency_ms": ms(c.mean_latency_us()),
                "p95_latency_ms": ms(c.p95_us()),
                "max_latency_ms": ms((c.timed > 0).then_some(c.latency_max_us)),
                "request_bytes": c.request_bytes,
                "response_bytes": c.response_bytes,
                "estimated_tokens": c.tokens,
            });
            if by == By::User {
                v["email"] = json!(r.email);
            }
            v
        })
        .collect()
}

/// The cells of one line, in the order of [`HEADINGS`] after the key.
fn cells(c: &UsageCounts) -> Vec<String> {
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.2}"));
    vec![
        c.calls.to_string(),
        (c.errors + c.tool_errors).to_string(),
        format!("{:.2}", c.error_rate() * 100.0),
        c.denied.to_string(),
        opt(ms(c.mean_latency_us())),
        opt(ms(c.p95_us())),
        opt(ms((c.timed > 0).then_some(c.latency_max_us))),
        c.request_bytes.to_string(),
        c.response_bytes.to_string(),
        c.tokens.to_string(),
    ]
}

const HEADINGS: [&str; 10] = [
    "calls",
    "errors",
    "error_rate_pct",
    "denied",
    "avg_latency_ms",
    "p95_latency_ms",
    "max_latency_ms",
    "request_bytes",
    "response_bytes",
    "estimated_tokens",
];

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled; CRLF lines.
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn csv(by: By, rows: &[UsageRow]) -> String {
    let mut out = String::new();
    let user = by == By::User;
    let mut header = vec![by.heading()];
    if user {
        header.push("email");
    }
    header.extend(HEADINGS);
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for r in rows {
        let mut line = vec![csv_field(&r.key)];
        if user {
            line.push(csv_field(r.email.as_deref().unwrap_or("")));
        }
        line.extend(cells(&r.counts).iter().map(|c| csv_field(c)));
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn table(by: By, rows: &[UsageRow], limit: i64) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut header = vec![by.heading().replace('_', " ").to_uppercase()];
    header.extend(
        [
            "CALLS",
            "ERRORS",
            "ERR%",
            "DENIED",
            "AVG MS",
            "P95 MS",
            "MAX MS",
            "REQ BYTES",
            "RESP BYTES",
            "EST TOKENS",
        ]
        .map(String::from),
    );
    lines.push(header);
    let mut total = UsageCounts::default();
    for r in rows {
        total.add(&r.counts);
        let mut line = vec![label(by, r)];
        line.extend(cells(&r.counts));
        lines.push(line);
    }
    let shown = if rows.len() as i64 >= limit {
        "TOTAL (lines shown)"
    } else {
        "TOTAL"
    };
    let mut line = vec![shown.to_string()];
    line.extend(cells(&total));
    lines.push(line);
    let mut widths = vec![0; lines[0].len()];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut text = String::new();
        for (i, c) in l.iter().enumerate() {
            if i == 0 {
                text.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                text.push_str(&format!("{c:>w$}  ", w = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    if by == By::Group {
        out.push_str("(a call counts once under each group of its caller)\n");
    }
    out.push_str(&format!(
        "(tokens: estimated as response bytes / {} for {})\n",
        gatehouse_audit::usage::BYTES_PER_TOKEN,
        gatehouse_audit::usage::CONTEXT_METHODS.join(", ")
    ));
    out
}
