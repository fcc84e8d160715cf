//! Hot reload: watch the config file and swap in a new snapshot when it changes.
//!
//! Polling (content hash once a second) rather than inotify, because it sees every way a file
//! gets replaced — editors' rename-over, Kubernetes ConfigMap symlink swaps — with no platform
//! differences.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Gateway;

/// Loads and validates a config file; the CLI passes the config crate's loader.
pub type Loader =
    dyn Fn(&std::path::Path) -> Result<gatehouse_config::Config, String> + Send + Sync;

fn digest(path: &std::path::Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

/// Watches `path` until the gateway is dropped; an invalid edit is logged and the running
/// snapshot stays.
pub fn watch(gw: &Arc<Gateway>, path: PathBuf, interval: Duration, load: Arc<Loader>) {
    let weak = Arc::downgrade(gw);
    let mut last = digest(&path);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let Some(gw) = weak.upgrade() else { return };
            let now = digest(&path);
            if now.is_none() || now == last {
                continue;
            }
            last = now;
            match load(&path) {
                Ok(config) => match gw.reload(config) {
                    Ok(v) => {
                        tracing::info!(config = %path.display(), version = v, "configuration reloaded")
                    }
                    Err(e) => {
                        tracing::error!(config = %path.display(), error = %e, "configuration rejected; the previous one keeps serving")
                    }
                },
                Err(e) => {
                    tracing::error!(config = %path.display(), "configuration rejected; the previous one keeps serving:\n{e}")
                }
            }
        }
    });
}
