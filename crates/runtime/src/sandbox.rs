//! The command lines: a plain process, or `bwrap` building the sandbox around Gatehouse's
//! helper, which then runs the server.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use gatehouse_config::{IsolationConfig, RuntimeKind, ServerConfig, ServerKind};
use tokio::process::Command;

use crate::exec::ExecSpec;
use crate::plan::{Protections, SandboxPlan};
use crate::{Launch, RuntimeError, cgroup};

/// Where the helper binary appears inside the sandbox.
pub(crate) const HELPER_INSIDE: &str = "/run/gatehouse/sandbox-exec";

/// System folders shown read-only (or as the symlinks they are on merged-/usr systems).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// What of `/etc` a program needs to start, resolve names and check certificates: no
/// secrets (`shadow`, keys) and no configuration of other services.
const ETC_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/passwd",
    "/etc/group",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/mime.types",
];

/// Devices the server may write to.
const WRITABLE_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/shm"];

/// Today's behaviour: a child with the gateway's environment and rights.
pub(crate) fn process(server: &ServerConfig, extra_env: Vec<(String, String)>) -> Launch {
    let ServerKind::Stdio {
        command,
        args,
        env,
        cwd,
        ..
    } = server.kind()
    else {
        unreachable!("only local servers are launched");
    };
    let mut cmd = Command::new(command);
    cmd.args(args).envs(env.iter()).envs(extra_env);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    Launch {
        command: cmd,
        runtime: RuntimeKind::Process,
        protections: Protections::default(),
        cgroup: None,
        inherited: Vec::new(),
        egress: None,
    }
}

/// What one sandbox is built from.
pub(crate) struct Sandbox<'a> {
    pub server: &'a str,
    /// With an allow-list: the namespace the sandbox joins instead of an empty one of its own.
    pub egress: Option<crate::egress::Egress>,
    pub plan: SandboxPlan,
    pub iso: &'a IsolationConfig,
    pub bwrap: &'a Path,
    pub helper: &'a Path,
    pub landlock_abi: u8,
    pub cgroups: &'a cgroup::Hierarchy,
    pub instance: u64,
}

