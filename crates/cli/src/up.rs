//! `gatehouse up`: load the config (or the built-in demo), start the gateway, drain on signals.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gatehouse_config::Config;
use gatehouse_gateway::Gateway;
use gatehouse_gateway::listen::ListenerConfig;
use gatehouse_gateway::seal::Keyring;

/// Most connections the admin listener (metrics, health) holds at once: scrapers and probes
/// need few, and its descriptors come out of the gateway listener's share.
const ADMIN_MAX_CONNECTIONS: u32 = 64;

/// How long shutdown waits for the background workers (index, retention, sinks) to stop; a
/// sink in the middle of a slow delivery is left to end with the process.
const BACKGROUND_STOP: Duration = Duration::from_secs(10);

/// Arguments of `gatehouse up`.
pub struct UpArgs {
    pub config: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub insecure: bool,
    pub admin_listen: Option<String>,
    pub secrets_key_file: Option<PathBuf>,
}

/// Refuses (unless `insecure`) a config that exposes an endpoint without `auth` on an address
/// other machines can reach.
pub fn check_exposure(config: &Config, listen: SocketAddr, insecure: bool) -> Result<(), String> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    let open: Vec<&str> = config
        .virtual_servers
        .iter()
        .filter(|v| v.auth.is_none())
        .map(|v| v.path.as_str())
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    if insecure {
        tracing::warn!(%listen, endpoints = ?open, "--insecure: serving endpoints without authentication on a non-loopback address; anyone who can reach it can call their tools");
        return Ok(());
    }
    Err(format!(
        "refusing to serve {} without authentication on {listen}, which other machines can reach: add an auth section to each (see docs/identity.md), listen on 127.0.0.1, or pass --insecure",
        open.join(", ")
    ))
}

/// The runtimes local servers start in: the sandbox's helper is this binary.
fn runtimes(
    vault: &Arc<gatehouse_identity::outbound::Vault>,
    data_dir: &Path,
) -> anyhow::Result<gatehouse_runtime::Runtimes> {
    let helper = std::env::current_exe()
        .context("cannot locate the gatehouse binary (the sandbox's helper)")?;
    let landlock_max_abi = match std::env::var("GATEHOUSE_LANDLOCK_MAX_ABI") {
        Ok(v) => Some(v.parse::<u8>().with_context(|| {
            format!("GATEHOUSE_LANDLOCK_MAX_ABI={v:?}: expected a Landlock ABI number such as 2")
        })?),
        Err(_) => None,
    };
    let egress_resolver = match std::env::var("GATEHOUSE_EGRESS_RESOLVER") {
        Ok(v) => Some(v.parse().with_context(|| {
            format!("GATEHOUSE_EGRESS_RESOLVER={v:?}: expected a DNS server's address and port such as 10.0.0.2:53")
        })?),
        Err(_) => None,
    };
    Ok(gatehouse_runtime::RuntimesConfig {
        egress_resolver,
        helper: Some(helper),
        landlock_max_abi,
        bwrap: None,
        secrets: Some(Arc::new(crate::secret::VaultSecrets(vault.clone()))),
        packages: Some(data_dir.join("packages")),
        // Detected: GATEHOUSE_CONTAINER_HOST, DOCKER_HOST, then Podman's and Docker's sockets.
        container_host: None,
    }
    .build())
}

