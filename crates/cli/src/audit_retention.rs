//! `gatehouse audit retention`: what `audit.retention` removes now, and (with `--apply`)
//! removing it, as `gatehouse up` does every hour.

use clap::Args;

use crate::audit::Location;

/// Arguments of `audit retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    location: Location,
    /// Database (default: `store.url` of the config, else SQLite in the data directory).
    #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
    database_url: Option<String>,
    /// Remove the expired segments (default: only show them).
    #[arg(long)]
    apply: bool,
}

/// `audit retention`.
pub async fn retention(args: &RetentionArgs) -> anyhow::Result<bool> {
    let Some(config) = args.location.config()? else {
        anyhow::bail!("audit retention needs --config: the periods are its audit.retention");
    };
    let policy = gatehouse_audit::retention::Retention::new(&config.audit.retention);
    if policy.keeps_everything() {
        println!("audit.retention is not set: the journal is kept forever");
        return Ok(true);
    }
    let dir = args.location.journal_dir(Some(&config));
    let now = std::time::SystemTime::now();
    if !args.apply {
        let plan = gatehouse_audit::retention::plan(&dir, &policy, now)?;
        for r in &plan {
            let names: Vec<&str> = r.segments.iter().map(|s| s.name.as_str()).collect();
            println!(
                "{}: {} segment(s), {} event(s), {} bytes{}: {}",
                r.instance,
                r.segments.len(),
                r.events(),
                r.bytes(),
                if r.whole_chain {
                    " (the whole chain)"
                } else {
                    ""
                },
                names.join(" ")
            );
        }
        println!(
            "{} segment file(s) past their retention; run with --apply to remove them",
            plan.iter().map(|r| r.segments.len()).sum::<usize>()
        );
        return Ok(true);
    }
    let (key, _) =
        gatehouse_audit::journal::signing_key_path(&config.audit, &args.location.data_dir);
    let signer = gatehouse_audit::chain::CheckpointSigner::load_or_create(&key, false)?;
    let store = args
        .location
        .open_store(args.database_url.as_deref(), Some(&config))
        .await?;
    let sinks: Vec<String> = config.audit.sinks.iter().map(|s| s.name.clone()).collect();
    let done =
        gatehouse_audit::retention::enforce(&dir, &policy, &signer, &store, &sinks, now).await;
    store.close().await;
    let done = done?;
    for a in &done.anchors {
        println!(
            "{}: removed through seq {}{}; signed anchor in retention/{}.jsonl",
            a.instance,
            a.through_seq,
            if a.whole_chain {
                " (the whole chain)"
            } else {
                ""
            },
            a.instance
        );
    }
    if !done.held_for_sinks.is_empty() {
        println!(
            "kept {} expired segment file(s) that a sink has not shipped yet (see gatehouse audit sinks)",
            done.held_for_sinks.len()
        );
    }
    println!(
        "removed {} segment file(s), {} event(s), {} bytes; {} usage rollup row(s)",
        done.removed.len(),
        done.events,
        done.bytes,
        done.rollups
    );
    Ok(true)
}
