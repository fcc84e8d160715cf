//! Anomaly detectors: judge what the index just indexed against baselines kept in the store,
//! and produce `anomaly` events.
//!
//! They run on the indexer's thread after each catch-up, over the observations collected while
//! it parsed the new lines ([`Observations`]), never on the request path. Each firing is
//! rate-limited to once per detector, key and hour through the store (`anomaly_fired`), so a
//! restart or a second replica does not repeat it.
//!
//! | detector | fires when |
//! |---|---|
//! | `volume` | a user's or server's calls in the current hour exceed `factor` × its baseline mean calls per active hour, and are at least `min_calls` |
//! | `distinct_tools` | distinct tools in the current hour exceed `factor` × the baseline mean (with at least `min_calls` calls) |
//! | `error_rate` | the current hour's error rate (errors and tool errors over calls) exceeds `factor` × max(baseline rate, 5%), with at least `min_calls` calls |
//! | `off_hours` | at least `min_calls` calls in an hour of the day (UTC) that held under 1% of the baseline's calls |
//! | `first_delete` | a principal calls a tool whose operation is `delete` for the first time |
//! | `new_network` | a principal calls from a source network (`client.ip` masked to `ipv4_prefix`/`ipv6_prefix`) it never used, having used another one for at least `min_history` |
//! | `authz_failures` | a principal has at least `failures` events with outcome `denied` or `forbidden` within `failure_window` |
//!
//! The four volume detectors judge only the current hour (by the clock), and only once the
//! user or server has `min_history` of history; baselines cover `window` before the current
//! hour and are recomputed when the hour rolls over (see [`baseline`]). The first-use detectors
//! and `authz_failures` judge every observed event, but an event older than `window` (a
//! backlog indexed late, e.g. after an upgrade) only updates their state, it does not fire.

mod baseline;
mod observe;

use std::collections::HashMap;

use gatehouse_config::AnomalyConfig;
use gatehouse_store::{AnomalyState, Baseline, Scope, Store, Usage};
use serde_json::json;

use crate::AuditError;
use crate::event::{AuditEvent, EventKind, Outcome, PrincipalRecord};
use crate::line::hour_of;

use observe::Who;
pub use observe::{Observations, network};

/// Share of a baseline's calls under which an hour of the day counts as "off hours".
pub const OFF_HOURS_SHARE: f64 = 0.01;

/// Error rate the `error_rate` detector assumes at least, so that a principal with a clean
/// history does not fire on its first few errors.
pub const ERROR_RATE_FLOOR: f64 = 0.05;

/// One anomaly found.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// Which detector (`volume`, `first_delete`, …): the metric's label.
    pub detector: &'static str,
    /// The `anomaly` event to append to the journal.
    pub event: AuditEvent,
}

/// The detectors, with their configuration and a cache of the baselines.
#[derive(Debug)]
pub struct Detectors {
    config: AnomalyConfig,
    usage: Usage,
    state: AnomalyState,
    baselines: HashMap<(Scope, String), Baseline>,
}

impl Detectors {
    /// Detectors over `store`'s rollups and state.
    pub fn new(store: &Store, config: AnomalyConfig) -> Detectors {
        Detectors {
            config,
            usage: store.usage(),
            state: store.anomalies(),
            baselines: HashMap::new(),
        }
    }

    /// Applies a reloaded `audit.anomalies`: thresholds apply from the next run; a new
    /// `window` from the next hour's baselines (this hour's are kept).
    pub fn configure(&mut self, config: AnomalyConfig) {
        self.config = config;
    }

    /// Empty observations for the index to fill as it reads new lines (its `CatchUp`).
    pub fn observations(&self) -> Observations {
        Observations::new(&self.config)
    }

