//! Memory, PID and CPU limits for a sandboxed server: a cgroup of its own under the
//! gateway's, in cgroup v2 or v1 (the controllers found mounted). Where the gateway may not
//! create one, the server starts without them and its start log says why.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_config::Resources;

const ROOT: &str = "/sys/fs/cgroup";
/// The folder, under the gateway's own cgroup, that holds its servers' cgroups.
const PARENT: &str = "gatehouse-servers";
/// CFS period the CPU quota is a share of.
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup layout this machine has and where the gateway sits in it.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// cgroup v2: one tree; the gateway's cgroup folder.
    V2(PathBuf),
    /// cgroup v1: one tree per controller; the gateway's folder in each (`None`: not
    /// mounted).
    V1 {
        /// The `memory` controller.
        memory: Option<PathBuf>,
        /// The `pids` controller.
        pids: Option<PathBuf>,
        /// The `cpu` controller.
        cpu: Option<PathBuf>,
    },
    /// No cgroups found.
    None,
}

impl Hierarchy {
    /// Reads `/proc/self/cgroup` and the mounts under `/sys/fs/cgroup`.
    pub fn detect() -> Hierarchy {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if Path::new(ROOT).join("cgroup.controllers").is_file() {
            let rel = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            return Hierarchy::V2(join(Path::new(ROOT), rel));
        }
        let v1 = |controller: &str| {
            let mount = Path::new(ROOT).join(controller);
            if !mount.join("cgroup.procs").is_file() {
                return None;
            }
            let rel = own.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
                names.split(',').any(|n| n == controller).then_some(path)
            })?;
            Some(join(&mount, rel))
        };
        let (memory, pids, cpu) = (v1("memory"), v1("pids"), v1("cpu"));
        if memory.is_none() && pids.is_none() && cpu.is_none() {
            return Hierarchy::None;
        }
        Hierarchy::V1 { memory, pids, cpu }
    }

    /// Creates the cgroup for one server process with `limits`. `Err` says why there are no
    /// limits (the server may still start; its log line carries the reason).
    pub fn create(&self, name: &str, limits: &Resources) -> Result<Cgroup, String> {
        let mut cg = Cgroup {
            dirs: Vec::new(),
            procs: Vec::new(),
            version: "",
        };
        match self {
            Hierarchy::None => return Err("no cgroup hierarchy is mounted".into()),
            Hierarchy::V2(own) => {
                cg.version = "cgroup v2";
                let parent = own.join(PARENT);
                ensure_dir(&parent)?;
                // Controllers must be enabled on the way down; a parent holding processes
                // cannot hand them on (the "no internal processes" rule).
                for dir in [own.as_path(), parent.as_path()] {
                    write(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
                }
                let dir = parent.join(name);
                ensure_dir(&dir)?;
                cg.dirs.push(dir.clone());
                write(&dir.join("memory.max"), &limits.memory.0.to_string())?;
                let _ = write(&dir.join("memory.swap.max"), "0");
                write(&dir.join("pids.max"), &limits.pids.to_string())?;
                if let Some(cpus) = limits.cpus {
                    let quota = cpu_quota(cpus);
                    write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                cg.procs.push(open_procs(&dir)?);
            }
            Hierarchy::V1 { memory, pids, cpu } => {
                cg.version = "cgroup v1";
                let (Some(memory), Some(pids)) = (memory, pids) else {
                    return Err("the memory and pids controllers are not both mounted".into());
                };
                let mut make = |base: &Path| -> Result<PathBuf, String> {
                    let parent = base.join(PARENT);
                    ensure_dir(&parent)?;
                    let dir = parent.join(name);
                    ensure_dir(&dir)?;
                    cg.dirs.push(dir.clone());
                    Ok(dir)
                };
                let mem = make(memory)?;
                write(
                    &mem.join("memory.limit_in_bytes"),
                    &limits.memory.0.to_string(),
                )?;
                let _ = write(&mem.join("memory.swappiness"), "0");
                let pid = make(pids)?;
                write(&pid.join("pids.max"), &limits.pids.to_string())?;
                let cpu_dir = match (limits.cpus, cpu) {
                    (Some(cpus), Some(cpu)) => {
                        let dir = make(cpu)?;
                        write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                        let quota = cpu_quota(cpus);
                        write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                        Some(dir)
                    }
                    (Some(_), None) => return Err("the cpu controller is not mounted".into()),
                    _ => None,
                };
                cg.procs.push(open_procs(&mem)?);
                cg.procs.push(open_procs(&pid)?);
                if let Some(dir) = cpu_dir {
                    cg.procs.push(open_procs(&dir)?);
                }
            }
        }
        Ok(cg)
    }
}

impl Hierarchy {
    /// The folders holding servers' cgroups (one per v1 controller).
    fn parents(&self) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2(own) => vec![own.join(PARENT)],
            Hierarchy::V1 { memory, pids, cpu } => [memory, pids, cpu]
                .into_iter()
                .flatten()
                .map(|c| c.join(PARENT))
                .collect(),
            Hierarchy::None => Vec::new(),
        }
    }

    /// Ends what a gateway that is gone left behind: every process in a server cgroup whose
    /// gateway (the pid in its name, `<server>-<pid>-<n>`) no longer runs is killed, and the
    /// cgroup removed. Returns how many processes were killed.
    pub fn reap_stale(&self) -> usize {
        let mut killed = 0;
        let mut stale = Vec::new();
        for parent in self.parents() {
            for entry in fs::read_dir(&parent).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(owner) = owner_pid(&name) else {
                    continue;
                };
                if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
                    continue;
                }
                let dir = entry.path();
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) on a pid read from the stale cgroup; no memory involved.
                    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                        killed += 1;
                    }
                }
                stale.push(dir);
            }
        }
        if !stale.is_empty() {
            tracing::warn!(
                killed,
                cgroups = stale.len(),
                "ended the sandboxes a previous gateway left behind"
            );
            remove_when_empty(stale);
        }
        killed
    }
}

