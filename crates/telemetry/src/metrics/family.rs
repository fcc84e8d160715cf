//! Metric families: one series per distinct label set, each a cheap handle over atomics.
//!
//! A lookup takes a read lock on the family's map and clones an `Arc`; recording is a
//! relaxed atomic add. Callers on a hot path can keep the handle and skip the lookup.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// Label value every label of the overflow series carries.
pub const OVERFLOW_LABEL: &str = "_overflow";

/// Most series one family holds by default; see [`crate::Metrics::with_series_limit`].
pub const DEFAULT_SERIES_LIMIT: usize = 10_000;

/// Upper bounds (in seconds) of the duration histogram buckets: the MCP semantic
/// conventions' buckets (10 ms … 300 s) with four finer ones in front, because a gateway's
/// own overhead and fast local tools live below 10 ms.
pub const DURATION_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// The bucket bounds in nanoseconds, so observing compares integers.
const BUCKET_NANOS: [u64; 18] = {
    let mut out = [0u64; 18];
    let micros: [u64; 18] = [
        500,
        1_000,
        2_500,
        5_000,
        10_000,
        20_000,
        50_000,
        100_000,
        200_000,
        500_000,
        1_000_000,
        2_000_000,
        5_000_000,
        10_000_000,
        30_000_000,
        60_000_000,
        120_000_000,
        300_000_000,
    ];
    let mut i = 0;
    while i < 18 {
        out[i] = micros[i] * 1_000;
        i += 1;
    }
    out
};

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution of durations over [`DURATION_BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<HistogramCore>);

#[derive(Debug, Default)]
struct HistogramCore {
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf`.
    buckets: [AtomicU64; 19],
    /// Nanoseconds, so the sum is an exact integer add (584 years before it wraps).
    sum_nanos: AtomicU64,
}

/// A consistent-enough reading of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then `+Inf`.
    pub cumulative: [u64; 19],
    /// Sum of the observed durations in nanoseconds.
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    /// Number of observations (the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.cumulative[18]
    }
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // `le` is inclusive: a value equal to a bound belongs to that bucket.
        let i = BUCKET_NANOS.partition_point(|&b| b < nanos);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The current counts. `_count` is derived from the buckets so a scrape racing an
    /// observation never shows a count different from the `+Inf` bucket.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; 19];
        let mut acc = 0u64;
        for (slot, b) in cumulative.iter_mut().zip(&self.0.buckets) {
            acc += b.load(Ordering::Relaxed);
            *slot = acc;
        }
        HistogramSnapshot {
            cumulative,
            sum_nanos: self.0.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// Series keyed by the hash of their label values; colliding label sets share a vector.
type SeriesMap<M, const N: usize> =
    HashMap<u64, Vec<([Box<str>; N], M)>, BuildHasherDefault<PreHashed>>;

/// A label-keyed set of series of one metric (`N` labels).
#[derive(Debug)]
pub struct Family<M, const N: usize> {
    limit: usize,
    hasher: RandomState,
    series: RwLock<SeriesMap<M, N>>,
    len: AtomicU64,
    overflow: OnceLock<M>,
    overflowed: Counter,
}

impl<M: Clone + Default, const N: usize> Family<M, N> {
    pub(crate) fn new(limit: usize) -> Self {
        Family {
            limit,
            hasher: RandomState::new(),
            series: RwLock::new(HashMap::default()),
            len: AtomicU64::new(0),
            overflow: OnceLock::new(),
            overflowed: Counter::default(),
        }
    }

    /// The series of `values`, created on first use. Past the family's series limit, every
    /// new label set shares one series whose labels are all `_overflow`, so label values
    /// a client controls (tool names, methods) cannot grow memory without bound.
    pub fn with(&self, values: [&str; N]) -> M {
        self.apply(values, M::clone)
    }

    /// Runs `f` on the series of `values` (as [`Family::with`]) without cloning its handle:
    /// the recording path of the typed methods.
    pub(crate) fn apply<R>(&self, values: [&str; N], f: impl FnOnce(&M) -> R) -> R {
        let hash = self.hasher.hash_one(values);
        {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = find(&map, hash, &values) {
                return f(m);
            }
            // Once full, unseen label sets never take the write lock: a flood of made-up
            // names stays on the shared read path.
            if self.is_full() {
                drop(map);
                return f(self.overflow());
            }
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = find(&map, hash, &values) {
            return f(m);
        }
        if self.is_full() {
            drop(map);
            return f(self.overflow());
        }
        let series = map.entry(hash).or_default();
        series.push((values.map(Box::from), M::default()));
        self.len.fetch_add(1, Ordering::Relaxed);
        f(&series[series.len() - 1].1)
    }

    fn is_full(&self) -> bool {
        self.len.load(Ordering::Relaxed) >= self.limit as u64
    }

    fn overflow(&self) -> &M {
        self.overflowed.inc();
        self.overflow.get_or_init(M::default)
    }

    /// How many recordings went to the overflow series (label sets past the limit).
    pub fn overflowed(&self) -> u64 {
        self.overflowed.get()
    }

    /// Number of distinct series (not counting the overflow series).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// Whether no series exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every series sorted by label values, the overflow series last.
    pub(crate) fn collect(&self) -> Vec<([Box<str>; N], M)> {
        // Copy the handles out so rendering never holds the lock.
        let mut out: Vec<([Box<str>; N], M)> = {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            map.values().flatten().cloned().collect()
        };
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(m) = self.overflow.get() {
            out.push((std::array::from_fn(|_| OVERFLOW_LABEL.into()), m.clone()));
        }
        out
    }
}

fn find<'m, M, const N: usize>(
    map: &'m SeriesMap<M, N>,
    hash: u64,
    values: &[&str; N],
) -> Option<&'m M> {
    map.get(&hash)?
        .iter()
        .find(|(k, _)| k.iter().zip(values).all(|(a, b)| **a == **b))
        .map(|(_, m)| m)
}

/// Hasher of the series map, whose keys already are hashes of the label values: hashing
/// them again would cost a second SipHash per lookup for nothing.
#[derive(Default, Clone, Copy)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; kept correct for any other use.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
