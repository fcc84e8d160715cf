//! Who gets a connection: the overall cap (the configured `max`, lowered to keep
//! `fd_reserve` descriptors free) and the cap per source address. A permit is held for the
//! life of an admitted connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use gatehouse_telemetry::Metrics;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `gateway.connections.max` connections are open.
    Max,
    /// The source address has `gateway.connections.max_per_ip` connections open.
    PerIp,
    /// The cap derived from the open-file limit (minus `fd_reserve`) is reached.
    FdReserve,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Max => "max",
            Refusal::PerIp => "per_ip",
            Refusal::FdReserve => "fd_reserve",
        }
    }
}

/// The overall cap in force and which bound set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveCap {
    /// Most connections open at once.
    pub connections: usize,
    /// `Refusal::Max` when the configured `max` is the bound, `Refusal::FdReserve` when the
    /// descriptor limit is.
    pub bound: Refusal,
}

impl EffectiveCap {
    /// min(`max`, `soft_limit` − `reserve` − `open`): connections never take the descriptors
    /// the journal, the index, the store and backends need. `None` when nothing is left.
    pub fn compute(max: u32, soft_limit: u64, reserve: u64, open: u64) -> Option<EffectiveCap> {
        let by_fds = soft_limit.saturating_sub(reserve).saturating_sub(open);
        let max = u64::from(max);
        let (n, bound) = if by_fds < max {
            (by_fds, Refusal::FdReserve)
        } else {
            (max, Refusal::Max)
        };
        (n > 0).then(|| EffectiveCap {
            connections: usize::try_from(n).unwrap_or(usize::MAX),
            bound,
        })
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, u32>,
}

/// Counts open connections overall and per source address.
#[derive(Debug)]
pub(crate) struct Admission {
    listener: &'static str,
    cap: EffectiveCap,
    max_per_ip: u32,
    open: Mutex<Open>,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub(crate) fn new(
        listener: &'static str,
        cap: EffectiveCap,
        max_per_ip: u32,
        metrics: Arc<Metrics>,
    ) -> Arc<Admission> {
        metrics.limits().listener_started(listener);
        Arc::new(Admission {
            listener,
            cap,
            max_per_ip,
            open: Mutex::new(Open::default()),
            metrics,
        })
    }

    /// A permit for a connection from `ip`, or why not (counted).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let ip = ip.to_canonical();
        let refused = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
            if open.total >= self.cap.connections {
                Some(self.cap.bound)
            } else if from_ip >= self.max_per_ip {
                Some(Refusal::PerIp)
            } else {
                open.total += 1;
                open.by_ip.insert(ip, from_ip + 1);
                None
            }
        };
        if let Some(reason) = refused {
            self.metrics
                .limits()
                .connection_refused(self.listener, reason.label());
            return Err(reason);
        }
        self.metrics.limits().connection_opened(self.listener);
        Ok(Permit {
            admission: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.total = open.total.saturating_sub(1);
            if let Some(n) = open.by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.by_ip.remove(&ip);
                }
            }
        }
        self.metrics.limits().connection_ended(self.listener);
    }

    /// The cap in force.
    pub(crate) fn cap(&self) -> EffectiveCap {
        self.cap
    }

    /// The configured cap per source address.
    pub(crate) fn max_per_ip(&self) -> u32 {
        self.max_per_ip
    }
}

/// One admitted connection; releases its place when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_limit_lowers_the_cap() {
        let cap = EffectiveCap::compute(10_000, 1024, 256, 40).unwrap();
        assert_eq!((cap.connections, cap.bound), (728, Refusal::FdReserve));
        let cap = EffectiveCap::compute(100, 1024, 256, 40).unwrap();
        assert_eq!((cap.connections, cap.bound), (100, Refusal::Max));
        let cap = EffectiveCap::compute(100, u64::MAX, 256, 40).unwrap();
        assert_eq!(cap.bound, Refusal::Max);
        assert_eq!(EffectiveCap::compute(100, 200, 256, 40), None);
    }

    #[test]
    fn caps_count_overall_and_per_address_and_permits_release() {
        let cap = EffectiveCap::compute(3, u64::MAX, 0, 0).unwrap();
        let metrics = Metrics::new();
        let a = Admission::new("test", cap, 2, metrics.clone());
        let one: IpAddr = "127.0.0.2".parse().unwrap();
        let two: IpAddr = "127.0.0.3".parse().unwrap();
        let p1 = a.admit(one).unwrap();
        let _p2 = a.admit(one).unwrap();
        assert_eq!(a.admit(one).unwrap_err(), Refusal::PerIp);
        let _p3 = a.admit(two).unwrap();
        assert_eq!(a.admit(two).unwrap_err(), Refusal::Max);
        drop(p1);
        let _p4 = a.admit(two).unwrap();
        // An IPv4-mapped IPv6 peer is the same address.
        let mapped: IpAddr = "::ffff:127.0.0.3".parse().unwrap();
        assert_eq!(a.admit(mapped).unwrap_err(), Refusal::Max);
        let text = metrics.render();
        assert!(
            text.contains(
                "gatehouse_connections_refused_total{listener=\"test\",reason=\"per_ip\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("gatehouse_connections_open{listener=\"test\"} 3\n"));
    }
}
