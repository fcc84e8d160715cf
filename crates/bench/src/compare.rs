//! The comparison table shared by `--policy` and `--audit`: each scenario is measured at each
//! concurrency; the first row (the backend directly) is the throughput reference, the first
//! gateway row the latency reference.

use std::time::Duration;

use crate::{Args, cpu_us, load};

/// One row: name, URL, an extra header, and the gateway's pid (none for the direct row).
pub type Scenario<'a> = (&'a str, String, Option<(&'a str, &'a str)>, Option<u32>);

/// Warms every scenario, then prints the table (headed by `what`).
pub async fn run(what: &str, scenarios: &[Scenario<'_>], args: &Args) -> anyhow::Result<()> {
    for (_, url, header, _) in scenarios {
        load::run(url, 1, Duration::from_millis(500), *header).await?;
    }
    println!();
    println!(
        "| {what} | concurrency | calls/s | % of direct | p50 µs | p99 µs | added p50 µs | added p99 µs | gateway CPU µs/call |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let measure = Duration::from_secs(args.seconds);
    for &c in &args.concurrency {
        let mut direct_rate = None;
        let mut base: Option<(u64, u64)> = None;
        for (name, url, header, pid) in scenarios {
            load::run(url, c, Duration::from_secs(1), *header).await?;
            let before = pid.map(cpu_us);
            let o = load::run(url, c, measure, *header).await?;
            let cpu = match (pid, before) {
                (Some(p), Some(b)) => format!(
                    "{:.0}",
                    cpu_us(*p).saturating_sub(b) as f64 / o.calls() as f64
                ),
                _ => String::new(),
            };
            let rate = o.throughput();
            let share = match direct_rate {
                None => {
                    direct_rate = Some(rate);
                    String::new()
                }
                Some(d) => format!("{:.0}%", 100.0 * rate / d),
            };
            let (p50, p99) = (o.p(50.0), o.p(99.0));
            let (added50, added99) = match (pid, base) {
                (None, _) => (String::new(), String::new()),
                (Some(_), None) => {
                    base = Some((p50, p99));
                    (String::new(), String::new())
                }
                (Some(_), Some((b50, b99))) => (
                    format!("{:+}", p50 as i64 - b50 as i64),
                    format!("{:+}", p99 as i64 - b99 as i64),
                ),
            };
            println!(
                "| {name} | {c} | {rate:.0} | {share} | {p50} | {p99} | {added50} | {added99} | {cpu} |"
            );
        }
    }
    Ok(())
}
