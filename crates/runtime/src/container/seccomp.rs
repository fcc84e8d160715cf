//! The seccomp profile of Gatehouse's containers: the engine's default lets a process without
//! capabilities create user namespaces (`unshare`, `clone` with `CLONE_NEW*`), which the
//! minimal profile forbids; this profile refuses them, mounts, tracing, kernel keyrings,
//! modules, BPF and io_uring with `EPERM`, and everything else as the kernel decides (with
//! no capabilities and `no-new-privileges`).
//!
//! Podman 4.3's compatible API reads `seccomp=` as a path, Docker as the profile itself, so the
//! profile is written once to a file and passed as the engine expects.

use std::path::PathBuf;

use serde_json::{Value, json};

/// System calls refused with `EPERM`.
const REFUSED: &[&str] = &[
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "quotactl",
    "name_to_handle_at",
    "open_by_handle_at",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "syslog",
    "vhangup",
    "uselib",
];

/// `clone` flags that make a namespace: `NEWTIME`, `NEWNS`, `NEWCGROUP`, `NEWUTS`, `NEWIPC`,
/// `NEWUSER`, `NEWPID`, `NEWNET`.
const NAMESPACE_FLAGS: &[u64] = &[
    0x80,
    0x2_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// The profile as OCI/Docker seccomp JSON.
pub(crate) fn profile() -> Value {
    let mut rules = vec![json!({
        "names": REFUSED,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": libc::EPERM,
    })];
    // One rule per flag: rules of one entry are ANDed, entries ORed.
    for flag in NAMESPACE_FLAGS {
        rules.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    // clone3 passes its flags in memory seccomp cannot read: "not implemented" makes the C
    // library fall back to clone, which the rules above see.
    rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": rules,
    })
}

/// The profile written to a file the engine can read (Podman reads it by path); named by
/// its content, so concurrent gateways share it and a changed profile gets a new file.
pub(crate) fn write_file() -> std::io::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let text = profile().to_string();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    let path = std::env::temp_dir().join(format!("gatehouse-seccomp-{:016x}.json", h.finish()));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_refuses_namespaces_and_mounts_and_is_written_once() {
        let p = profile();
        let text = p.to_string();
        for name in ["unshare", "setns", "mount", "ptrace", "clone3"] {
            assert!(text.contains(&format!("\"{name}\"")), "{name}");
        }
        let clones = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"][0] == "clone")
            .count();
        assert_eq!(clones, NAMESPACE_FLAGS.len());
        let a = write_file().unwrap();
        let b = write_file().unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read_to_string(a).unwrap(), text);
    }
}
