//! The figures a running job keeps for its metrics, and their export.
//!
//! Hot paths only touch atomics: a partition actor publishes its counters
//! once per message ([`PartitionStats`]), the input side adds per batch, and
//! a batch's latency is recorded once when it is processed. The
//! OpenTelemetry instruments are asynchronous: their callbacks read the
//! atomics when a reader (the Prometheus scrape, the OTLP exporter)
//! collects, and only then is the partition map locked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Histogram, Meter};
use weir_state::StateEnv;

use super::names::{self, Metric};
use crate::lock;

mod export;
mod partition;

pub use partition::PartitionMetrics;
use partition::now_ms;
pub(crate) use partition::{Advance, BatchDone};

/// The rebalance events counted in `weir_rebalances_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rebalance {
    Assigned = 0,
    Revoked = 1,
    Lost = 2,
}

/// A summary of what a process did so far (see [`Metrics::progress`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records read.
    pub records: u64,
    /// Records dead-lettered (undecodable, poison, late).
    pub dead_lettered: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// File input: bytes read so far.
    pub input_position: u64,
    /// Kafka input: records between what was processed and the high
    /// watermarks of the owned partitions (`None`: not known yet).
    pub lag: Option<u64>,
}

/// The `partition` label of input that has none (see [`Metrics::unrouted`]).
pub const UNROUTED: &str = "unrouted";

const REBALANCE_KINDS: [&str; 3] = ["assigned", "revoked", "lost"];

#[derive(Default)]
struct Inner {
    partitions: Mutex<BTreeMap<u32, Arc<PartitionMetrics>>>,
    latency: Option<Histogram<f64>>,
    checkpoint_duration: Option<Histogram<f64>>,
    checkpoints: AtomicU64,
    checkpoint_failures: AtomicU64,
    /// Errors the Kafka consumer reported.
    consumer_errors: AtomicU64,
    /// Input that could not be routed to a partition (undecodable lines of
    /// file input, whose key is unknown).
    unrouted: PartitionMetrics,
    rebalances: [AtomicU64; 3],
    /// A job is running and has its partitions up.
    started: AtomicBool,
    /// The running job's checkpoint interval, ms (0: none or no job).
    interval_ms: AtomicU64,
    shutting_down: AtomicBool,
    env: Mutex<Option<StateEnv>>,
    /// File input: the byte position the feed has read to.
    input_position: AtomicU64,
}

impl Inner {
    /// Every partition seen, with its figures (the map is not locked
    /// while they are read).
    fn partitions_now(&self) -> Vec<(u32, Arc<PartitionMetrics>)> {
        lock(&self.partitions)
            .iter()
            .map(|(p, m)| (*p, Arc::clone(m)))
            .collect()
    }
}

/// A process's metrics: what jobs update, what the exporters read. Cheap to
/// clone. [`Metrics::detached`] keeps the figures without exporting them.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Buckets of the processing latency histogram, seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets of the checkpoint duration histogram, seconds.
const CHECKPOINT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

impl Metrics {
    /// Figures kept but exported nowhere.
    pub fn detached() -> Self {
        Self::default()
    }

    /// Figures exported through `meter`'s instruments.
    pub fn register(meter: &Meter) -> Self {
        let histogram = |m: Metric, buckets: &[f64]| {
            meter
                .f64_histogram(m.instrument())
                .with_description(m.help)
                .with_boundaries(buckets.to_vec())
                .build()
        };
        let metrics = Self(Arc::new(Inner {
            latency: Some(histogram(names::PROCESSING_LATENCY, LATENCY_BUCKETS)),
            checkpoint_duration: Some(histogram(names::CHECKPOINT_DURATION, CHECKPOINT_BUCKETS)),
            ..Inner::default()
        }));
        metrics.observe_partitions(meter);
        metrics.observe_process(meter);
        metrics
    }

    /// Partition `p`'s figures (created on first use).
    pub(crate) fn partition(&self, p: u32) -> Arc<PartitionMetrics> {
        Arc::clone(
            lock(&self.0.partitions)
                .entry(p)
                .or_insert_with(|| Arc::new(PartitionMetrics::new())),
        )
    }

