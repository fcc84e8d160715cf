//! The session store's clock: one monotonic reading per request gives both the idle time (in
//! milliseconds) and the wall-clock seconds a sealed id's `iat` is compared with.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub(super) enum Clock {
    /// The machine's clocks: wall time read once at start, then advanced monotonically (a
    /// wall-clock step does not expire or revive every session at once).
    System { start: Instant, start_unix_ms: u64 },
    /// A clock tests move by hand, starting at `start_unix_ms`.
    #[cfg(test)]
    Manual {
        start_unix_ms: u64,
        elapsed_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    },
}

impl Clock {
    pub(super) fn system() -> Clock {
        Clock::System {
            start: Instant::now(),
            start_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// Milliseconds since the clock started.
    pub(super) fn now_ms(&self) -> u64 {
        match self {
            Clock::System { start, .. } => start.elapsed().as_millis() as u64,
            #[cfg(test)]
            Clock::Manual { elapsed_ms, .. } => {
                elapsed_ms.load(std::sync::atomic::Ordering::Relaxed)
            }
        }
    }

    /// Unix seconds at `now_ms` (a reading of [`Clock::now_ms`]).
    pub(super) fn unix_secs_at(&self, now_ms: u64) -> u64 {
        let start = match self {
            Clock::System { start_unix_ms, .. } => *start_unix_ms,
            #[cfg(test)]
            Clock::Manual { start_unix_ms, .. } => *start_unix_ms,
        };
        (start + now_ms) / 1000
    }
}
