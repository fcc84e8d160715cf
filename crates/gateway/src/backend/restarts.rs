//! When a local server (a stdio process or an HTTP server's container) may start again after
//! it ended: at once after a healthy run, with exponential backoff while it keeps crashing.
//! While the backoff runs, a request fails at once with the last failure instead of waiting:
//! a member that keeps failing must not hold up the tool lists it is part of.

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
    /// Why the server last ended or failed to start; cleared by a start that worked.
    last_error: Option<String>,
}

impl Restarts {
    /// The server that ran for `lived` ended: a crash unless it lived long enough to count as
    /// healthy.
    pub(crate) fn ended(&mut self, lived: Duration) {
        self.last_error = Some(format!("it exited after {} s", lived.as_secs()));
        if lived >= HEALTHY_AFTER {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
        }
    }

    /// A start failed with `e`.
    pub(crate) fn failed(&mut self, e: &super::BackendError) {
        self.consecutive_failures += 1;
        self.last_error = Some(match e {
            super::BackendError::Unavailable { reason, .. } => reason.clone(),
            other => other.to_string(),
        });
    }

    /// A start worked.
    pub(crate) fn started(&mut self) {
        self.last_error = None;
    }

    /// While the backoff runs: the last failure and when the next start is tried, for the
    /// request to fail with at once. `None`: a start may go now.
    pub(crate) fn refusal(&self) -> Option<String> {
        let wait = self.backoff()?;
        let why = self.last_error.as_deref()?;
        Some(format!(
            "{why}; it is started again in {:.1} s",
            wait.as_secs_f64()
        ))
    }

    /// A deliberate restart, not a crash: no backoff for the next start.
    pub(crate) fn reset(&mut self) {
        self.consecutive_failures = 0;
    }

    /// Waits out what is left of the backoff (without a known failure to answer with), then
    /// records a start.
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

    fn missing() -> crate::backend::BackendError {
        crate::backend::BackendError::Unavailable {
            server: "s".into(),
            reason: "image missing".into(),
        }
    }

    #[test]
    fn crashes_earn_growing_waits_and_a_healthy_run_clears_them() {
        let mut r = Restarts {
            last_start: Some(Instant::now()),
            ..Default::default()
        };
        r.ended(Duration::from_secs(1));
        assert_eq!(r.backoff(), None, "the first crash restarts at once");
        assert_eq!(r.refusal(), None);
        r.failed(&missing());
        let first = r.backoff().unwrap();
        let refusal = r.refusal().unwrap();
        assert!(
            refusal.starts_with("image missing; it is started again in"),
            "{refusal}"
        );
        r.failed(&missing());
        let second = r.backoff().unwrap();
        assert!(second > first && second <= Duration::from_millis(1000));
        for _ in 0..20 {
            r.failed(&missing());
        }
        assert!(r.backoff().unwrap() <= MAX_BACKOFF);
        r.ended(HEALTHY_AFTER);
        assert_eq!(r.backoff(), None);
        r.failed(&missing());
        r.failed(&missing());
        r.reset();
        assert_eq!(r.backoff(), None);
        r.started();
        assert_eq!(r.refusal(), None);
    }
}
