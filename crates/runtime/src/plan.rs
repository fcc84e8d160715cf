//! A server entry resolved into what its sandbox must contain: the program, the paths it may
//! read and write, its environment and secrets.

use std::fmt;
use std::path::{Path, PathBuf};

use gatehouse_config::{IsolationConfig, Preset, ServerConfig, ServerKind};

use crate::{RuntimeError, preset};

/// The `PATH` inside a sandbox (the program's own folder goes first).
pub(crate) const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Everything a sandbox for one server is built from.
#[derive(Debug)]
pub(crate) struct SandboxPlan {
    /// Absolute path of the program, the same inside and outside.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Read-only paths beyond the system's own, each existing.
    pub read: Vec<PathBuf>,
    /// Read-write paths, each existing.
    pub write: Vec<PathBuf>,
    /// Working directory inside.
    pub cwd: PathBuf,
    /// The whole environment of the server: nothing of the gateway's own leaks in.
    pub env: Vec<(String, String)>,
    /// Files holding secrets: path inside → content.
    pub secret_files: Vec<(PathBuf, String)>,
}

impl SandboxPlan {
    pub(crate) async fn resolve(
        server: &ServerConfig,
        iso: &IsolationConfig,
        preset: Preset,
        extra_env: Vec<(String, String)>,
        store: Option<&dyn crate::SecretLookup>,
    ) -> Result<SandboxPlan, RuntimeError> {
        let ServerKind::Stdio {
            command,
            args,
            env,
            cwd,
        } = server.kind()
        else {
            return Err(RuntimeError::Profile("not a local server".into()));
        };
        let program = locate(command)?;
        let preset::Resolved {
            program,
            mut read,
            args,
        } = preset::resolve(preset, &program, args).await?;
        read.extend(iso.filesystem.read.iter().cloned());
        if let Some(cwd) = cwd {
            read.push(cwd.to_path_buf());
        }
        grants_exist(&server.name, read.iter().chain(&iso.filesystem.write))?;
        let secrets = resolve_secrets(&server.name, iso, store).await?;
        let mut path_env = SANDBOX_PATH.to_string();
        if let Some(dir) = program.parent().filter(|d| !d.starts_with("/usr")) {
            path_env = format!("{}:{path_env}", dir.display());
        }
        let lang = std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into());
        let env = server_env(path_env, lang, env, extra_env, secrets.env);
        let secret_files = secrets.files;
        Ok(SandboxPlan {
            program,
            args,
            read,
            write: iso.filesystem.write.clone(),
            cwd: cwd.map_or_else(|| PathBuf::from("/tmp"), Path::to_path_buf),
            env,
            secret_files,
        })
    }
}

/// Fails naming the first granted path that does not exist.
pub(crate) fn grants_exist<'a>(
    server: &str,
    mut paths: impl Iterator<Item = &'a PathBuf>,
) -> Result<(), RuntimeError> {
    match paths.find(|p| !p.exists()) {
        Some(p) => Err(RuntimeError::Profile(format!(
            "{} is granted to server \"{server}\" but does not exist",
            p.display()
        ))),
        None => Ok(()),
    }
}

/// A profile's secrets, read: `secrets` as variables, `secret_files` as (path, value).
pub(crate) struct Secrets {
    pub env: Vec<(String, String)>,
    pub files: Vec<(PathBuf, String)>,
}

/// Reads every secret of `iso`; the first that cannot be read stops the start.
pub(crate) async fn resolve_secrets(
    server: &str,
    iso: &IsolationConfig,
    store: Option<&dyn crate::SecretLookup>,
) -> Result<Secrets, RuntimeError> {
    let mut env = Vec::new();
    for (name, secret) in &iso.secrets {
        env.push((
            name.clone(),
            resolve_secret(server, name, secret, store).await?,
        ));
    }
    let mut files = Vec::new();
    for (path, secret) in &iso.secret_files {
        let value = resolve_secret(server, &path.to_string_lossy(), secret, store).await?;
        files.push((path.clone(), value));
    }
    Ok(Secrets { env, files })
}

