//! When a local server (a stdio process or an HTTP server's container) may start again after
//! it ended: at once after a healthy run, with exponential backoff while it keeps crashing.

use std::time::{Duration, Instant};

/// Backoff ceiling between restarts of a crashing server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a server must live to count as healthy again (resets the backoff).
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// The start history of one local server.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    consecutive_failures: u32,
    last_start: Option<Instant>,
}

impl Restarts {
    /// The server that ran for `lived` ended: a crash unless it lived long enough to count as
    /// healthy.
    pub(crate) fn ended(&mut self, lived: Duration) {
        if lived >= HEALTHY_AFTER {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
        }
    }

    /// A start failed.
    pub(crate) fn failed(&mut self) {
        self.consecutive_failures += 1;
    }

    /// A deliberate restart, not a crash: no backoff for the next start.
    pub(crate) fn reset(&mut self) {
        self.consecutive_failures = 0;
    }

    /// Waits out the backoff the crashes so far earned, then records a start.
    pub(crate) async fn before_start(&mut self, server: &str) {
        if let Some(wait) = self.backoff() {
            tracing::info!(server, ?wait, "waiting before restarting a crashing server");
            tokio::time::sleep(wait).await;
        }
        self.last_start = Some(Instant::now());
    }

    /// How long the backoff the crashes so far earned still runs (`None`: a start may go now).
    pub(crate) fn backoff(&self) -> Option<Duration> {
        if self.consecutive_failures <= 1 {
            return None;
        }
        let last = self.last_start?;
        let backoff = Duration::from_millis(250 * 2u64.pow(self.consecutive_failures.min(8) - 1))
            .min(MAX_BACKOFF);
        Some(backoff.saturating_sub(last.elapsed())).filter(|w| !w.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_earn_growing_waits_and_a_healthy_run_clears_them() {
        let mut r = Restarts {
            last_start: Some(Instant::now()),
            ..Default::default()
        };
        r.ended(Duration::from_secs(1));
        assert_eq!(r.backoff(), None, "the first crash restarts at once");
        r.failed();
        let first = r.backoff().unwrap();
        r.failed();
        let second = r.backoff().unwrap();
        assert!(second > first && second <= Duration::from_millis(1000));
        for _ in 0..20 {
            r.failed();
        }
        assert!(r.backoff().unwrap() <= MAX_BACKOFF);
        r.ended(HEALTHY_AFTER);
        assert_eq!(r.backoff(), None);
        r.failed();
        r.failed();
        r.reset();
        assert_eq!(r.backoff(), None);
    }
}
