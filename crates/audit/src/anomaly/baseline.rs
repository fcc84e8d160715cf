//! Baselines and the volume detectors (`volume`, `distinct_tools`, `error_rate`, `off_hours`).
//!
//! A baseline is computed from the hourly rollups over the anomaly window before the current
//! hour, and recomputed when the hour rolls over. The rollups are hourly and the current hour
//! is excluded, so a baseline cannot change within an hour: recomputing it once per hour is
//! exact (no drift as an incremental average would have), costs one grouped query per active
//! user or server per hour, and a window change in the configuration takes effect at the next
//! hour. Baselines are kept in the store (`usage_baseline`) so a restart within the hour, or a
//! second replica, reuses them.

use gatehouse_store::{Baseline, HourTotals, Scope};
use serde_json::json;

use super::{Anomaly, Detectors, ERROR_RATE_FLOOR, OFF_HOURS_SHARE, Who};
use crate::AuditError;

/// The baseline of `name` as of `as_of_hour` from its active hours before it.
pub fn compute(
    scope: Scope,
    name: &str,
    as_of_hour: i64,
    first_seen: i64,
    hours: &[HourTotals],
) -> Baseline {
    let n = hours.len() as f64;
    let calls: i64 = hours.iter().map(|h| h.calls).sum();
    let (mean_calls, stddev_calls, mean_tools) = if hours.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        let mean = calls as f64 / n;
        let var = hours
            .iter()
            .map(|h| (h.calls as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let tools = hours.iter().map(|h| h.tools).sum::<i64>() as f64 / n;
        (mean, var.sqrt(), tools)
    };
    let mut profile = [0.0; 24];
    if calls > 0 {
        for h in hours {
            profile[hour_of_day(h.hour)] += h.calls as f64 / calls as f64;
        }
    }
    Baseline {
        scope,
        name: name.to_string(),
        as_of_hour,
        first_seen,
        hours_observed: hours.len() as i64,
        mean_calls,
        stddev_calls,
        mean_tools,
        error_rate: if calls > 0 {
            hours.iter().map(|h| h.errors).sum::<i64>() as f64 / calls as f64
        } else {
            0.0
        },
        profile,
    }
}

fn hour_of_day(hour: i64) -> usize {
    (hour.rem_euclid(86_400) / 3600) as usize
}

impl Detectors {
    /// The baseline of `name` as of `hour`: from the cache, else the store, else computed
    /// (and stored) when the one found is for an earlier hour.
    pub(super) async fn baseline(
        &mut self,
        scope: Scope,
        name: &str,
        hour: i64,
    ) -> Result<Baseline, AuditError> {
        let key = (scope, name.to_string());
        if let Some(b) = self.baselines.get(&key).filter(|b| b.as_of_hour == hour) {
            return Ok(b.clone());
        }
        let stored = self.state.baseline(scope, name).await?;
        let b = match stored.filter(|b| b.as_of_hour == hour) {
            Some(b) => b,
            None => {
                let window = self.config.window.get().as_secs() as i64;
                let hours = self.usage.hours(scope, name, hour - window, hour).await?;
                let first_seen = self.usage.first_seen(scope, name).await?.unwrap_or(hour);
                let b = compute(scope, name, hour, first_seen, &hours);
                self.state.put_baseline(&b).await?;
                b
            }
        };
        self.baselines.insert(key, b.clone());
        Ok(b)
    }

    /// Judges the current `hour` of a user or server against its baseline.
    pub(super) async fn volume(
        &mut self,
        scope: Scope,
        name: &str,
        hour: i64,
        who: Option<&Who>,
        out: &mut Vec<Anomaly>,
    ) -> Result<(), AuditError> {
        let Some(now) = self
            .usage
            .hours(scope, name, hour, hour + 3600)
            .await?
            .pop()
        else {
            return Ok(());
        };
        if (now.calls as u64) < self.config.min_calls {
            return Ok(());
        }
        let b = self.baseline(scope, name, hour).await?;
        let history = self.config.min_history.get().as_secs() as i64;
        if b.hours_observed == 0 || hour - b.first_seen < history {
            return Ok(());
        }
        let factor = self.config.factor;
        let window = humantime::format_duration(self.config.window.get()).to_string();
        let detail = |observed: serde_json::Value, baseline: serde_json::Value| {
            json!({"observed": observed, "baseline": baseline, "factor": factor,
                "window": window, "hours_observed": b.hours_observed, "calls": now.calls})
        };
        let mut found = Vec::new();
        if now.calls as f64 > factor * b.mean_calls {
            found.push((
                "volume",
                format!(
                    "{} calls this hour, baseline {:.1} ± {:.1} per active hour",
                    now.calls, b.mean_calls, b.stddev_calls
                ),
                detail(json!(now.calls), json!(round(b.mean_calls))),
            ));
        }
        if now.tools as f64 > factor * b.mean_tools {
            found.push((
                "distinct_tools",
                format!(
                    "{} distinct tools this hour, baseline {:.1}",
                    now.tools, b.mean_tools
                ),
                detail(json!(now.tools), json!(round(b.mean_tools))),
            ));
        }
        let rate = now.errors as f64 / now.calls as f64;
        if rate > factor * b.error_rate.max(ERROR_RATE_FLOOR) {
            found.push((
                "error_rate",
                format!(
                    "error rate {:.0}% this hour, baseline {:.1}%",
                    rate * 100.0,
                    b.error_rate * 100.0
                ),
                detail(json!(round(rate)), json!(round(b.error_rate))),
            ));
        }
        let share = b.profile[hour_of_day(hour)];
        if share < OFF_HOURS_SHARE {
            found.push((
                "off_hours",
                format!(
                    "{} calls at {:02}:00 UTC, an hour with {:.1}% of its usual calls",
                    now.calls,
                    hour_of_day(hour),
                    share * 100.0
                ),
                detail(json!(now.calls), json!(round(share))),
            ));
        }
        for (detector, reason, detail) in found {
            self.fire(detector, scope, name, who, hour, reason, detail, out)
                .await?;
        }
        Ok(())
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
