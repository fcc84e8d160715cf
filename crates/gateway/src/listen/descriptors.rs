//! The process's file descriptors: its open-file limit, how many are open, and whether an
//! error means there are none left.

/// The soft `RLIMIT_NOFILE` (`u64::MAX` when unlimited or unknown).
pub(crate) fn soft_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    limit.rlim_cur
}

/// Descriptors open in this process now (0 where `/proc/self/fd` does not exist).
pub(crate) fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        // The directory being read holds one descriptor itself.
        .map(|d| d.count().saturating_sub(1) as u64)
        .unwrap_or(0)
}

/// True when `e` says the process (EMFILE) or the system (ENFILE) is out of descriptors, or
/// the kernel out of socket memory.
pub(crate) fn exhausted(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_open_descriptors_and_reads_the_limit() {
        let files: Vec<_> = (0..8)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let open = open_now();
        assert!(open >= 8, "{open}");
        drop(files);
        assert!(soft_limit() > open);
        assert!(exhausted(&std::io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!exhausted(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