    /// Partition `p` is now owned here (its instance in `dir`), or not.
    pub(crate) fn set_owned(&self, p: u32, dir: Option<PathBuf>) -> Arc<PartitionMetrics> {
        let pm = self.partition(p);
        let owned = dir.is_some();
        *lock(&pm.dir) = dir;
        *lock(&pm.disk) = None;
        if owned {
            // Taken over: restoring until its state is open.
            let now = now_ms();
            pm.checkpoint_at_ms.store(now, Ordering::Relaxed);
            pm.restore_began_ms.store(now, Ordering::Relaxed);
            pm.restoring.store(true, Ordering::Relaxed);
            for a in [&pm.restore_total, &pm.restore_bytes] {
                a.store(0, Ordering::Relaxed);
            }
            for a in [&pm.high_watermark, &pm.committed, &pm.processed] {
                a.store(-1, Ordering::Relaxed);
            }
        } else {
            pm.restoring.store(false, Ordering::Relaxed);
            pm.stats.clear_levels();
        }
        pm.stalled_since_ms.store(-1, Ordering::Relaxed);
        pm.owned.store(owned, Ordering::Relaxed);
        pm
    }

    /// A job begins, checkpointing every `interval` (if at all): not
    /// ready yet, not shutting down. Until the returned guard drops, the
    /// job's RocksDB memory in `env` is reported; then every partition
    /// still owned is released and the job is not ready any more (however
    /// the job ends).
    pub(crate) fn job_started(&self, env: &StateEnv, interval: Option<Duration>) -> JobGuard {
        self.0.started.store(false, Ordering::SeqCst);
        self.0.shutting_down.store(false, Ordering::SeqCst);
        let ms = interval.map_or(0, |i| i.as_millis() as u64);
        self.0.interval_ms.store(ms, Ordering::Relaxed);
        *lock(&self.0.env) = Some(env.clone());
        JobGuard(self.clone())
    }

    /// The job's partitions are up (or, in Kafka mode, the group has given
    /// it its first assignment).
    pub(crate) fn set_started(&self) {
        self.0.started.store(true, Ordering::SeqCst);
    }

    /// Whether [`Metrics::set_started`] was called for this job.
    pub(crate) fn started(&self) -> bool {
        self.0.started.load(Ordering::SeqCst)
    }

    /// Shutdown was requested: not ready any more.
    pub(crate) fn set_shutting_down(&self) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether every owned partition is restored and none is stalled, and
    /// no shutdown is under way (what `/readyz` answers).
    pub fn ready(&self) -> bool {
        ready(&self.0)
    }

    /// A batch handed over at `since` was processed.
    pub(crate) fn processed_batch(&self, since: Instant) {
        if let Some(h) = &self.0.latency {
            h.record(since.elapsed().as_secs_f64(), &[]);
        }
    }

    /// A checkpoint begun at `started` completed.
    pub(crate) fn checkpoint_completed(&self, started: Instant) {
        self.0.checkpoints.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = &self.0.checkpoint_duration {
            h.record(started.elapsed().as_secs_f64(), &[]);
        }
    }

    /// The file feed has read its input up to byte `position`.
    pub(crate) fn input_read(&self, position: u64) {
        self.0.input_position.store(position, Ordering::Relaxed);
    }

    /// The figures of the process so far, summed over every partition.
    pub fn progress(&self) -> Progress {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let unrouted = &self.0.unrouted;
        let mut p = Progress {
            records: load(&unrouted.records_in),
            dead_lettered: load(&unrouted.decode_errors),
            checkpoints: load(&self.0.checkpoints),
            input_position: load(&self.0.input_position),
            lag: None,
        };
        for (_, m) in self.0.partitions_now() {
            p.records += load(&m.records_in);
            p.dead_lettered += load(&m.decode_errors) + load(&m.stats.dead_lettered);
            let hw = m.high_watermark.load(Ordering::Relaxed);
            let done = m.processed.load(Ordering::Relaxed);
            if m.owned.load(Ordering::Relaxed) && hw >= 0 && done >= 0 {
                *p.lag.get_or_insert(0) += (hw - done).max(0) as u64;
            }
        }
        p
    }

