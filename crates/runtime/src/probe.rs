//! What this machine offers the sandbox: the `bwrap` program, user namespaces, Landlock.
//!
//! A missing feature is an error that names it and the setting that enables it: a server
//! that needs the sandbox never falls back to running unisolated.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The kernel's Landlock ABI version (0: Landlock unavailable or not enabled).
pub fn landlock_abi() -> u8 {
    #[cfg(target_os = "linux")]
    {
        const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
        // SAFETY: with a null attribute, size 0 and the VERSION flag the call only returns
        // the ABI version (or an error); it touches no memory.
        let v = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        v.clamp(0, u8::MAX as libc::c_long) as u8
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// What each Landlock ABI adds, for reports: the protections a sandbox gets at `abi`.
pub fn landlock_summary(abi: u8) -> &'static str {
    match abi {
        0 => "off (the kernel has no Landlock)",
        1..=3 => "filesystem only (no network rules before ABI 4)",
        4 | 5 => "filesystem and TCP connect",
        _ => "filesystem, TCP connect, signals and abstract sockets",
    }
}

/// Finds `bwrap` and checks that it can build a sandbox here (user and network namespaces).
/// The error names what is missing and how to enable it.
pub fn sandbox(bwrap: Option<&Path>) -> Result<PathBuf, String> {
    sandbox_with(bwrap, std::env::var_os("PATH"))
}

fn sandbox_with(bwrap: Option<&Path>, path: Option<OsString>) -> Result<PathBuf, String> {
    if !cfg!(target_os = "linux") {
        return Err("the sandbox needs Linux; use runtime container or process".into());
    }
    let bwrap = match bwrap {
        Some(p) => p.to_path_buf(),
        None => find_in("bwrap", path).ok_or_else(|| {
            "the sandbox needs bubblewrap (bwrap), which is not installed: install the bubblewrap package (apt install bubblewrap, dnf install bubblewrap), or run this server with runtime container or process".to_string()
        })?,
    };
    let out = Command::new(&bwrap)
        .args([
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--ro-bind",
            "/",
            "/",
            "--",
            "/bin/true",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
    if out.status.success() {
        return Ok(bwrap);
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(explain_failure(&said))
}

/// Turns bwrap's complaint into the missing feature and the setting that enables it.
fn explain_failure(said: &str) -> String {
    let lower = said.to_ascii_lowercase();
    let missing = if lower.contains("namespace")
        || lower.contains("uid map")
        || lower.contains("setting up uid")
    {
        "user namespaces are not available to the gateway: the kernel forbids unprivileged ones (sysctl kernel.unprivileged_userns_clone=1 or user.max_user_namespaces > 0), or a seccomp profile forbids unshare(2), as a default Kubernetes pod's does (run the pod with seccompProfile: Unconfined or a profile allowing unshare, or use runtime container)"
    } else if lower.contains("operation not permitted") || lower.contains("permission denied") {
        "the kernel refused to create the sandbox's namespaces (a seccomp or AppArmor profile, or a container without CAP_SYS_ADMIN in its user namespace)"
    } else {
        "the sandbox could not be built"
    };
    format!(
        "cannot build the sandbox: {missing}; bwrap said: {said}. Gatehouse does not fall back to running the server without isolation"
    )
}

/// The first executable called `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in(name, std::env::var_os("PATH"))
}

fn find_in(name: &str, path: Option<OsString>) -> Option<PathBuf> {
    std::env::split_paths(&path?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_failure_names_the_sysctl_and_the_kubernetes_setting() {
        let e = explain_failure(
            "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces.",
        );
        assert!(e.contains("user.max_user_namespaces"), "{e}");
        assert!(e.contains("seccompProfile"), "{e}");
        assert!(e.contains("does not fall back"), "{e}");
    }

    #[test]
    fn a_missing_bwrap_says_which_package_to_install() {
        let e = sandbox(Some(Path::new("/nonexistent/bwrap"))).unwrap_err();
        assert!(e.contains("/nonexistent/bwrap"), "{e}");
        let e = sandbox_with(None, Some("/nonexistent".into())).unwrap_err();
        assert!(e.contains("apt install bubblewrap"), "{e}");
    }
}
