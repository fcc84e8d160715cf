//! `gatehouse secret`: the platform's stored secrets, which `store:NAME` references in a local
//! server's `isolation.secrets` and `secret_files` and a server's `credentials` read. Sealed
//! with the vault's key (XChaCha20-Poly1305; the key file `--secrets-key-file`, else
//! `GATEHOUSE_VAULT_KEY`, else `<data-dir>/keys/vault.key`) in the store; a value is read from
//! standard input, never from the command line, and never printed.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gatehouse_identity::outbound::Vault;

use crate::audit::Location;

/// Largest secret accepted (a token or a key file, not a database).
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// What to do with the stored secrets.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret read from standard input (a trailing newline is dropped), replacing
    /// one of the same name; running gateways restart the servers that read it.
    Set(NameArgs),
    /// List the stored secrets' names and when each was set (never their values).
    List(StoreArgs),
    /// Remove a stored secret.
    Rm(NameArgs),
    /// Replace the vault's key: a new key is written first into the key file, every stored
    /// secret and user token is re-sealed with it, then the old key leaves the file. Running
    /// gateways sharing the key file pick the new key up within seconds; nothing restarts.
    RotateKey(StoreArgs),
}

/// Where the secrets are kept.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    location: Location,
    /// Database (default: `store.url` of the config, else SQLite in the data directory).
    #[arg(long, env = "GATEHOUSE_DATABASE_URL")]
    database_url: Option<String>,
    /// The vault's key file, as `gatehouse up --secrets-key-file` reads it (default:
    /// GATEHOUSE_VAULT_KEY, else <data-dir>/keys/vault.key).
    #[arg(long, env = "GATEHOUSE_SECRETS_KEY_FILE")]
    secrets_key_file: Option<std::path::PathBuf>,
}

/// One secret, by name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The secret's name, as `store:NAME` references it: 1-128 characters of
    /// `A-Z a-z 0-9 . _ -`.
    name: String,
    #[command(flatten)]
    store: StoreArgs,
}

async fn open(args: &StoreArgs) -> anyhow::Result<Vault> {
    let config = args.location.config()?;
    let store = args
        .location
        .open_store(args.database_url.as_deref(), config.as_ref())
        .await?;
    Vault::open(
        &args.location.data_dir,
        args.secrets_key_file.as_deref(),
        store.credentials(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if !gatehouse_config::valid_secret_name(name) {
        bail!("invalid secret name {name:?}: expected 1-128 characters of A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

/// Runs a `secret` subcommand; `Ok(false)` when the named secret does not exist.
pub async fn run(command: &SecretCommand) -> anyhow::Result<bool> {
    match command {
        SecretCommand::Set(args) => {
            check_name(&args.name)?;
            let mut value = Vec::new();
            std::io::stdin()
                .take(MAX_SECRET_BYTES as u64 + 1)
                .read_to_end(&mut value)
                .context("cannot read the secret from standard input")?;
            if value.len() > MAX_SECRET_BYTES {
                bail!("the secret is over {MAX_SECRET_BYTES} bytes");
            }
            let value = String::from_utf8(value).context("the secret is not UTF-8 text")?;
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                bail!(
                    "no secret on standard input (pipe it in: `printf %s \"$TOKEN\" | gatehouse secret set {}`)",
                    args.name
                );
            }
            let vault = open(&args.store).await?;
            vault
                .put(Vault::platform_secret(&args.name), value, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("stored secret {} ({} bytes)", args.name, value.len());
            Ok(true)
        }
        SecretCommand::List(args) => {
            let vault = open(args).await?;
            let names = vault
                .platform_secret_names()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if names.is_empty() {
                eprintln!("no stored secrets");
            }
            for (name, updated, _) in names {
                let when = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(updated.max(0) as u64),
                );
                println!("{name}\t{when}");
            }
            Ok(true)
        }
        SecretCommand::Rm(args) => {
            check_name(&args.name)?;
            let vault = open(&args.store).await?;
            let key = Vault::platform_secret(&args.name);
            let existed = vault
                .get(&key)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .is_some();
            vault
                .delete(&key)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if existed {
                eprintln!("removed secret {}", args.name);
            } else {
                eprintln!("no secret named {}", args.name);
            }
            Ok(existed)
        }
        SecretCommand::RotateKey(args) => {
            let vault = open(args).await?;
            let r = vault.rotate().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "the vault key is now {} (was {}); {} stored secrets and tokens re-sealed",
                r.new_key_id, r.old_key_id, r.resealed
            );
            if r.unreadable > 0 {
                eprintln!(
                    "warning: {} stored rows open with no key of the key file (sealed with a lost key); they stay unreadable: set those secrets again",
                    r.unreadable
                );
            }
            Ok(true)
        }
    }
}

/// `store:` references of a running gateway, read from its vault.
#[derive(Debug)]
pub struct VaultSecrets(pub std::sync::Arc<Vault>);

impl gatehouse_runtime::SecretLookup for VaultSecrets {
    fn get<'a>(
        &'a self,
        name: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<String>, String>> + Send + 'a>,
    > {
        Box::pin(async move {
            self.0
                .get(&Vault::platform_secret(name))
                .await
                .map_err(|e| format!("the secret store: {e}"))
        })
    }
}

/// How often a running gateway looks for replaced or removed stored secrets.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Each stored secret's version (its seal's nonce), by name; `None` when the store cannot be
/// read (logged).
async fn versions(vault: &Vault) -> Option<std::collections::HashMap<String, String>> {
    match vault.platform_secret_names().await {
        Ok(names) => Some(
            names
                .into_iter()
                .map(|(name, _, version)| (name, version))
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stored secrets' names");
            None
        }
    }
}

/// Watches the stored secrets' versions (never their values) and restarts the local servers
/// that read one that changed (`gatehouse secret set` from any machine sharing the store).
/// Ends when the gateway is dropped.
pub fn spawn_watcher(
    vault: std::sync::Arc<Vault>,
    gateway: std::sync::Weak<gatehouse_gateway::Gateway>,
) {
    tokio::spawn(async move {
        // The baseline is read before any server can start (servers start on first use), so
        // a secret set after a server read it is always seen as a change.
        let mut seen = versions(&vault).await;
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let Some(gw) = gateway.upgrade() else { return };
            // A rotation by `gatehouse secret rotate-key` rewrites the shared key file.
            if let Err(e) = vault.reload_keys() {
                tracing::warn!(error = %e, "cannot re-read the vault keys");
            }
            let Some(now) = versions(&vault).await else {
                continue;
            };
            if let Some(before) = &seen {
                let changed = before
                    .iter()
                    .filter(|(name, version)| now.get(*name) != Some(version))
                    .map(|(name, _)| name)
                    .chain(now.keys().filter(|n| !before.contains_key(*n)));
                for name in changed {
                    gw.restart_servers_using_secret(name).await;
                }
            }
            seen = Some(now);
        }
    });
}