    /// A checkpoint failed or was abandoned.
    pub(crate) fn checkpoint_failed(&self, n: u64) {
        self.0.checkpoint_failures.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` input records did not decode and have no partition.
    pub(crate) fn unrouted(&self, n: u64) {
        self.0.unrouted.read(n, n);
    }

    /// The Kafka consumer reported an error.
    pub(crate) fn consumer_error(&self) {
        self.0.consumer_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A rebalance event.
    pub(crate) fn rebalanced(&self, kind: Rebalance) {
        self.0.rebalances[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// See [`Metrics::job_started`].
pub(crate) struct JobGuard(Metrics);

impl Drop for JobGuard {
    fn drop(&mut self) {
        let inner = &self.0.0;
        inner.started.store(false, Ordering::SeqCst);
        let owned: Vec<u32> = lock(&inner.partitions)
            .iter()
            .filter(|(_, pm)| pm.owned.load(Ordering::Relaxed))
            .map(|(p, _)| *p)
            .collect();
        for p in owned {
            self.0.set_owned(p, None);
        }
        inner.interval_ms.store(0, Ordering::Relaxed);
        lock(&inner.env).take();
    }
}

fn ready(i: &Inner) -> bool {
    i.started.load(Ordering::SeqCst)
        && !i.shutting_down.load(Ordering::SeqCst)
        && !lock(&i.partitions).values().any(|p| {
            p.owned.load(Ordering::Relaxed) && (p.restoring.load(Ordering::Relaxed) || p.stalled())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_needs_a_high_watermark_and_never_goes_negative() {
        let m = Metrics::detached();
        let pm = m.set_owned(3, Some(PathBuf::from("/nonexistent")));
        assert_eq!(pm.lag(&pm.committed), None);
        pm.high_watermark.store(100, Ordering::Relaxed);
        assert_eq!(pm.lag(&pm.committed), None, "nothing committed yet");
        pm.committed.store(40, Ordering::Relaxed);
        pm.processed.store(120, Ordering::Relaxed);
        assert_eq!(pm.lag(&pm.committed), Some(60.0));
        assert_eq!(pm.lag(&pm.processed), Some(0.0));
    }

    #[test]
    fn ready_only_when_started_restored_and_not_stopping() {
        let m = Metrics::detached();
        assert!(!m.ready(), "nothing started yet");
        let dir = tempfile::tempdir().unwrap();
        let env = StateEnv::new(dir.path(), weir_state::MemoryBudget { bytes: 1 << 20 }).unwrap();
        let guard = m.job_started(&env, None);
        assert!(!m.ready(), "partitions not up yet");
        m.set_started();
        assert!(m.ready());
        let pm = m.set_owned(0, Some(PathBuf::from("/nonexistent")));
        assert!(!m.ready(), "taken over: restoring until open");
        pm.restore_size(10);
        assert!(!m.ready(), "partition 0 is restoring");
        pm.restore_progress(10);
        pm.restore_finished(2);
        assert!(m.ready());
        assert_eq!(pm.restore_keys.load(Ordering::Relaxed), 2);
        m.set_owned(0, Some(PathBuf::from("/nonexistent")));
        assert!(!m.ready(), "taken over again: restoring");
        m.set_owned(0, None);
        assert!(m.ready(), "a released partition does not count");
        m.set_shutting_down();
        assert!(!m.ready());
        // A shutdown before the partitions are up is not forgotten.
        drop(guard);
        let guard = m.job_started(&env, None);
        m.set_shutting_down();
        m.set_started();
        assert!(!m.ready());
        let pm = m.set_owned(1, Some(PathBuf::from("/nonexistent")));
        drop(guard);
        assert!(
            !pm.owned.load(Ordering::Relaxed),
            "the job's end releases its partitions"
        );
    }

    #[test]
    fn disk_size_adds_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(partition::dir_size(dir.path()), 15);
    }
}
