//! Packages installed before a server starts, so an `npx`/`uvx` server runs in a sandbox
//! without network.
//!
//! The gateway installs the package outside the sandbox, with its own rights and network,
//! into `<data-dir>/packages/<server>/<ecosystem>-<name>-<version>/`: npm with `npm install
//! --ignore-scripts` (install scripts would run with the gateway's rights, outside any
//! sandbox), Python with a virtual environment and `pip install --only-binary=:all:` (an sdist
//! build runs `setup.py` the same way). A marker file written last says the install is
//! complete; a folder without it is removed and installed again. The server then runs that
//! installation's program read-only in its sandbox.
//!
//! A version not pinned in the config is resolved once, when nothing is installed for the
//! spec yet; after that the installed version is reused until the operator deletes the
//! server's folder under `packages/` (or pins another version), so a restart never depends
//! on the registry.

mod command;
mod entry;
mod lockfile;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use command::run;

use gatehouse_config::{ServerConfig, ServerKind};

pub use spec::{Ecosystem, InstallSpec, Package};

/// The file whose presence says an installation is complete.
pub const MARKER: &str = ".gatehouse-installed.json";

/// Why a package could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InstallError {
    /// The `npx`/`uvx` command line has a shape the gateway does not install for.
    #[error("{0}")]
    CommandLine(String),
    /// The installer program (`npm`, `node`, `python3`) is not on the gateway's `PATH`.
    #[error("cannot install {package}: {program} is not on the gateway's PATH ({fix})")]
    ToolMissing {
        /// The package to install.
        package: String,
        /// The missing program.
        program: &'static str,
        /// How to get it.
        fix: &'static str,
    },
    /// An installer command failed: what it was, the likely cause, and its output's tail.
    #[error("installing {package} failed: {step} {cause}; its output ends with:\n{output}")]
    Failed {
        /// The package to install.
        package: String,
        /// The command that failed, in words.
        step: String,
        /// What the output says went wrong, and how to fix it.
        cause: String,
        /// The end of the command's output.
        output: String,
    },
    /// The installation folder could not be prepared, or the installed package has no
    /// program to run.
    #[error("{0}")]
    Layout(String),
}

/// What a server runs after its install: the program and its arguments.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The installation folder (shown read-only to the server).
    pub dir: PathBuf,
    /// The interpreter to run (`node`, the virtual environment's `python`).
    pub command: PathBuf,
    /// The installed script first, then the server's own arguments.
    pub args: Vec<String>,
}

/// Installs packages under one data directory, once per server and version.
#[derive(Debug, Default)]
pub struct Installer {
    /// `<data-dir>/packages`; `None`: this gateway cannot install.
    root: Option<PathBuf>,
    /// One lock per installation folder, so concurrent starts install once.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Installer {
    /// An installer keeping packages under `root` (`<data-dir>/packages`).
    pub fn new(root: Option<PathBuf>) -> Installer {
        Installer {
            root,
            locks: Mutex::default(),
        }
    }

    /// Installs `spec` for `server` unless a complete installation exists, and says what to
    /// run. The work runs on its own task: a caller that gives up (a request timeout) does
    /// not leave a half-finished install behind.
    pub async fn ensure(
        self: &Arc<Self>,
        server: &str,
        spec: InstallSpec,
    ) -> Result<Installed, InstallError> {
        let this = self.clone();
        let server = server.to_string();
        tokio::spawn(async move { this.install(&server, &spec).await })
            .await
            .unwrap_or_else(|e| {
                Err(InstallError::Layout(format!(
                    "the install task failed: {e}"
                )))
            })
    }

    async fn install(&self, server: &str, spec: &InstallSpec) -> Result<Installed, InstallError> {
        let root = self.root.as_ref().ok_or_else(|| {
            InstallError::Layout(
                "this gateway has no data directory to install packages into".into(),
            )
        })?;
        let server_dir = root.join(server);
        let key = spec_key(spec);
        let version = match (&spec.lockfile, &spec.main.pinned) {
            (Some(lock), _) => lockfile::key(lock)?,
            (None, Some(v)) => v.clone(),
            (None, None) => match reuse_resolved(&server_dir, spec, &key) {
                Some(v) => v,
                None => resolve(spec).await?,
            },
        };
        let dir = server_dir.join(dir_name(spec, &version));
        let lock = self
            .locks
            .lock()
            .expect("install locks")
            .entry(dir.clone())
            .or_default()
            .clone();
        let _held = lock.lock().await;
        // Another gateway on the same data directory may be installing it too.
        let _file_lock = lock_file(&dir).await?;
        if !dir.join(MARKER).is_file() {
            run_install(server, spec, &version, &dir, &key).await?;
        } else {
            tracing::debug!(server, dir = %dir.display(), "reusing installed package");
        }
        entry::entry_point(spec, &dir)
    }
}