fn demo_config() -> anyhow::Result<Config> {
    let exe = std::env::current_exe()
        .context("cannot locate the gatehouse binary for the demo server")?;
    let exe = serde_json::to_string(&exe.display().to_string())?;
    // The demo server is Gatehouse's own code: sandboxed where the sandbox can be built, a
    // plain process elsewhere (said in the log), so `gatehouse up` works on every machine.
    // Configured servers never get this fallback.
    let runtime = match gatehouse_runtime::probe::sandbox(None) {
        Ok(_) => "sandbox",
        Err(why) => {
            tracing::warn!("the built-in demo server runs without isolation: {why}");
            "process"
        }
    };
    let isolation = format!("    isolation: {{ runtime: {runtime} }}\n");
    let yaml = format!(
        "servers:\n  - name: demo\n    command: {exe}\n    args: [demo-server]\n{isolation}virtual_servers:\n  - name: demo\n    path: /mcp\n    include:\n      - server: demo\n"
    );
    gatehouse_config::load_str(&yaml, Path::new("<built-in demo>"), &|_| None)
        .map_err(|e| anyhow::anyhow!("built-in demo config: {e}"))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .unwrap_or(args.data_dir.clone());
    let config = match &args.config {
        Some(path) => gatehouse_config::load_file(path)
            .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?,
        None => demo_config()?,
    };
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| config.gateway.listen.clone());
    let listen: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an IP:port address"))?;
    let keys = Keyring::load_or_create(&data_dir)?;
    // The store is opened (and migrated) before anything listens: a database this binary cannot
    // use stops the start with the reason, instead of failing requests later.
    let database_url = args
        .database_url
        .clone()
        .or_else(|| config.store.as_ref().map(|s| s.url.clone()));
    let store =
        gatehouse_store::Store::open_or_embedded(database_url.as_deref(), &data_dir).await?;
    let store_label = match &database_url {
        Some(url) => gatehouse_store::redact_url(url),
        None => data_dir.join("gatehouse.db").display().to_string(),
    };
    check_exposure(&config, listen, args.insecure).map_err(|e| anyhow::anyhow!(e))?;
    // Read before anything listens: a listener that cannot serve TLS must not start at all.
    let tls = match &config.gateway.tls {
        Some(t) => Some(tls_config(&t.cert, &t.key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    let vault = Arc::new(
        gatehouse_identity::outbound::Vault::open(
            &data_dir,
            args.secrets_key_file.as_deref(),
            store.credentials(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let policies = gatehouse_gateway::authz::load(&config)
        .await
        .map_err(|e| anyhow::anyhow!("the policy set cannot be used:\n{e}"))?;
    let auditor = open_audit(&config, &data_dir)?;
    let instance = auditor
        .as_ref()
        .map_or_else(|| bound.to_string(), |a| a.journal().instance().to_string());
    let telemetry = gatehouse_telemetry::Telemetry::start(
        &config.telemetry.clone().unwrap_or_default(),
        &instance,
    )
    .context("cannot start telemetry (see telemetry.otlp)")?;
    if let Some(a) = &auditor {
        let journal = a.journal().clone();
        telemetry
            .metrics()
            .set_audit_queue_depth(move || journal.stats().queued as u64);
        let metrics = telemetry.metrics().clone();
        a.journal()
            .on_truncated(move |field| metrics.audit_field_truncated(field));
    }
    telemetry
        .metrics()
        .set_log_fields_truncated(gatehouse_audit::bound::log_cuts);
    // The built-in demo shows its metrics on an ephemeral loopback port.
    let admin_listen = args
        .admin_listen
        .clone()
        .or_else(|| config.admin.as_ref().map(|a| a.listen.clone()))
        .or_else(|| args.config.is_none().then(|| "127.0.0.1:0".to_string()));
    let admin = match admin_listen {
        Some(addr) => {
            let addr: SocketAddr = addr
                .parse()
                .with_context(|| format!("--admin-listen {addr:?} is not an IP:port address"))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (admin)"))?;
            let local = listener.local_addr()?;
            let router = gatehouse_telemetry::admin_router(telemetry.metrics().clone());
            let admin = ListenerConfig {
                name: "admin",
                limits: gatehouse_config::ConnectionLimits {
                    max: ADMIN_MAX_CONNECTIONS,
                    max_per_ip: ADMIN_MAX_CONNECTIONS,
                    ..config.gateway.connections.clone()
                },
                fd_reserve: None,
                tls: None,
            }
            .build(listener, router, telemetry.metrics().clone())?;
            tokio::spawn(admin.serve(std::future::pending()));
            Some(local)
        }
        None => None,
    };
    // Building is synchronous: the stored secrets servers' credentials name are read first.
    let stored = Arc::new(gatehouse_identity::outbound::StoredSecrets::default());
    let stored_names = config
        .servers
        .iter()
        .flat_map(gatehouse_identity::outbound::StoredSecrets::names_in)
        .collect();
    stored
        .refresh(&vault, &stored_names)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the stored secrets: {e}"))?;
    let gw = gatehouse_gateway::GatewayParts {
        config,
        keys,
        listen: bound,
        vault: Some(vault.clone()),
        revocations: Some(store.session_revocations()),
        policies,
        audit: auditor.clone(),
        telemetry: telemetry.clone(),
        runtimes: Arc::new(runtimes(&vault, &data_dir)?),
        stored,
    }
    .build()?;
    crate::secret::spawn_watcher(vault.clone(), Arc::downgrade(&gw));
    // The audit trail's background work; one stop signal ends it at shutdown.
    let mut supervisor = crate::supervisor::Supervisor::default();
    if let Some(a) = &auditor {
        crate::background::spawn_indexer(
            &mut supervisor,
            crate::background::Indexer {
                database_url: database_url.clone(),
                data_dir: data_dir.clone(),
                journal: a.journal().clone(),
                metrics: telemetry.metrics().clone(),
                anomalies: {
                    let gw = gw.clone();
                    Box::new(move || gw.snapshot().config.audit.anomalies.clone())
                },
            },
        );
        let current = gw.clone();
        crate::background::spawn_retention(
            &mut supervisor,
            Box::new(move || current.snapshot().config.audit.clone()),
            database_url.clone(),
            data_dir.clone(),
            a.clone(),
        );
        let current = gw.clone();
        crate::background::spawn_sinks(
            &mut supervisor,
            Box::new(move || current.snapshot().config.audit.sinks.clone()),
            database_url.clone(),
            data_dir.clone(),
            a.journal().dir().to_path_buf(),
            telemetry.metrics().clone(),
        );
    }
    if let Some(path) = &args.config {
        let insecure = args.insecure;
        let loader: Arc<gatehouse_gateway::reload::Loader> = Arc::new(move |p: &Path| {
            let config = gatehouse_config::load_file(p).map_err(|e| e.to_string())?;
            check_exposure(&config, bound, insecure)?;
            Ok(config)
        });
        gatehouse_gateway::reload::watch(&gw, path.clone(), Duration::from_secs(1), loader);
    }
    print_banner(&gw, bound, &data_dir, args.config.as_deref(), &store_label);
    match &auditor {
        Some(a) => println!(
            "  audit:     {} (journal {}; verify with `gatehouse audit verify`)",
            a.journal().dir().display(),
            a.journal().instance()
        ),
        None => println!("  audit:     off (audit.enabled: false)"),
    }
    if let Some(admin) = admin {
        println!("  metrics:   http://{admin}/metrics");
    }
    if gw.telemetry.tracing_enabled() {
        println!("  tracing:   OTLP export on (telemetry.otlp)");
    }
    println!("Press Ctrl-C to stop.");

    let limits = gw.snapshot().config.gateway.connections.clone();
    let admin_share = if admin.is_some() {
        ADMIN_MAX_CONNECTIONS
    } else {
        0
    };
    // Built last: the descriptors open by now count against the open-file limit.
    let listener = ListenerConfig {
        name: "gateway",
        fd_reserve: Some(limits.fd_reserve.saturating_add(admin_share)),
        limits,
        tls,
    }
    .build(listener, gw.router(), telemetry.metrics().clone())?;
    let drain_gw = gw.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(async move {
        let _ = stop_rx.await;
    }));
    wait_for_signal().await;
    // Read now: gateway.shutdown_grace follows reloads.
    let grace = gw.snapshot().config.gateway.shutdown_grace.get();
    tracing::info!(?grace, "shutting down: draining in-flight calls");
    drain_gw.start_draining();
    let _ = stop_tx.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(())) => tracing::info!("all connections closed"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!(
            ?grace,
            "drain deadline passed; closing remaining connections"
        ),
    }
    gw.shutdown_backends().await;
    if let Some(a) = &auditor {
        a.shutdown().await;
        // Whatever the sinks have not shipped yet, they ship at the next start; the index
        // is brought up to date below.
        supervisor.shutdown(BACKGROUND_STOP).await;
        if let Err(e) =
            gatehouse_audit::index::catch_up(&store.audit_index(), a.journal().dir()).await
        {
            tracing::warn!(error = %e, "audit index not brought up to date at shutdown; `gatehouse audit query` will do it");
        }
    }
    store.close().await;
    if let Err(e) = telemetry.shutdown().await {
        tracing::warn!(error = %e, "telemetry did not flush before exit");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Opens the audit journal (unless `audit.enabled: false`): a journal that cannot be written
/// stops the start, rather than serving unaudited.
fn open_audit(
    config: &Config,
    data_dir: &Path,
) -> anyhow::Result<Option<Arc<gatehouse_gateway::observe::Auditor>>> {
    if !config.audit.enabled {
        tracing::warn!("the audit journal is off (audit.enabled: false): calls are not recorded");
        return Ok(None);
    }
    // A file-size limit (ulimit -f) must surface as a write error the journal handles, not as
    // a signal that kills the gateway mid-write.
    #[cfg(unix)]
    // SAFETY: ignoring a signal installs no handler code; it only changes the disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let options = gatehouse_audit::JournalOptions::from_config(&config.audit, data_dir)?;
    let journal = gatehouse_audit::Journal::open(options)
        .context("cannot open the audit journal (see audit.dir)")?;
    Ok(Some(gatehouse_gateway::observe::Auditor::new(
        journal,
        config.audit.coalesce.get(),
    )))
}

fn print_banner(
    gw: &Gateway,
    bound: SocketAddr,
    data_dir: &Path,
    config: Option<&Path>,
    store: &str,
) {
    let snap = gw.snapshot();
    let scheme = if snap.config.gateway.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "Gatehouse {} listening on {scheme}://{bound}",
        env!("CARGO_PKG_VERSION")
    );
    match config {
        Some(c) => println!("  config:    {} (watched for changes)", c.display()),
        None => println!("  config:    built-in demo (servers: demo — tools echo, add, countdown)"),
    }
    println!("  data dir:  {}", data_dir.display());
    println!(
        "  store:     {store} (schema version {})",
        gatehouse_store::SCHEMA_VERSION
    );
    let mut paths: Vec<_> = snap.virtual_servers.values().collect();
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    for vs in paths {
        let members: Vec<_> = vs
            .members
            .iter()
            .map(|m| m.server.config.name.as_str())
            .collect();
        println!(
            "  endpoint:  http://{bound}{}  (virtual server {:?}: {})",
            vs.path,
            vs.name,
            members.join(", ")
        );
    }
    println!("  health:    http://{bound}/healthz  http://{bound}/readyz");
}

/// The listener's TLS settings from PEM files, with errors that name the file.
fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    // Several crates bring rustls; the process uses aws-lc-rs, like the HTTP client.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    gatehouse_gateway::listen::tls::server_config(cert, key)
        .map_err(|e| anyhow::anyhow!("gateway.tls: {e}"))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
