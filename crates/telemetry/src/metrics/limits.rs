//! Metrics of the bounds on what clients can make the gateway hold: connections and request
//! bodies. Every label value is one of a fixed set (listener names and reasons chosen by the
//! gateway), never anything a client sends.

use std::sync::RwLock;

use super::expo;
use super::family::{Counter, Family, Gauge};

type GaugeFn = Box<dyn Fn() -> u64 + Send + Sync>;

/// Connection and request-body bounds, part of [`crate::Metrics`] (see
/// [`crate::Metrics::limits`]).
pub struct LimitMetrics {
    connections_open: Family<Gauge, 1>,
    connections_refused: Family<Counter, 2>,
    connections_closed: Family<Counter, 2>,
    accept_errors: Family<Counter, 2>,
    bodies_refused: Family<Counter, 1>,
    body_bytes_in_flight: RwLock<Option<GaugeFn>>,
}

/// Why a connection was refused at accept: `max` (`gateway.connections.max`), `per_ip`
/// (`gateway.connections.max_per_ip`), `fd_reserve` (the cap derived from the open-file
/// limit).
pub const CONNECTION_REFUSAL_REASONS: [&str; 3] = ["max", "per_ip", "fd_reserve"];
/// Why the gateway closed a connection: `header_timeout`, `idle_timeout`.
pub const CONNECTION_CLOSE_REASONS: [&str; 2] = ["header_timeout", "idle_timeout"];
/// Why a request body was refused: `too_large` (413), `timeout` (408), `budget` (503).
pub const BODY_REFUSAL_REASONS: [&str; 3] = ["too_large", "timeout", "budget"];

impl LimitMetrics {
    pub(crate) fn new(limit: usize) -> LimitMetrics {
        let metrics = LimitMetrics {
            connections_open: Family::new(limit),
            connections_refused: Family::new(limit),
            connections_closed: Family::new(limit),
            accept_errors: Family::new(limit),
            bodies_refused: Family::new(limit),
            body_bytes_in_flight: RwLock::new(None),
        };
        // Every reason exists from the start, so a rate() over them has a zero baseline.
        for reason in BODY_REFUSAL_REASONS {
            metrics.bodies_refused.with([reason]);
        }
        metrics
    }

    /// Creates the zero series of `listener` (e.g. `gateway`, `admin`), so dashboards see
    /// them before the first refusal.
    pub fn listener_started(&self, listener: &str) {
        self.connections_open.with([listener]);
        for reason in CONNECTION_REFUSAL_REASONS {
            self.connections_refused.with([listener, reason]);
        }
        for reason in CONNECTION_CLOSE_REASONS {
            self.connections_closed.with([listener, reason]);
        }
    }

    /// A connection of `listener` was admitted.
    pub fn connection_opened(&self, listener: &str) {
        self.connections_open.apply([listener], Gauge::inc);
    }

    /// An admitted connection of `listener` ended, for whatever reason.
    pub fn connection_ended(&self, listener: &str) {
        self.connections_open.apply([listener], Gauge::dec);
    }

    /// A connection was accepted and closed at once; `reason` is one of
    /// [`CONNECTION_REFUSAL_REASONS`].
    pub fn connection_refused(&self, listener: &str, reason: &str) {
        self.connections_refused
            .apply([listener, reason], Counter::inc);
    }

    /// The gateway closed a connection; `reason` is one of [`CONNECTION_CLOSE_REASONS`].
    pub fn connection_closed(&self, listener: &str, reason: &str) {
        self.connections_closed
            .apply([listener, reason], Counter::inc);
    }

    /// `accept` failed; `kind` is `fd_exhausted` (EMFILE/ENFILE: the listener backs off) or
    /// `other`.
    pub fn accept_error(&self, listener: &str, kind: &str) {
        self.accept_errors.apply([listener, kind], Counter::inc);
    }

    /// A request body was refused; `reason` is one of [`BODY_REFUSAL_REASONS`].
    pub fn body_refused(&self, reason: &str) {
        self.bodies_refused.apply([reason], Counter::inc);
    }

    /// Reads the bytes of request bodies being read from `f` at every scrape (replacing an
    /// earlier one).
    pub fn set_body_bytes_in_flight(&self, f: impl Fn() -> u64 + Send + Sync + 'static) {
        *self
            .body_bytes_in_flight
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    pub(crate) fn render(&self, out: &mut String) {
        expo::gauges(
            out,
            "gatehouse_connections_open",
            "Client connections open, by listener.",
            ["listener"],
            &self.connections_open,
        );
        expo::counters(
            out,
            "gatehouse_connections_refused_total",
            "Connections accepted and closed at once because a cap was reached, by listener and reason (max, per_ip, fd_reserve).",
            ["listener", "reason"],
            &self.connections_refused,
        );
        expo::counters(
            out,
            "gatehouse_connections_closed_total",
            "Connections the gateway closed, by listener and reason (header_timeout, idle_timeout).",
            ["listener", "reason"],
            &self.connections_closed,
        );
        expo::counters(
            out,
            "gatehouse_accept_errors_total",
            "Failed accepts of a listener, by kind (fd_exhausted: out of file descriptors, the listener backs off; other).",
            ["listener", "kind"],
            &self.accept_errors,
        );
        expo::counters(
            out,
            "gatehouse_request_bodies_refused_total",
            "Request bodies refused, by reason (too_large: 413, timeout: 408, budget: 503).",
            ["reason"],
            &self.bodies_refused,
        );
        let in_flight = self
            .body_bytes_in_flight
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |f| f());
        expo::single(
            out,
            "gatehouse_request_body_bytes_in_flight",
            "gauge",
            "Bytes reserved by request bodies being read (bounded by gateway.max_body_bytes_in_flight).",
            in_flight,
        );
    }

    pub(crate) fn overflowed(&self) -> [(&'static str, u64); 5] {
        [
            (
                "gatehouse_connections_open",
                self.connections_open.overflowed(),
            ),
            (
                "gatehouse_connections_refused_total",
                self.connections_refused.overflowed(),
            ),
            (
                "gatehouse_connections_closed_total",
                self.connections_closed.overflowed(),
            ),
            (
                "gatehouse_accept_errors_total",
                self.accept_errors.overflowed(),
            ),
            (
                "gatehouse_request_bodies_refused_total",
                self.bodies_refused.overflowed(),
            ),
        ]
    }
}