/// The install a server's command line asks for (`npx`, `uvx`), `None` for other commands.
pub fn spec_of(server: &ServerConfig) -> Result<Option<InstallSpec>, InstallError> {
    match server.kind() {
        ServerKind::Stdio { command, args, .. } => {
            Ok(spec::parse(command, args)?.map(|mut spec| {
                spec.lockfile = server.isolation.as_ref().and_then(|i| i.lockfile.clone());
                spec
            }))
        }
        ServerKind::Remote { .. } => Ok(None),
    }
}

/// `server` as it runs after its install: the installed program instead of `npx`/`uvx`.
pub fn run_installed(server: &ServerConfig, installed: &Installed) -> ServerConfig {
    let mut out = server.clone();
    out.command = Some(installed.command.display().to_string());
    out.args = Some(installed.args.clone());
    out
}

/// For `gatehouse validate`: what will be installed for `server`, where, and how it runs.
pub(crate) fn note(server: &ServerConfig) -> Option<String> {
    let command = server.command.as_deref()?;
    let spec = match spec_of(server) {
        Ok(spec) => spec?,
        Err(e) => {
            return Some(format!(
                "server \"{}\" runs {command}, which the gateway installs for before the start, but cannot read this command line, so the server will not start in the sandbox: {e}",
                server.name
            ));
        }
    };
    let (from, policy) = match spec.ecosystem {
        Ecosystem::Npm => ("the npm registry", "install scripts not run"),
        Ecosystem::Python => ("the Python package index", "wheels only"),
    };
    let version = match &spec.lockfile {
        Some(_) => "lock-HASH",
        None => spec.main.pinned.as_deref().unwrap_or("VERSION"),
    };
    let mut what = spec.main.spec.clone();
    for p in &spec.extra {
        what.push_str(&format!(" and {}", p.spec));
    }
    let mut note = format!(
        "server \"{}\" runs {command}: before its first start the gateway installs {what} from {from} ({policy}) into <data-dir>/packages/{}/{}/ and runs it from there, read-only and without network",
        server.name,
        server.name,
        dir_name(&spec, version),
    );
    if let Some(lock) = &spec.lockfile {
        note.push_str(&format!(
            "; its dependencies come from the lockfile {}, and a changed lockfile installs afresh",
            lock.display()
        ));
    } else if spec.main.pinned.is_none() {
        note.push_str(&format!(
            "; {} names no exact version, so the version is resolved at the first install and kept until that folder is deleted (pin one to choose it)",
            spec.main.spec
        ));
    }
    Some(note)
}

/// For `gatehouse validate`, an `npx`/`uvx` server under `runtime: process`: it runs as
/// written, downloading at its start.
pub(crate) fn process_note(server: &ServerConfig) -> Option<String> {
    let command = server.command.as_deref()?;
    spec_of(server).ok()??;
    Some(format!(
        "server \"{}\" runs {command} with runtime process, so it runs as written: {command} downloads its package when it starts, with the gateway's rights and network; without `runtime: process` the gateway installs it once and runs it sandboxed",
        server.name
    ))
}