    /// Judges `obs` at `now_us` (unix microseconds); returns what fired (already recorded as
    /// fired in the store). Nothing fires when `audit.anomalies.enabled` is false.
    pub async fn run(
        &mut self,
        obs: Observations,
        now_us: i64,
    ) -> Result<Vec<Anomaly>, AuditError> {
        let mut out = Vec::new();
        if !self.config.enabled {
            return Ok(out);
        }
        let now_hour = hour_of(now_us);
        // Baselines of past hours are never used again: the cache holds this hour's only.
        self.baselines.retain(|_, b| b.as_of_hour == now_hour);
        let stale_before = now_us - micros(self.config.window.get());
        for (scope, keys) in [(Scope::User, &obs.users), (Scope::Server, &obs.servers)] {
            for (name, hour) in keys {
                if *hour == now_hour {
                    let who = (scope == Scope::User).then(|| obs.who.get(name)).flatten();
                    self.volume(scope, name, now_hour, who, &mut out).await?;
                }
            }
        }
        let mut deletes: Vec<_> = obs.deletes.iter().collect();
        deletes.sort_by_key(|(_, t)| **t);
        for ((subject, tool), time) in deletes {
            if self
                .state
                .remember(subject, "delete_tool", tool, *time)
                .await?
                && *time >= stale_before
            {
                let detail = json!({"tool": tool, "first_use": time_text(*time)});
                let reason = format!("first use of delete tool {tool}");
                self.fire(
                    "first_delete",
                    Scope::User,
                    subject,
                    obs.who.get(subject),
                    hour_of(*time),
                    reason,
                    detail,
                    &mut out,
                )
                .await?;
            }
        }
        // In time order: a principal's first network must be known before its second is judged.
        let mut networks: Vec<_> = obs.networks.iter().collect();
        networks.sort_by_key(|(_, t)| **t);
        let min_history = micros(self.config.min_history.get());
        for ((subject, net), time) in networks {
            if !self.state.remember(subject, "network", net, *time).await? {
                continue;
            }
            let Some(known_since) = self.state.first_seen_other(subject, "network", net).await?
            else {
                continue;
            };
            if *time - known_since >= min_history && *time >= stale_before {
                let detail = json!({"network": net, "known_since": time_text(known_since)});
                let reason = format!("calls from a new source network {net}");
                self.fire(
                    "new_network",
                    Scope::User,
                    subject,
                    obs.who.get(subject),
                    hour_of(*time),
                    reason,
                    detail,
                    &mut out,
                )
                .await?;
            }
        }
        let window = micros(self.config.failure_window.get());
        let threshold = self.config.failures as i64;
        for (subject, times) in &obs.failures {
            let mut fired_in = None;
            for t in times {
                let hour = hour_of(*t);
                if *t < stale_before || fired_in == Some(hour) {
                    continue;
                }
                let n = self
                    .state
                    .authorization_failures(subject, t - window, *t)
                    .await?;
                if n >= threshold {
                    fired_in = Some(hour);
                    let within = humantime::format_duration(self.config.failure_window.get());
                    let detail = json!({"observed": n, "threshold": threshold,
                        "window": within.to_string()});
                    let reason = format!("{n} denied or forbidden requests within {within}");
                    self.fire(
                        "authz_failures",
                        Scope::User,
                        subject,
                        obs.who.get(subject),
                        hour,
                        reason,
                        detail,
                        &mut out,
                    )
                    .await?;
                }
            }
        }
        Ok(out)
    }

    /// Records the firing (once per detector, key and hour) and builds its event.
    #[allow(clippy::too_many_arguments)]
    async fn fire(
        &self,
        detector: &'static str,
        scope: Scope,
        name: &str,
        who: Option<&Who>,
        hour: i64,
        reason: String,
        mut detail: serde_json::Value,
        out: &mut Vec<Anomaly>,
    ) -> Result<(), AuditError> {
        let key = format!("{}:{name}", scope.as_str());
        if !self.state.fire_once(detector, &key, hour).await? {
            return Ok(());
        }
        let mut event = AuditEvent::new(EventKind::Anomaly, Outcome::Ok);
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("detector".into(), json!(detector));
            obj.insert("scope".into(), json!(scope.as_str()));
            obj.insert("key".into(), json!(name));
            obj.insert("hour".into(), json!(time_text(hour * 1_000_000)));
        }
        match scope {
            Scope::User => {
                let who = who.cloned().unwrap_or_default();
                event.principal = Some(PrincipalRecord {
                    kind: if who.kind.is_empty() {
                        "user".into()
                    } else {
                        who.kind
                    },
                    subject: name.to_string(),
                    issuer: who.issuer,
                    email: who.email.clone(),
                    ..Default::default()
                });
                let shown = who.email.unwrap_or_else(|| name.to_string());
                event.reason = Some(format!("{shown}: {reason}"));
            }
            Scope::Server => {
                event.server = Some(name.to_string());
                event.reason = Some(format!("server {name}: {reason}"));
            }
        }
        event.detail = Some(detail);
        out.push(Anomaly { detector, event });
        Ok(())
    }
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn time_text(us: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