/// The gateway pid in a server cgroup's name `<server>-<pid>-<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(3, '-');
    let _instance: u64 = parts.next()?.parse().ok()?;
    parts.next()?.parse().ok()
}

/// One server's cgroup: joined by the child before it runs the sandbox, removed when dropped.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    /// Open `cgroup.procs` files, written by the child after fork.
    procs: Vec<OwnedFd>,
    version: &'static str,
}

impl Cgroup {
    /// The layout, for reports (`cgroup v1`, `cgroup v2`).
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// The cgroup's folders (one per v1 controller).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Raw descriptors of the `cgroup.procs` files, for [`join_self`] in the child.
    pub fn procs_fds(&self) -> Vec<i32> {
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }
}

/// Moves the calling process into the cgroups whose `cgroup.procs` descriptors are given.
/// Called between fork and exec, so it only makes `write(2)` calls.
pub fn join_self(fds: &[i32]) -> std::io::Result<()> {
    for &fd in fds {
        // "0" is the writer itself, so no pid needs formatting after fork.
        // SAFETY: writing two bytes from a static buffer to a descriptor we own.
        let n = unsafe { libc::write(fd, b"0\n".as_ptr().cast(), 2) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        remove_when_empty(std::mem::take(&mut self.dirs));
    }
}

/// The CFS quota for `cpus` CPUs per period (at least 1 ms, the kernel's minimum).
fn cpu_quota(cpus: f64) -> u64 {
    (cpus * CPU_PERIOD_US as f64).round().max(1000.0) as u64
}

/// Removes `dirs` once the processes in them are gone, retrying for a while off the caller's
/// thread (a cgroup can only be removed when empty, and its processes are being killed).
fn remove_when_empty(dirs: Vec<PathBuf>) {
    if dirs.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        for _ in 0..100 {
            let left: Vec<_> = dirs
                .iter()
                .filter(|d| fs::remove_dir(d).is_err() && d.exists())
                .collect();
            if left.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(cgroups = ?dirs, "could not remove a stopped server's cgroup");
    });
}

fn join(base: &Path, rel: &str) -> PathBuf {
    base.join(rel.trim_start_matches('/'))
}

fn ensure_dir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    fs::write(file, value).map_err(|e| format!("cannot write {value:?} to {}: {e}", file.display()))
}

fn open_procs(dir: &Path) -> Result<OwnedFd, String> {
    let path = dir.join("cgroup.procs");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .map(|f: File| f.into())
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_name_carries_its_gateway_pid() {
        assert_eq!(owner_pid("github-1234-7"), Some(1234));
        assert_eq!(owner_pid("my-server-name-99-0"), Some(99));
        assert_eq!(owner_pid("other"), None);
        assert_eq!(owner_pid("x-y-z"), None);
    }
}
