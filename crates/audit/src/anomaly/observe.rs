//! What the detectors need from the lines the index just read, collected while it parses
//! them (no second pass over the journal), and compact: one entry per principal and network,
//! per principal and delete tool, per user or server and hour.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use gatehouse_config::AnomalyConfig;

use crate::event::Outcome;
use crate::line::{LineView, hour_of};

/// Authorization failures kept per principal and catch-up: past this many the detector has
/// long fired (or the flood is spread too thin to matter) and memory stays bounded.
const MAX_FAILURES_PER_PRINCIPAL: usize = 10_000;

/// A principal as the detectors name it in their events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Who {
    pub(crate) kind: String,
    pub(crate) issuer: String,
    pub(crate) email: Option<String>,
}

/// Observations of one catch-up of the index, for [`Detectors::run`](super::Detectors::run).
#[derive(Debug, Default)]
pub struct Observations {
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    /// Subject → how to name it.
    pub(crate) who: HashMap<String, Who>,
    /// (subject, tool) of tools whose operation is `delete` → earliest use.
    pub(crate) deletes: HashMap<(String, String), i64>,
    /// (subject, masked network) → earliest call from it.
    pub(crate) networks: HashMap<(String, String), i64>,
    /// Subject → times of its `denied` and `forbidden` events.
    pub(crate) failures: HashMap<String, Vec<i64>>,
    /// Users (subjects) and servers with calls, and the hour of those calls.
    pub(crate) users: BTreeSet<(String, i64)>,
    /// See `users`.
    pub(crate) servers: BTreeSet<(String, i64)>,
}

impl Observations {
    /// Empty observations, masking source addresses with `config`'s prefixes.
    pub fn new(config: &AnomalyConfig) -> Observations {
        Observations {
            ipv4_prefix: config.ipv4_prefix,
            ipv6_prefix: config.ipv6_prefix,
            ..Default::default()
        }
    }

    /// Whether nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.servers.is_empty() && self.failures.is_empty()
    }

    /// Takes in one parsed line. Only `mcp.request` events count: anomaly events (and every
    /// other kind) are ignored, so a detector's own events never feed a detector.
    pub fn observe(&mut self, f: &LineView, time_us: i64) {
        if !f.is_request() {
            return;
        }
        let hour = hour_of(time_us);
        if let Some(server) = f.server.as_deref().filter(|s| !s.is_empty()) {
            let key = (server.to_string(), hour);
            if !self.servers.contains(&key) {
                self.servers.insert(key);
            }
        }
        let Some(p) = &f.principal else { return };
        let Some(subject) = p.subject.as_deref().filter(|s| !s.is_empty()) else {
            return;
        };
        // Most lines repeat a principal seen already: look up before allocating.
        if !self.who.contains_key(subject) {
            self.who.insert(
                subject.to_string(),
                Who {
                    kind: p.kind.clone().unwrap_or_else(|| "user".into()),
                    issuer: p.issuer.clone().unwrap_or_default(),
                    email: p.email.clone(),
                },
            );
        }
        let key = (subject.to_string(), hour);
        if !self.users.contains(&key) {
            self.users.insert(key);
        }
        if let Some(t) = &f.target
            && t.operation.as_deref() == Some("delete")
        {
            let first = self
                .deletes
                .entry((subject.to_string(), t.name.clone()))
                .or_insert(time_us);
            *first = (*first).min(time_us);
        }
        if let Some(net) = f
            .client
            .as_ref()
            .and_then(|c| c.ip.as_deref())
            .and_then(|ip| network(ip, self.ipv4_prefix, self.ipv6_prefix))
        {
            let first = self
                .networks
                .entry((subject.to_string(), net))
                .or_insert(time_us);
            *first = (*first).min(time_us);
        }
        if f.outcome.is(Outcome::Denied) || f.outcome.is(Outcome::Forbidden) {
            let times = self.failures.entry(subject.to_string()).or_default();
            if times.len() < MAX_FAILURES_PER_PRINCIPAL {
                times.push(time_us);
            }
        }
    }
}

/// The network of `ip` (`10.1.2.0/24`, `2001:db8:1::/48`); `None` when it is not an address.
pub fn network(ip: &str, ipv4_prefix: u8, ipv6_prefix: u8) -> Option<String> {
    // Journals written behind a proxy may carry `ip:port` or a bracketed IPv6 address.
    let ip = ip.trim();
    let parsed: IpAddr = ip
        .parse()
        .ok()
        .or_else(|| ip.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))?;
    Some(match parsed {
        IpAddr::V4(v4) => {
            let bits = ipv4_prefix.min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            let net = std::net::Ipv4Addr::from(u32::from(v4) & mask);
            format!("{net}/{bits}")
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return network(&v4.to_string(), ipv4_prefix, ipv6_prefix);
            }
            let bits = ipv6_prefix.min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            format!("{net}/{bits}")
        }
    })
}
