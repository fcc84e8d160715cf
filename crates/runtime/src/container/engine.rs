//! Finding the container engine (Podman first, then Docker), and reaping what a gateway that
//! is gone left behind.

use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptions;

use super::spec::{MANAGED, OWNER};
use crate::RuntimeError;

/// How long one engine request may take before the start fails (the attachment itself is
/// not bounded by it: only a response's headers are).
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// Where the secret folders of containers live: memory-backed, never on disk.
pub(crate) const SECRETS_PARENT: &str = "/dev/shm";
/// Prefix of a secret folder's name; the owner (`pid-ticks`) follows.
pub(crate) const SECRETS_PREFIX: &str = "gatehouse-secrets-";

/// The engine sockets to try, in order: the override, `GATEHOUSE_CONTAINER_HOST`,
/// `DOCKER_HOST`, rootful Podman, rootless Podman, Docker. Each with where it came from.
pub(crate) fn candidates(overridden: Option<&str>) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    if let Some(h) = overridden {
        out.push((h.to_string(), "the gateway's container host"));
    }
    for var in ["GATEHOUSE_CONTAINER_HOST", "DOCKER_HOST"] {
        if let Ok(h) = std::env::var(var)
            && !h.is_empty()
        {
            out.push((
                h,
                if var == "DOCKER_HOST" {
                    "DOCKER_HOST"
                } else {
                    "GATEHOUSE_CONTAINER_HOST"
                },
            ));
        }
    }
    // An explicit choice is final: falling back to another engine would surprise.
    if !out.is_empty() {
        out.truncate(1);
        return out;
    }
    // SAFETY: getuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    out.push(("unix:///run/podman/podman.sock".into(), "rootful Podman"));
    out.push((
        format!("unix:///run/user/{uid}/podman/podman.sock"),
        "rootless Podman",
    ));
    out.push(("unix:///var/run/docker.sock".into(), "Docker"));
    out
}

/// Connects to the first engine that answers a ping; the error names every socket tried.
pub(crate) async fn connect(overridden: Option<&str>) -> Result<(Docker, String), RuntimeError> {
    let mut tried = Vec::new();
    for (host, source) in candidates(overridden) {
        let Some(path) = host
            .strip_prefix("unix://")
            .or_else(|| host.starts_with('/').then_some(host.as_str()))
        else {
            tried.push(format!(
                "{host} ({source}): only unix:// sockets are supported"
            ));
            continue;
        };
        // Podman 4.3 serves the compatible API at any version prefix; bollard 0.21 sends none.
        let docker = match Docker::connect_with_unix(
            path,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ) {
            Ok(d) => d,
            Err(e) => {
                tried.push(format!("{host} ({source}): {e}"));
                continue;
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), docker.ping()).await {
            Ok(Ok(_)) => return Ok((docker, host)),
            Ok(Err(e)) => tried.push(format!("{host} ({source}): {e}")),
            Err(_) => tried.push(format!("{host} ({source}): no answer within 5 s")),
        }
    }
    Err(RuntimeError::Unavailable(format!(
        "no container engine answers: tried {}. Start one (e.g. `podman system service --time=0 unix:///run/podman/podman.sock`) or name its socket in GATEHOUSE_CONTAINER_HOST",
        tried.join("; ")
    )))
}

/// `GET path` on the engine's unix socket as JSON: for what bollard's Docker models drop
/// (Podman's `OCIRuntime`).
pub(crate) async fn raw_get(socket: &Path, path: &str) -> Result<serde_json::Value, String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "engine")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// This gateway, as its containers' owner label says: `host:pid:start-ticks`. The start time
/// tells a live gateway from a later process that got the same pid.
pub(crate) fn owner() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", hostname(), start_ticks(pid).unwrap_or(0))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether the gateway an owner label names is gone: on this host, and no process with its
/// pid and start time runs. Labels of other hosts are never judged.
pub(crate) fn owner_gone(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(ticks), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    let (Ok(pid), Ok(ticks)) = (pid.parse::<u32>(), ticks.parse::<u64>()) else {
        return false;
    };
    start_ticks(pid) != Some(ticks)
}

/// Removes the containers (and secret folders) of gateways on this host that are gone, e.g.
/// after a `kill -9`. Returns how many containers were removed.
pub(crate) async fn reap(docker: &Docker, socket: &Path) -> usize {
    let containers = match managed_containers(socket).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the containers earlier gateways left; none reaped");
            return 0;
        }
    };
    let mut removed = 0;
    for (id, owner) in containers {
        if !owner_gone(&owner) {
            continue;
        }
        let id = id.as_str();
        let force = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match docker.remove_container(id, Some(force)).await {
            Ok(()) => {
                removed += 1;
                tracing::info!(container = %id, %owner, "removed a container a stopped gateway left");
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot remove a container a stopped gateway left")
            }
        }
    }
    reap_secret_dirs(Path::new(SECRETS_PARENT));
    removed
}

/// Every container labelled as a gateway's, running or not: its id and owner label. Read raw:
/// bollard's models reject a state Podman reports (`stopped`, while a container is being
/// removed), and one such container would make the whole list fail.
async fn managed_containers(socket: &Path) -> Result<Vec<(String, String)>, String> {
    let filters = format!("{{\"label\":[\"{MANAGED}=true\"]}}");
    let encoded: String = filters
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let list = raw_get(socket, &format!("/containers/json?all=1&filters={encoded}")).await?;
    let items = list
        .as_array()
        .ok_or("the engine's container list is not a list")?;
    Ok(items
        .iter()
        .filter_map(|c| {
            let id = c["Id"].as_str()?.to_string();
            let owner = c["Labels"][OWNER].as_str().unwrap_or("").to_string();
            Some((id, owner))
        })
        .collect())
}

/// Secret folders whose owning gateway is gone (named `gatehouse-secrets-PID-TICKS-N`).
fn reap_secret_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let host = hostname();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SECRETS_PREFIX) else {
            continue;
        };
        let mut parts = rest.split('-');
        let (Some(pid), Some(ticks)) = (parts.next(), parts.next()) else {
            continue;
        };
        if owner_gone(&format!("{host}:{pid}:{ticks}")) {
            let path: PathBuf = e.path();
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_gateway_is_alive_and_a_dead_pid_or_other_start_is_gone() {
        let me = owner();
        assert!(!owner_gone(&me), "{me}");
        let (rest, _) = me.rsplit_once(':').unwrap();
        assert!(
            owner_gone(&format!("{rest}:1")),
            "same pid, another start time"
        );
        assert!(
            owner_gone(&format!("{}:4194304:5", hostname())),
            "no such pid"
        );
        assert!(
            !owner_gone("another-host:4194304:5"),
            "other hosts are never judged"
        );
        assert!(!owner_gone("garbage"));
    }

    #[test]
    fn an_explicit_host_is_the_only_candidate() {
        let c = candidates(Some("unix:///tmp/x.sock"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "unix:///tmp/x.sock");
    }
}