pub(crate) fn build(s: Sandbox<'_>) -> Result<Launch, RuntimeError> {
    let plan = &s.plan;
    let mut args: Vec<String> = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--hostname",
        "mcp-server",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if s.egress.is_some() {
        // Every namespace of its own but the network: that one the gateway built (joined
        // in pre_exec below), whose only way out is the egress proxy.
        args.insert(1, "--share-net".into());
    }
    let mut mount = |how: &str, from: &Path, to: &Path| {
        args.push(how.into());
        args.push(from.display().to_string());
        args.push(to.display().to_string());
    };
    for dir in SYSTEM_DIRS.iter().map(Path::new) {
        match std::fs::read_link(dir) {
            Ok(target) => mount("--symlink", &target, dir),
            Err(_) if dir.is_dir() => mount("--ro-bind", dir, dir),
            Err(_) => {}
        }
    }
    for f in ETC_FILES.iter().map(Path::new).filter(|f| f.exists()) {
        mount("--ro-bind", f, f);
    }
    // Parents before children, so a nested grant is mounted on top of its parent's.
    let mut grants: Vec<(&Path, bool)> = plan
        .read
        .iter()
        .map(|p| (p.as_path(), false))
        .chain(plan.write.iter().map(|p| (p.as_path(), true)))
        .filter(|(p, write)| *write || !under_system(p))
        .collect();
    grants.sort_by_key(|(p, _)| p.components().count());
    grants.dedup();
    args.extend(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"].map(String::from));
    for (p, write) in &grants {
        let how = if *write { "--bind" } else { "--ro-bind" };
        args.extend([
            how.to_string(),
            p.display().to_string(),
            p.display().to_string(),
        ]);
    }
    args.extend([
        "--ro-bind".into(),
        s.helper.display().to_string(),
        HELPER_INSIDE.into(),
    ]);
    let mut inherited = Vec::new();
    for (path, value) in &plan.secret_files {
        let fd = memfd_with(value)
            .map_err(|e| RuntimeError::Profile(format!("cannot hold a secret file: {e}")))?;
        args.extend([
            "--perms".into(),
            "0400".into(),
            "--ro-bind-data".into(),
            fd.as_raw_fd().to_string(),
            path.display().to_string(),
        ]);
        inherited.push(fd);
    }
    if s.egress.is_some() {
        // Names resolve through the namespace's own DNS listener, never the host's resolver.
        let fd = memfd_with(crate::egress::RESOLV_CONF)
            .map_err(|e| RuntimeError::Profile(format!("cannot hold resolv.conf: {e}")))?;
        args.extend([
            "--ro-bind-data".into(),
            fd.as_raw_fd().to_string(),
            "/etc/resolv.conf".into(),
        ]);
        inherited.push(fd);
    }
    args.extend(["--chdir".into(), plan.cwd.display().to_string()]);

    let spec = ExecSpec {
        read: landlock_reads(plan),
        write: landlock_writes(plan),
        landlock_abi: s.landlock_abi,
        deny_tcp: s.iso.network.egress.is_empty(),
        // The ports the allow-list names (connects are checked before nftables redirects
        // them): Landlock refuses the rest at the connect call already.
        connect_ports: gatehouse_config::EgressPolicy::parse(&s.iso.network.egress)
            .map(|p| p.ports())
            .unwrap_or_default(),
    };
    args.extend([
        "--".into(),
        HELPER_INSIDE.into(),
        crate::exec::SUBCOMMAND.into(),
        serde_json::to_string(&spec).expect("spec serialises"),
        "--".into(),
        plan.program.display().to_string(),
    ]);
    args.extend(plan.args.iter().cloned());

    let cgroup_name = format!("{}-{}-{}", s.server, std::process::id(), s.instance);
    let (cgroup, limits) = match s.cgroups.create(&cgroup_name, &s.iso.resources) {
        Ok(cg) => {
            let r = &s.iso.resources;
            let cpus = r.cpus.map_or(String::new(), |c| format!(" cpus={c}"));
            let text = format!(
                "memory={} pids={}{cpus} ({})",
                r.memory,
                r.pids,
                cg.version()
            );
            (Some(cg), text)
        }
        Err(why) => (None, format!("not enforced: {why}")),
    };
    let mut cmd = Command::new(s.bwrap);
    cmd.args(&args).env_clear().envs(plan.env.iter().cloned());
    let fds: Vec<i32> = cgroup
        .as_ref()
        .map(cgroup::Cgroup::procs_fds)
        .unwrap_or_default();
    let keep: Vec<i32> = inherited.iter().map(AsRawFd::as_raw_fd).collect();
    let netns = s.egress.as_ref().map(crate::egress::Egress::netns_fd);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (write, fcntl, setrlimit, setns) on descriptors and buffers set up before
    // fork.
    unsafe {
        cmd.pre_exec(move || {
            cgroup::join_self(&fds)?;
            if let Some(fd) = netns
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for &fd in &keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // A server's crash must not write its memory (and secrets) to disk.
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    Ok(Launch {
        command: cmd,
        runtime: RuntimeKind::Sandbox,
        protections: Protections {
            namespaces: match s.egress {
                None => "user pid ipc uts mount net cgroup",
                Some(_) => {
                    "user pid ipc uts mount cgroup; net: own namespace, egress through the gateway's proxy"
                }
            },
            landlock_abi: s.landlock_abi,
            seccomp: crate::exec::SECCOMP_AVAILABLE,
            limits,
        },
        cgroup,
        inherited,
        egress: s.egress,
    })
}

/// Inside `/usr` (also through a merged-/usr symlink such as `/bin`): visible already.
fn under_system(p: &Path) -> bool {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .starts_with("/usr")
}

/// What Landlock lets the server read: what the sandbox shows, nothing it does not.
fn landlock_reads(plan: &SandboxPlan) -> Vec<PathBuf> {
    let mut read: Vec<PathBuf> = ["/usr", "/etc", "/proc", "/dev", "/run/gatehouse"]
        .iter()
        .map(PathBuf::from)
        .collect();
    read.extend(plan.read.iter().cloned());
    read.extend(plan.secret_files.iter().map(|(p, _)| p.clone()));
    read.push(plan.cwd.clone());
    read
}

fn landlock_writes(plan: &SandboxPlan) -> Vec<PathBuf> {
    let mut write: Vec<PathBuf> = WRITABLE_DEVICES.iter().map(PathBuf::from).collect();
    write.push("/tmp".into());
    write.extend(plan.write.iter().cloned());
    write
}

/// A sealed-off in-memory file holding `value`, for bwrap to copy into the sandbox.
fn memfd_with(value: &str) -> std::io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    // SAFETY: memfd_create with a static NUL-terminated name; the returned descriptor is
    // owned by the File below.
    let fd = unsafe { libc::memfd_create(c"gatehouse-secret".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and nothing else owns it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(value.as_bytes())?;
    file.rewind()?;
    Ok(file.into())
}
