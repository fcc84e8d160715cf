//! What the engine is asked to create for one server: the minimal container (no network,
//! read-only root, no capabilities, `no-new-privileges`, limits from the profile), built as
//! plain data so it is tested without an engine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, HostConfig};
use gatehouse_config::IsolationConfig;

/// Label on every container a gateway starts; the reaper lists containers by it.
pub const MANAGED: &str = "io.gatehouse.managed";
/// Label naming the server entry the container runs.
pub const SERVER: &str = "io.gatehouse.server";
/// Label naming the gateway that started the container: `host:pid:start-ticks`.
pub const OWNER: &str = "io.gatehouse.owner";

/// The user a container runs as when its image names none: `nobody`.
pub(crate) const NOBODY: &str = "65534:65534";

/// Everything one container is created from, resolved.
#[derive(Debug)]
pub(crate) struct Spec<'a> {
    pub server: &'a str,
    pub iso: &'a IsolationConfig,
    pub image: &'a str,
    pub command: &'a str,
    pub args: &'a [String],
    pub cwd: Option<&'a Path>,
    /// The whole environment: profile, gateway-added variables and secrets asked as variables.
    pub env: Vec<(String, String)>,
    /// Secret files: host file (on a tmpfs) → path inside.
    pub secret_mounts: Vec<(PathBuf, PathBuf)>,
    /// `None`: the image names its user.
    pub user: Option<&'a str>,
    pub owner: &'a str,
    /// The `seccomp=` security option.
    pub seccomp: &'a str,
    /// The network namespace to join (`ns:PATH`: an egress allow-list's, or an HTTP server's
    /// private one); `None`: no network.
    pub netns: Option<&'a str>,
    /// The server speaks HTTP, not stdio: nothing is attached to its stdin.
    pub http: bool,
}

