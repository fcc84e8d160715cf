//! The helper that runs first inside a sandbox: after bubblewrap has built the namespaces and
//! mounts, it turns on `no_new_privs`, Landlock (the kernel's own file and network access
//! control, as far as the kernel's ABI goes) and a seccomp filter, then executes the server.
//! Landlock has to come after the mounts (it forbids changing them), which is why this runs
//! inside rather than in the gateway.
//!
//! The gateway runs it as `gatehouse sandbox-exec SPEC -- PROGRAM ARGS…`; `SPEC` is an
//! [`ExecSpec`] as JSON (paths only, never a secret).

use std::ffi::CString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The subcommand the helper answers to.
pub const SUBCOMMAND: &str = "sandbox-exec";

/// Whether this build has a seccomp filter for its architecture.
pub const SECCOMP_AVAILABLE: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// What the helper restricts the server to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Paths the server may read and execute beneath.
    pub read: Vec<PathBuf>,
    /// Paths the server may read and write beneath.
    pub write: Vec<PathBuf>,
    /// The Landlock ABI to use (0: none).
    pub landlock_abi: u8,
    /// Refuse every TCP connect (Landlock ABI 4 and later; the network namespace has no
    /// route out either way).
    pub deny_tcp: bool,
    /// With an egress allow-list: the only TCP ports a connect may name (Landlock ABI 4 and
    /// later; the egress proxy decides every connection either way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_ports: Vec<u16>,
}

/// Runs the helper with the arguments after the subcommand: `SPEC -- PROGRAM ARGS…`. Only
/// returns an error; on success the process has become the server.
pub fn run(args: &[String]) -> String {
    let (spec, program) = match args {
        [spec, dashes, program @ ..] if dashes == "--" && !program.is_empty() => (spec, program),
        _ => return "usage: gatehouse sandbox-exec SPEC -- PROGRAM [ARGS…] (run by the gateway inside a sandbox, not by hand)".into(),
    };
    let spec: ExecSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => return format!("invalid sandbox spec: {e}"),
    };
    if let Err(e) = restrict(&spec) {
        return e;
    }
    let argv: Result<Vec<CString>, _> =
        program.iter().map(|a| CString::new(a.as_bytes())).collect();
    let Ok(argv) = argv else {
        return "an argument contains a NUL byte".into();
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: argv holds NUL-terminated strings that outlive the call; the array ends with
    // NULL. execv only returns on failure. The environment is the one bwrap passed on.
    unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
    format!(
        "cannot run {}: {}",
        program[0],
        std::io::Error::last_os_error()
    )
}

fn restrict(spec: &ExecSpec) -> Result<(), String> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot set no_new_privs: {}",
            std::io::Error::last_os_error()
        ));
    }
    #[cfg(target_os = "linux")]
    {
        if spec.landlock_abi > 0 {
            landlock_rules(spec).map_err(|e| format!("cannot apply Landlock: {e}"))?;
        }
        seccomp::apply().map_err(|e| format!("cannot apply the seccomp filter: {e}"))?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn landlock_rules(spec: &ExecSpec) -> Result<(), landlock::RulesetError> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
        RulesetCreatedAttr, Scope, path_beneath_rules,
    };
    let abi = ABI::from(i32::from(spec.landlock_abi));
    let mut ruleset = Ruleset::default()
        // The ABI was read from the kernel; what it lacks is left out, not an error.
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))?;
    let limit_tcp = spec.deny_tcp || !spec.connect_ports.is_empty();
    if limit_tcp && spec.landlock_abi >= 4 {
        ruleset = ruleset.handle_access(AccessNet::ConnectTcp)?;
    }
    if spec.landlock_abi >= 6 {
        ruleset = ruleset.scope(Scope::from_all(abi))?;
    }
    let existing = |paths: &[PathBuf]| -> Vec<PathBuf> {
        paths.iter().filter(|p| p.exists()).cloned().collect()
    };
    let ports: Vec<u16> = if spec.landlock_abi >= 4 && !spec.deny_tcp {
        spec.connect_ports.clone()
    } else {
        Vec::new()
    };
    ruleset
        .create()?
        .add_rules(
            ports
                .into_iter()
                .map(|p| Ok::<_, landlock::RulesetError>(NetPort::new(p, AccessNet::ConnectTcp))),
        )?
        // Listing folders reveals only the sandbox's own tree (the mounts decide what is in
        // it); programs that walk up from their folder (Node's module resolution, path
        // checks that scan parents) need it.
        .add_rules(path_beneath_rules(["/"], AccessFs::ReadDir))?
        .add_rules(path_beneath_rules(
            existing(&spec.read),
            AccessFs::from_read(abi),
        ))?
        .add_rules(path_beneath_rules(
            existing(&spec.write),
            AccessFs::from_all(abi),
        ))?
        .restrict_self()?;
    Ok(())
}

#[cfg(target_os = "linux")]
mod seccomp {
    //! System calls an MCP server never needs and an attacker wants: changing mounts or
    //! namespaces, tracing other processes, loading kernel code, keyrings, the clock.
    //! They fail with `EPERM` (a polite refusal the program can report), except `clone3`,
    //! whose flags a filter cannot read: it fails with `ENOSYS`, so the C library falls
    //! back to `clone`, whose namespace flags the filter does check.

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    pub(super) fn apply() -> Result<(), String> {
        use std::collections::BTreeMap;

        use seccompiler::{
            BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
            SeccompFilter, SeccompRule,
        };

        #[cfg(target_arch = "x86_64")]
        let arch = seccompiler::TargetArch::x86_64;
        #[cfg(target_arch = "aarch64")]
        let arch = seccompiler::TargetArch::aarch64;

        let mut denied: BTreeMap<i64, Vec<SeccompRule>> =
            DENIED.iter().map(|&n| (n, Vec::new())).collect();
        let namespace_flags = [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWCGROUP,
        ];
        let clone_rules = namespace_flags
            .iter()
            .map(|&flag| {
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(flag as u64),
                    flag as u64,
                )
                .and_then(|c| SeccompRule::new(vec![c]))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        denied.insert(libc::SYS_clone, clone_rules);
        let eperm = SeccompFilter::new(
            denied,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .map_err(|e| e.to_string())?;
        let enosys = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .map_err(|e| e.to_string())?;
        for filter in [eperm, enosys] {
            let program: BpfProgram = filter
                .try_into()
                .map_err(|e: seccompiler::BackendError| e.to_string())?;
            seccompiler::apply_filter(&program).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub(super) fn apply() -> Result<(), String> {
        Ok(())
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    const DENIED: &[i64] = &[
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_vhangup,
        libc::SYS_fanotify_init,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_invocation_says_how_the_helper_is_run() {
        assert!(run(&[]).starts_with("usage: gatehouse sandbox-exec"));
        let e = run(&["{".into(), "--".into(), "/bin/true".into()]);
        assert!(e.starts_with("invalid sandbox spec"), "{e}");
    }
}
