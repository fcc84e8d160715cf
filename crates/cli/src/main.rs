//! `gatehouse`: run, govern and observe Model Context Protocol servers.
//!
//! The binary only wires the library crates together: parse arguments, load the config, start
//! the gateway, handle signals.

mod audit;
mod audit_export;
mod audit_retention;
mod audit_sinks;
mod background;
mod demo;
mod login;
mod policy;
mod secret;
mod supervisor;
mod table;
mod up;
mod usage;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Gatehouse — one binary that runs, governs and observes the MCP servers your AI agents call.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, long_about = None, propagate_version = true,
    after_help = "Examples:\n  gatehouse up                                  built-in demo at http://127.0.0.1:8080/mcp\n  gatehouse up --config gatehouse.yaml          your servers; edits reload live\n  gatehouse validate --config gatehouse.yaml    check a config, every problem with its position\n  gatehouse schema > gatehouse.schema.json      JSON Schema for editors")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for log pipelines.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Authorize Gatehouse to act for you at a server with `user_oauth` credentials: opens the
    /// server's sign-in page and waits until the gateway has stored your grant.
    Login {
        /// The server (as named in the gateway's config).
        server: String,
        /// The MCP endpoint that includes the server, e.g. https://mcp.example.com/eng.
        #[arg(long, env = "GATEHOUSE_URL")]
        url: String,
        /// Your access token for that endpoint (as your MCP client sends it).
        #[arg(long, env = "GATEHOUSE_TOKEN", hide_env_values = true)]
        token: String,
        /// Print the URL instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// Authorize again even if a grant is stored (e.g. to change account or scopes).
        #[arg(long)]
        force: bool,
        /// How long to wait for the browser flow.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Start the gateway. Without --config, serves a built-in demo MCP server at /mcp (offline).
    Up {
        /// Configuration file (YAML). Watched: edits apply without a restart; invalid edits are
        /// rejected and the running configuration keeps serving.
        #[arg(long, short, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
        /// Where Gatehouse keeps its state (keys, later the database and audit journal).
        #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = ".gatehouse")]
        data_dir: PathBuf,
        /// Database for persistent state: `sqlite://PATH` or `postgres://…` (overrides `store.url`;
        /// default: SQLite at <data-dir>/gatehouse.db).
        #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
        database_url: Option<String>,
        /// Address to listen on (overrides `gateway.listen` in the config). Port 0 picks a free port.
        #[arg(long, env = "GATEHOUSE_LISTEN")]
        listen: Option<String>,
        /// Allow virtual servers without `auth` on a non-loopback address. Without it, Gatehouse
        /// refuses to expose unauthenticated endpoints beyond this machine.
        #[arg(long)]
        insecure: bool,
        /// Serve Prometheus `/metrics` on this address (overrides `admin.listen`; off unless
        /// set, except for the built-in demo, which picks a free loopback port).
        #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN")]
        admin_listen: Option<String>,
        /// The vault's key file (users' tokens and `gatehouse secret`'s secrets are sealed with
        /// it): one base64url key per line, e.g. a mounted Kubernetes Secret that every replica
        /// reads. Default: GATEHOUSE_VAULT_KEY, else <data-dir>/keys/vault.key (made on first
        /// start).
        #[arg(long, env = "GATEHOUSE_SECRETS_KEY_FILE")]
        secrets_key_file: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Human, env = "GATEHOUSE_LOG_FORMAT")]
        log_format: LogFormat,
        /// Worker threads (default: one per CPU). 1 runs everything on one thread, which avoids
        /// cross-thread wake-ups and gives the lowest latency on small machines.
        #[arg(long, env = "GATEHOUSE_WORKERS")]
        workers: Option<usize>,
        /// Log filter, e.g. `info` or `gatehouse_gateway=debug` (RUST_LOG also works).
        #[arg(long, default_value = "info", env = "GATEHOUSE_LOG")]
        log: String,
    },
    /// Check a configuration file and print every problem with file, line, column and field.
    Validate {
        /// Configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the JSON Schema of the configuration file (for editors and CI checks).
    Schema {
        /// Print the configuration reference as Markdown instead (every field with its type,
        /// default and description; the text of docs/reference/configuration.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Work with the policy set of a configuration: test it, explain a decision, print the
    /// Cedar schema policies are validated against.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Work with the audit journal: verify its hash chains, query its index, export it,
    /// watch its sinks, apply its retention.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Who used what: calls, errors, latency, bytes and estimated tokens, for chargeback.
    Usage {
        #[command(subcommand)]
        command: UsageCommand,
    },
    /// Keep secrets for local servers (`store:NAME` in `isolation.secrets`): set one from
    /// standard input, list their names, remove one. Values are sealed in the store and never
    /// printed.
    Secret {
        #[command(subcommand)]
        command: secret::SecretCommand,
    },
    /// Run the built-in demo MCP server on stdin/stdout (what `gatehouse up` runs by default).
    DemoServer,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every hash chain and signed checkpoint of the journal: exit 0 when intact, 1
    /// naming the file, line and kind of each edit, deletion, reordering or truncation.
    Verify(audit::VerifyArgs),
    /// Find events by user, tool, server, outcome, type and time (newest first), as a table
    /// or as the full JSON events.
    Query(Box<audit::QueryArgs>),
    /// Write a time range of the journal as jsonl, OCSF, ECS or CEF into a folder, with a
    /// manifest and SHA-256 checksums.
    Export(Box<audit_export::ExportArgs>),
    /// Show each sink's delivered count, lag and last error.
    Sinks(Box<audit_sinks::SinksArgs>),
    /// Show (or, with --apply, remove) the segment files past audit.retention; the journal
    /// still verifies afterwards.
    Retention(Box<audit_retention::RetentionArgs>),
}

#[derive(Debug, Subcommand)]
enum UsageCommand {
    /// Calls, errors, latency, bytes and estimated tokens by user, group, tenant, server or
    /// tool.
    Report(Box<usage::ReportArgs>),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Run the `*.tests.yaml` cases next to the policies and print a table; exits 1 when a
    /// case fails.
    Test {
        /// Configuration file (YAML) with a `policies` block.
        #[arg(long, short, env = "GATEHOUSE_CONFIG")]
        config: PathBuf,
    },
    /// Decide one request and show which policies decided it (exit 0 allow, 1 deny).
    Explain(Box<policy::ExplainArgs>),
    /// Print Gatehouse's Cedar schema (entities, actions, context).
    Schema,
}

fn main() -> ExitCode {
    // The sandbox's helper runs before anything else (no threads, no runtime): it restricts
    // itself and becomes the server. The gateway runs it; it is not for people.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(gatehouse_runtime::exec::SUBCOMMAND) {
        let error = gatehouse_runtime::exec::run(&args[2..]);
        eprintln!("gatehouse sandbox: {error}");
        return ExitCode::from(126);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Up {
            config,
            data_dir,
            listen,
            database_url,
            insecure,
            admin_listen,
            secrets_key_file,
            workers,
            log_format,
            log,
        } => {
            init_logging(log_format, &log);
            let runtime = match workers {
                Some(1) => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                Some(n) => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n.max(1))
                    .enable_all()
                    .build(),
                None => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build(),
            }
            .expect("tokio runtime");
            match runtime.block_on(up::run(up::UpArgs {
                config,
                data_dir,
                listen,
                database_url,
                insecure,
                admin_listen,
                secrets_key_file,
            })) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Login {
            server,
            url,
            token,
            no_browser,
            force,
            timeout,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(login::run(login::LoginArgs {
                server,
                url,
                token,
                open_browser: !no_browser,
                force,
                timeout,
            })) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { config } => match gatehouse_config::load_file(&config) {
            Ok(c) => {
                for note in c
                    .servers
                    .iter()
                    .filter_map(gatehouse_runtime::default_profile_note)
                {
                    println!("note: {note}");
                }
                for note in c
                    .servers
                    .iter()
                    .filter_map(gatehouse_runtime::install_note)
                    .chain(c.servers.iter().filter_map(gatehouse_runtime::egress::note))
                    .chain(
                        c.servers
                            .iter()
                            .filter_map(gatehouse_runtime::container::http_note),
                    )
                {
                    println!("note: {note}");
                }
                for warning in validate::internal_url_warnings(&c) {
                    println!("warning: {warning}");
                }
                println!(
                    "{}: valid ({} server(s), {} virtual server(s))",
                    config.display(),
                    c.servers.len(),
                    c.virtual_servers.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: {} problem(s)", config.display(), errors.len());
                ExitCode::FAILURE
            }
        },
        Command::Schema { markdown: true } => {
            print!("{}", gatehouse_config::reference_markdown());
            ExitCode::SUCCESS
        }
        Command::Schema { markdown: false } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&gatehouse_config::json_schema())
                    .expect("schema serialises")
            );
            ExitCode::SUCCESS
        }
        Command::Policy { command } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let outcome = match command {
                PolicyCommand::Test { config } => runtime.block_on(policy::test(&config)),
                PolicyCommand::Explain(args) => runtime.block_on(policy::explain(&args)),
                PolicyCommand::Schema => {
                    print!("{}", gatehouse_policy::GATEHOUSE_SCHEMA);
                    Ok(true)
                }
            };
            verdict(outcome)
        }
        Command::Audit { command } => {
            let outcome = match command {
                AuditCommand::Verify(args) => audit::verify(&args),
                AuditCommand::Query(args) => current_thread().block_on(audit::query(&args)),
                AuditCommand::Export(args) => audit_export::export(&args),
                AuditCommand::Sinks(args) => current_thread().block_on(audit_sinks::sinks(&args)),
                AuditCommand::Retention(args) => {
                    current_thread().block_on(audit_retention::retention(&args))
                }
            };
            verdict(outcome)
        }
        Command::Usage { command } => {
            let outcome = match command {
                UsageCommand::Report(args) => current_thread().block_on(usage::report(&args)),
            };
            verdict(outcome)
        }
        Command::Secret { command } => verdict(current_thread().block_on(secret::run(&command))),
        Command::DemoServer => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(demo::run()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo-server: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The exit code of a check: 0 passed, 1 failed, 2 could not run.
/// A runtime for one command.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn verdict(outcome: anyhow::Result<bool>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