/// What identifies an install request: its specs as written, so an unpinned spec maps to the
/// version it was resolved to before.
fn spec_key(spec: &InstallSpec) -> String {
    std::iter::once(&spec.main)
        .chain(&spec.extra)
        .map(|p| p.spec.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `npm-@scope+name-1.2.3`, with a hash of the specs when more than the package is installed.
fn dir_name(spec: &InstallSpec, version: &str) -> String {
    let name = spec.main.name.trim_start_matches('@').replace('/', "+");
    let plain = spec.extra.is_empty() && !spec.main.spec.contains('[');
    let mut out = format!("{}-{name}-{version}", spec.ecosystem.as_str());
    if !plain {
        // FNV-1a: a stable short tag; the marker records the full specs.
        let h = spec_key(spec).bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        out.push_str(&format!("-{:08x}", h as u32));
    }
    out
}

/// The version a complete earlier install of the same specs resolved to (the newest).
fn reuse_resolved(server_dir: &Path, spec: &InstallSpec, key: &str) -> Option<String> {
    let mut found: Vec<(u64, String)> = std::fs::read_dir(server_dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let marker: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path().join(MARKER)).ok()?).ok()?;
            (marker["spec"] == key && marker["ecosystem"] == spec.ecosystem.as_str()).then(|| {
                (
                    marker["installed_at"].as_u64().unwrap_or(0),
                    marker["version"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    found.sort();
    found.pop().map(|(_, v)| v)
}

/// An exclusive `flock` on `<dir>.lock`, held while the returned file is open.
async fn lock_file(dir: &Path) -> Result<std::fs::File, InstallError> {
    let parent = dir.parent().expect("an installation folder has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| InstallError::Layout(format!("cannot create {}: {e}", parent.display())))?;
    let path = dir.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| InstallError::Layout(format!("cannot open {}: {e}", path.display())))?;
    tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this closure owns; it blocks until the lock is free.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            Ok(file)
        } else {
            Err(InstallError::Layout(format!(
                "cannot lock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            )))
        }
    })
    .await
    .unwrap_or_else(|e| Err(InstallError::Layout(format!("the lock task failed: {e}"))))
}

pub(crate) fn program(
    package: &str,
    name: &'static str,
    fix: &'static str,
) -> Result<PathBuf, InstallError> {
    crate::probe::find_on_path(name).ok_or_else(|| InstallError::ToolMissing {
        package: package.to_string(),
        program: name,
        fix,
    })
}

pub(crate) const NPM_FIX: &str = "install Node.js with npm, e.g. apt install npm";
const PYTHON_FIX: &str = "install Python 3 with pip and venv, e.g. apt install python3-venv";

/// The exact version an unpinned spec names today, from the registry.
async fn resolve(spec: &InstallSpec) -> Result<String, InstallError> {
    let pkg = &spec.main;
    match spec.ecosystem {
        Ecosystem::Npm => {
            let npm = program(&pkg.spec, "npm", NPM_FIX)?;
            let out = run(
                &pkg.spec,
                "`npm view` (resolving the version)",
                Ecosystem::Npm,
                tokio::process::Command::new(npm).args(["view", &pkg.spec, "version", "--json"]),
            )
            .await?;
            // One version is a JSON string; a range matching several is an array of them.
            let versions: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
            let last = match &versions {
                serde_json::Value::Array(list) => list.last().and_then(|v| v.as_str()),
                other => other.as_str(),
            };
            last.map(str::to_string).ok_or_else(|| {
                InstallError::Layout(format!("the npm registry has no version of {}", pkg.spec))
            })
        }
        Ecosystem::Python => {
            let python = program(&pkg.spec, "python3", PYTHON_FIX)?;
            let out = run(
                &pkg.spec,
                "`pip install --dry-run` (resolving the version)",
                Ecosystem::Python,
                tokio::process::Command::new(python).args([
                    "-m",
                    "pip",
                    "install",
                    "--dry-run",
                    "--ignore-installed",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--disable-pip-version-check",
                    "--quiet",
                    "--report",
                    "-",
                    &pkg.spec,
                ]),
            )
            .await?;
            let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
            report["install"][0]["metadata"]["version"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| {
                    InstallError::Layout(format!("pip resolved no version of {}", pkg.spec))
                })
        }
    }
}

async fn run_install(
    server: &str,
    spec: &InstallSpec,
    version: &str,
    dir: &Path,
    key: &str,
) -> Result<(), InstallError> {
    let pkg = &spec.main;
    let exact = match (spec.ecosystem, &spec.lockfile) {
        // Only a label then: the lockfile says what is installed.
        (_, Some(lock)) => format!("{} from the lockfile {}", pkg.name, lock.display()),
        (Ecosystem::Npm, None) => format!("{}@{version}", pkg.name),
        (Ecosystem::Python, None) => match pkg.spec.find(['=', '>', '<', '~', '!']) {
            Some(op) => format!("{}=={version}", &pkg.spec[..op]),
            None => format!("{}=={version}", pkg.spec),
        },
    };
    if dir.exists() {
        tracing::info!(server, dir = %dir.display(), "removing an unfinished install");
        std::fs::remove_dir_all(dir)
            .map_err(|e| InstallError::Layout(format!("cannot remove {}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| InstallError::Layout(format!("cannot create {}: {e}", dir.display())))?;
    tracing::info!(server, package = %exact, dir = %dir.display(), "installing package before the server's first start");
    let started = Instant::now();
    let extra: Vec<&str> = spec.extra.iter().map(|p| p.spec.as_str()).collect();
    let result = match spec.ecosystem {
        Ecosystem::Npm => {
            let npm = program(&exact, "npm", NPM_FIX)?;
            let mut cmd = tokio::process::Command::new(npm);
            let common = [
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--no-update-notifier",
                "--loglevel=warn",
            ];
            match &spec.lockfile {
                Some(lock) => {
                    lockfile::npm_project(lock, dir)?;
                    cmd.args(["ci", "--omit=dev", "--prefix"])
                        .arg(dir)
                        .args(common);
                    run(
                        &exact,
                        "`npm ci` (from the lockfile)",
                        Ecosystem::Npm,
                        &mut cmd,
                    )
                    .await
                    .and_then(|out| lockfile::npm_check(spec, lock, dir).map(|()| out))
                }
                None => {
                    cmd.arg("install")
                        .arg("--prefix")
                        .arg(dir)
                        .args(common)
                        .arg(&exact)
                        .args(&extra);
                    run(&exact, "`npm install`", Ecosystem::Npm, &mut cmd).await
                }
            }
        }
        Ecosystem::Python => {
            let python = program(&exact, "python3", PYTHON_FIX)?;
            let venv = dir.join("venv");
            let made = run(
                &exact,
                "`python3 -m venv`",
                Ecosystem::Python,
                tokio::process::Command::new(python)
                    .args(["-m", "venv"])
                    .arg(&venv),
            )
            .await;
            match made {
                Ok(_) => {
                    let mut cmd = tokio::process::Command::new(venv.join("bin/python"));
                    cmd.args([
                        "-m",
                        "pip",
                        "install",
                        "--no-input",
                        "--disable-pip-version-check",
                        "--only-binary=:all:",
                        "--quiet",
                    ]);
                    match &spec.lockfile {
                        // Every package is pinned by the file; hashes are checked when given.
                        Some(lock) => cmd.args(["--no-deps", "-r"]).arg(lock),
                        None => cmd.arg(&exact).args(&extra),
                    };
                    run(&exact, "`pip install`", Ecosystem::Python, &mut cmd).await
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        // Nothing half-installed stays behind to be mistaken for a package.
        let _ = std::fs::remove_dir_all(dir);
        tracing::warn!(server, package = %exact, "install failed: {e}");
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    let marker = serde_json::json!({
        "ecosystem": spec.ecosystem.as_str(),
        "package": pkg.name,
        "version": version,
        "spec": key,
        "installed_at": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "seconds": seconds,
    });
    std::fs::write(dir.join(MARKER), marker.to_string())
        .map_err(|e| InstallError::Layout(format!("cannot write {}: {e}", dir.display())))?;
    tracing::info!(server, package = %exact, dir = %dir.display(), seconds = format!("{seconds:.1}"), "installed package");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npx(args: &[&str]) -> InstallSpec {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        spec::parse("npx", &args).unwrap().unwrap()
    }

    #[tokio::test]
    async fn the_folder_lock_holds_off_a_second_opener_until_released() {
        // flock locks belong to the open file, so a second open in this process contends as
        // another gateway's would.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("srv/npm-x-1.0.0");
        let held = lock_file(&target).await.unwrap();
        let t = target.clone();
        let waiter = tokio::spawn(async move {
            let _second = lock_file(&t).await.unwrap();
            Instant::now()
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "the second opener waits");
        let released = Instant::now();
        drop(held);
        let acquired = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the lock is handed over")
            .unwrap();
        assert!(acquired >= released);
        assert!(target.with_extension("lock").is_file());
    }

    #[test]
    fn folders_are_keyed_by_package_and_version_and_extras_get_a_tag() {
        let s = npx(&["-y", "@modelcontextprotocol/server-filesystem@2026.8.31"]);
        assert_eq!(
            dir_name(&s, "2026.8.31"),
            "npm-modelcontextprotocol+server-filesystem-2026.8.31"
        );
        let a = dir_name(&npx(&["-p", "a@1.0.0", "-p", "b", "a"]), "1.0.0");
        let b = dir_name(&npx(&["-p", "a@1.0.0", "-p", "c", "a"]), "1.0.0");
        assert!(a.starts_with("npm-a-1.0.0-") && a != b, "{a} {b}");
    }

    #[test]
    fn an_unpinned_spec_reuses_the_version_a_complete_install_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let s = npx(&["pkg"]);
        assert_eq!(reuse_resolved(dir.path(), &s, "pkg"), None);
        for (v, at, complete) in [("1.0.0", 1, true), ("1.1.0", 2, true), ("1.2.0", 3, false)] {
            let d = dir.path().join(format!("npm-pkg-{v}"));
            std::fs::create_dir(&d).unwrap();
            if complete {
                let m = serde_json::json!({"ecosystem": "npm", "spec": "pkg", "version": v, "installed_at": at});
                std::fs::write(d.join(MARKER), m.to_string()).unwrap();
            }
        }
        assert_eq!(
            reuse_resolved(dir.path(), &s, "pkg").as_deref(),
            Some("1.1.0")
        );
        assert_eq!(reuse_resolved(dir.path(), &s, "pkg@latest"), None);
    }
}