impl Spec<'_> {
    /// The create request.
    pub(crate) fn body(&self) -> ContainerCreateBody {
        let iso = self.iso;
        let mut binds = Vec::new();
        for p in &iso.filesystem.read {
            binds.push(bind(p, p, "ro"));
        }
        for p in &iso.filesystem.write {
            binds.push(bind(p, p, "rw"));
        }
        if let Some(cwd) = self.cwd
            && !iso
                .filesystem
                .read
                .iter()
                .chain(&iso.filesystem.write)
                .any(|g| cwd.starts_with(g))
        {
            binds.push(bind(cwd, cwd, "ro"));
        }
        for (host, inside) in &self.secret_mounts {
            binds.push(bind(host, inside, "ro"));
        }
        let memory = i64::try_from(iso.resources.memory.0).unwrap_or(i64::MAX);
        let host_config = HostConfig {
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into(), self.seccomp.to_string()]),
            readonly_rootfs: Some(true),
            network_mode: Some(self.netns.unwrap_or("none").to_string()),
            // Swap equal to memory: no swap beyond the limit.
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: iso.resources.cpus.map(|c| (c * 1e9) as i64),
            pids_limit: Some(i64::from(iso.resources.pids)),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,nosuid,nodev,size=64m".to_string(),
            )])),
            binds: (!binds.is_empty()).then_some(binds),
            runtime: iso.runtime_class.clone(),
            // The gateway removes it itself; this covers a container that exits on its own.
            auto_remove: Some(true),
            ..Default::default()
        };
        let mut cmd = vec![self.command.to_string()];
        cmd.extend(self.args.iter().cloned());
        ContainerCreateBody {
            image: Some(self.image.to_string()),
            cmd: Some(cmd),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: self.user.map(str::to_string),
            working_dir: Some(
                self.cwd
                    .map_or_else(|| "/tmp".to_string(), |c| c.display().to_string()),
            ),
            labels: Some(HashMap::from([
                (MANAGED.to_string(), "true".to_string()),
                (SERVER.to_string(), self.server.to_string()),
                (OWNER.to_string(), self.owner.to_string()),
            ])),
            attach_stdin: Some(!self.http),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(!self.http),
            // The server's stdin closes when the gateway's attachment does.
            stdin_once: Some(!self.http),
            tty: Some(false),
            // An HTTP server keeps the namespace the engine makes for `none`: its loopback.
            network_disabled: Some(self.netns.is_none() && !self.http),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

fn bind(host: &Path, inside: &Path, mode: &str) -> String {
    format!("{}:{}:{mode}", host.display(), inside.display())
}

/// A container name the engine accepts: `gatehouse-<server>-<pid>-<n>`, the server's name
/// reduced to `[A-Za-z0-9_.-]`.
pub(crate) fn name(server: &str, pid: u32, instance: u64) -> String {
    let clean: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("gatehouse-{clean}-{pid}-{instance}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso() -> IsolationConfig {
        let mut iso = IsolationConfig::default();
        iso.filesystem.read.push("/srv/data".into());
        iso.filesystem.write.push("/srv/out".into());
        iso.resources.cpus = Some(0.5);
        iso.runtime_class = Some("runsc".into());
        iso
    }

    #[test]
    fn the_container_gets_the_minimal_profile_and_the_grants() {
        let iso = iso();
        let args = vec!["/srv/server.py".to_string()];
        let spec = Spec {
            server: "files",
            iso: &iso,
            image: "localhost/mcp:1",
            command: "python3",
            args: &args,
            cwd: None,
            env: vec![("A".into(), "1".into())],
            secret_mounts: vec![("/dev/shm/x/0".into(), "/run/secrets/token".into())],
            user: Some(NOBODY),
            owner: "host:1:2",
            seccomp: "seccomp=/tmp/p.json",
            netns: None,
            http: false,
        };
        let body = spec.body();
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(
            hc.security_opt.as_deref().unwrap(),
            ["no-new-privileges", "seccomp=/tmp/p.json"]
        );
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(body.network_disabled, Some(true));
        // With an allow-list: the namespace the gateway built, and the network on.
        let joined = Spec {
            netns: Some("ns:/proc/1/fd/9"),
            ..spec
        }
        .body();
        assert_eq!(
            joined.host_config.as_ref().unwrap().network_mode.as_deref(),
            Some("ns:/proc/1/fd/9")
        );
        assert_eq!(joined.network_disabled, Some(false));
        assert_eq!(hc.memory, Some(1 << 30));
        assert_eq!(hc.memory_swap, Some(1 << 30));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.pids_limit, Some(256));
        assert_eq!(hc.runtime.as_deref(), Some("runsc"));
        assert_eq!(
            hc.binds.as_deref().unwrap(),
            [
                "/srv/data:/srv/data:ro",
                "/srv/out:/srv/out:rw",
                "/dev/shm/x/0:/run/secrets/token:ro"
            ]
        );
        assert!(hc.tmpfs.as_ref().unwrap().contains_key("/tmp"));
        assert_eq!(body.cmd.as_deref().unwrap(), ["python3", "/srv/server.py"]);
        assert_eq!(body.env.as_deref().unwrap(), ["A=1"]);
        assert_eq!(body.user.as_deref(), Some(NOBODY));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED], "true");
        assert_eq!(labels[SERVER], "files");
        assert_eq!(labels[OWNER], "host:1:2");
        assert_eq!(body.open_stdin, Some(true));
        assert_eq!(body.tty, Some(false));
    }

    #[test]
    fn an_http_server_keeps_the_engines_loopback_only_namespace_and_gets_no_stdin() {
        let iso = iso();
        let body = Spec {
            server: "web",
            iso: &iso,
            image: "localhost/mcp:1",
            command: "server",
            args: &[],
            cwd: None,
            env: Vec::new(),
            secret_mounts: Vec::new(),
            user: None,
            owner: "host:1:2",
            seccomp: "seccomp=/tmp/p.json",
            netns: None,
            http: true,
        }
        .body();
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        // Nothing published on the host: the gateway reaches the port from inside.
        assert!(hc.port_bindings.is_none() && body.exposed_ports.is_none());
        assert_eq!(body.network_disabled, Some(false));
        assert_eq!(body.open_stdin, Some(false));
        assert_eq!(body.attach_stdin, Some(false));
        assert_eq!(hc.readonly_rootfs, Some(true));
    }

    #[test]
    fn names_are_what_the_engine_accepts() {
        assert_eq!(name("my server/1", 42, 3), "gatehouse-my_server_1-42-3");
    }
}
