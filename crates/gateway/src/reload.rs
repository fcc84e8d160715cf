//! Hot reload: watch the config file and the policy files it names, and swap in a new
//! snapshot when any of them changes. A config or policy set that does not load (or whose
//! policy tests fail) is logged and the running snapshot keeps serving.
//!
//! Polling rather than inotify, because it sees every way a file gets replaced — editors'
//! rename-over, Kubernetes ConfigMap symlink swaps — with no platform differences. Each second
//! the files' metadata (size, modification time, inode) is compared; their content is hashed
//! only when that changed, and every 30 s regardless (a same-size edit within a file system's
//! timestamp granularity is still seen). Hashing a large policy set every second cost the idle
//! gateway about 9 million instructions a second.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Gateway;

/// Loads and validates a config file; the CLI passes the config crate's loader.
pub type Loader =
    dyn Fn(&std::path::Path) -> Result<gatehouse_config::Config, String> + Send + Sync;

/// Ticks between content hashes when the metadata says nothing changed.
const FULL_CHECK_EVERY: u32 = 30;

/// The metadata stamp of the config file and the policy files it names.
fn stamp(path: &std::path::Path, gw: &Gateway) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(m) = std::fs::metadata(path) {
        (m.len(), m.mtime(), m.mtime_nsec(), m.ino(), m.dev()).hash(&mut h);
    }
    if let Some(p) = &gw.snapshot().config.policies {
        gatehouse_policy::stamp(p).hash(&mut h);
    }
    h.finish()
}

fn digest(path: &std::path::Path, gw: &Gateway) -> Option<[u8; 32]> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = Sha256::new();
    h.update(&bytes);
    // The running config names the policy files; an edit to the config that changes them is
    // seen through the config's own bytes.
    if let Some(p) = &gw.snapshot().config.policies {
        h.update(gatehouse_policy::fingerprint(p));
    }
    Some(h.finalize().into())
}

/// Watches `path` until the gateway is dropped; an invalid edit is logged and the running
/// snapshot stays.
pub fn watch(gw: &Arc<Gateway>, path: PathBuf, interval: Duration, load: Arc<Loader>) {
    let weak = Arc::downgrade(gw);
    let mut last = digest(&path, gw);
    let mut last_stamp = stamp(&path, gw);
    let mut unchanged_ticks = 0u32;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let Some(gw) = weak.upgrade() else { return };
            let stamped = stamp(&path, &gw);
            unchanged_ticks += 1;
            if stamped == last_stamp && unchanged_ticks < FULL_CHECK_EVERY {
                continue;
            }
            last_stamp = stamped;
            unchanged_ticks = 0;
            let now = digest(&path, &gw);
            if now.is_none() || now == last {
                continue;
            }
            last = now;
            let loaded = match load(&path) {
                Ok(config) => match crate::authz::load(&config).await {
                    Ok(policies) => Ok((config, policies)),
                    Err(e) => {
                        tracing::error!(config = %path.display(), "policy set rejected; the previous one keeps serving:\n{e}");
                        gw.rejected(gatehouse_audit::EventKind::PolicyChange, e.to_string());
                        continue;
                    }
                },
                Err(e) => Err(e),
            };
            match loaded {
                Ok((config, policies)) => match async {
                    gw.refresh_stored_secrets(&config)
                        .await
                        .map_err(|e| e.to_string())?;
                    gw.reload(config, policies).map_err(|e| e.to_string())
                }
                .await
                {
                    Ok(r) => {
                        // The new config may name other policy files: fingerprint those.
                        last = digest(&path, &gw);
                        last_stamp = stamp(&path, &gw);
                        if r.restart_needed.is_empty() {
                            tracing::info!(config = %path.display(), version = r.version, "configuration reloaded")
                        } else {
                            let waiting = r.restart_needed.join(", ");
                            tracing::warn!(
                                config = %path.display(),
                                version = r.version,
                                restart_needed = %waiting,
                                "configuration reloaded; these settings keep their running values until a restart: {waiting}"
                            )
                        }
                    }
                    Err(e) => {
                        tracing::error!(config = %path.display(), error = %e, "configuration rejected; the previous one keeps serving");
                        gw.rejected(gatehouse_audit::EventKind::ConfigChange, e.to_string());
                    }
                },
                Err(e) => {
                    tracing::error!(config = %path.display(), "configuration rejected; the previous one keeps serving:\n{e}");
                    gw.rejected(gatehouse_audit::EventKind::ConfigChange, e.to_string());
                }
            }
        }
    });
}