/// A local server's whole environment: the minimal base (`PATH`, `HOME` and `TMPDIR` in the
/// private `/tmp`, `LANG`), then its `env`, the gateway's variables and its secrets. Nothing of
/// the gateway's own environment.
pub(crate) fn server_env(
    path: String,
    lang: String,
    env: &std::collections::BTreeMap<String, String>,
    extra_env: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("HOME".into(), "/tmp".into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("LANG".into(), lang),
    ];
    all.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    all.extend(extra_env);
    all.extend(secrets);
    all
}

/// A secret's value; the error names the reference, never a value.
pub(crate) async fn resolve_secret(
    server: &str,
    name: &str,
    secret: &gatehouse_config::SecretRef,
    store: Option<&dyn crate::SecretLookup>,
) -> Result<String, RuntimeError> {
    let failed =
        |e: String| RuntimeError::Profile(format!("server \"{server}\": secret {name}: {e}"));
    match secret.source() {
        Some(gatehouse_config::SecretSource::Store(stored)) => {
            let store = store.ok_or_else(|| failed("this gateway has no secret store".into()))?;
            store.get(stored).await.map_err(failed)?.ok_or_else(|| {
                failed(format!(
                    "no secret \"{stored}\" in the secret store (set it with `gatehouse secret set {stored}`)"
                ))
            })
        }
        _ => secret.resolve().map_err(failed),
    }
}

/// The absolute path of `command`: as written when it has a slash, else from `PATH`.
fn locate(command: &str) -> Result<PathBuf, RuntimeError> {
    let found = if command.contains('/') {
        std::path::absolute(command).ok().filter(|p| p.is_file())
    } else {
        crate::probe::find_on_path(command)
    };
    found.ok_or_else(|| {
        RuntimeError::Profile(format!(
            "cannot start {command:?}: no such program{}",
            if command.contains('/') {
                ""
            } else {
                " on PATH"
            }
        ))
    })
}

/// The profile in words, for `validate` and the start log.
pub(crate) fn describe_profile(iso: &IsolationConfig, preset: Preset) -> String {
    let network = if iso.network.egress.is_empty() {
        "no network".to_string()
    } else {
        format!("network only to {}", iso.network.egress.join(", "))
    };
    let mut read = format!(
        "reads only the system's libraries and what the {} preset needs",
        preset.as_str()
    );
    if !iso.filesystem.read.is_empty() {
        read.push_str(&format!(" plus {}", join(&iso.filesystem.read)));
    }
    let write = if iso.filesystem.write.is_empty() {
        "writes only a private /tmp".to_string()
    } else {
        format!("writes a private /tmp and {}", join(&iso.filesystem.write))
    };
    let r = &iso.resources;
    let cpus = r.cpus.map_or(String::new(), |c| format!(", {c} CPUs"));
    format!(
        "{network}; {read}; {write}; at most {} of memory, {} processes{cpus}",
        r.memory, r.pids
    )
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What protects the host from one running server, for its start log line.
#[derive(Debug, Clone, Default)]
pub struct Protections {
    /// Namespaces the server has of its own.
    pub namespaces: &'static str,
    /// The Landlock ABI in force (0: none).
    pub landlock_abi: u8,
    /// Whether the seccomp filter is in force.
    pub seccomp: bool,
    /// The cgroup limits in force, or why there are none.
    pub limits: String,
}

impl fmt::Display for Protections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespaces.is_empty() {
            return f
                .write_str("none (runtime process: the gateway's own rights, files and network)");
        }
        write!(
            f,
            "namespaces {}; landlock ABI {} ({}); seccomp {}; limits {}",
            self.namespaces,
            self.landlock_abi,
            crate::probe::landlock_summary(self.landlock_abi),
            if self.seccomp {
                "on"
            } else {
                "off (no filter for this architecture)"
            },
            self.limits
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_profile_reads_as_no_network_and_limits() {
        let text = describe_profile(&IsolationConfig::default(), Preset::Node);
        assert_eq!(
            text,
            "no network; reads only the system's libraries and what the node preset needs; writes only a private /tmp; at most 1Gi of memory, 256 processes"
        );
    }

    #[test]
    fn a_command_is_found_on_path_or_named_as_missing() {
        assert!(locate("sh").unwrap().is_absolute());
        let e = locate("no-such-program-here").unwrap_err().to_string();
        assert!(e.contains("no such program on PATH"), "{e}");
    }
}
