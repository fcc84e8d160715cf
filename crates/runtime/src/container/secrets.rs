//! Secret files for a container: written to a memory-backed folder (never to disk, never in a
//! command line or the container's configuration) and bind-mounted read-only.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use super::engine::{SECRETS_PARENT, SECRETS_PREFIX};

/// One container's secret folder, removed when dropped.
#[derive(Debug)]
pub(crate) struct SecretDir {
    dir: PathBuf,
    /// Host file → path inside the container.
    pub mounts: Vec<(PathBuf, PathBuf)>,
}

impl SecretDir {
    /// Writes `files` (path inside → value) into a new folder named for `owner`
    /// (`host:pid:ticks`), which only the gateway's user may enter; each file is owned by
    /// `uid` (the container's user) with mode 0400 when given, else readable by any user of
    /// the container (0444: the image names its user, whose uid is not known here).
    pub(crate) fn write(
        owner: &str,
        instance: u64,
        files: &[(PathBuf, String)],
        uid: Option<u32>,
    ) -> std::io::Result<SecretDir> {
        let mut parts = owner.rsplitn(3, ':');
        let (ticks, pid) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
        let dir =
            PathBuf::from(SECRETS_PARENT).join(format!("{SECRETS_PREFIX}{pid}-{ticks}-{instance}"));
        // A folder left by an earlier gateway with our pid and start time cannot exist, but a
        // stale one is not trusted either.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let mut made = SecretDir {
            dir,
            mounts: Vec::new(),
        };
        for (i, (inside, value)) in files.iter().enumerate() {
            let host = made.dir.join(i.to_string());
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if uid.is_some() { 0o400 } else { 0o444 })
                .open(&host)?;
            f.write_all(value.as_bytes())?;
            if let Some(uid) = uid {
                std::os::unix::fs::chown(&host, Some(uid), None)?;
            }
            made.mounts.push((host, inside.clone()));
        }
        Ok(made)
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn secret_files_live_in_memory_readable_by_their_owner_only_and_go_with_the_guard() {
        let files = vec![(PathBuf::from("/run/secrets/t"), "s3cret".to_string())];
        let d = SecretDir::write("h:999999:1", 7, &files, Some(65534)).unwrap();
        let (host, inside) = &d.mounts[0];
        assert!(host.starts_with("/dev/shm"), "{}", host.display());
        assert_eq!(inside, &PathBuf::from("/run/secrets/t"));
        assert_eq!(std::fs::read_to_string(host).unwrap(), "s3cret");
        assert_eq!(std::fs::metadata(host).unwrap().mode() & 0o777, 0o400);
        assert_eq!(std::fs::metadata(&d.dir).unwrap().mode() & 0o777, 0o700);
        let dir = d.dir.clone();
        drop(d);
        assert!(!dir.exists());
    }
}
