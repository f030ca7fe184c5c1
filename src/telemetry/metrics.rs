//! The figures a running job keeps for its metrics, and their export.
//!
//! Hot paths only touch atomics: a partition actor publishes its counters
//! once per message ([`PartitionStats`]), the input side adds per batch, and
//! a batch's latency is recorded once when it is processed. The
//! OpenTelemetry instruments are asynchronous: their callbacks read the
//! atomics when a reader (the Prometheus scrape, the OTLP exporter)
//! collects, and only then is the partition map locked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use weir_actors::runtime::PartitionStats;
use weir_state::StateEnv;

use super::names::{self, Kind, Metric};
use crate::kafka::watch::Skip;
use crate::lock;

/// One partition's figures (kept after the partition leaves the process, so
/// its counters never go backwards).
#[derive(Debug)]
pub struct PartitionMetrics {
    /// What the partition's actor publishes.
    pub(crate) stats: Arc<PartitionStats>,
    owned: AtomicBool,
    /// Input positions ("next to read"; -1: unknown). For Kafka these are
    /// offsets; for file input, counts of records routed to the partition.
    pub(crate) high_watermark: AtomicI64,
    pub(crate) committed: AtomicI64,
    pub(crate) processed: AtomicI64,
    /// Records read for the partition and records that did not decode.
    pub(crate) records_in: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    /// Kafka input: when the partition last made progress, ms since the
    /// epoch, while it is stalled (-1: not stalled); stall episodes; and
    /// records skipped, by [`Skip`] reason.
    stalled_since_ms: AtomicI64,
    stalls: AtomicU64,
    skipped: [AtomicU64; 2],
    /// When the last checkpoint completed (or the partition started, before
    /// one did), ms since the epoch.
    checkpoint_at_ms: AtomicI64,
    checkpoint_size: AtomicU64,
    restoring: AtomicBool,
    restore_began_ms: AtomicI64,
    restore_ms: AtomicU64,
    restore_bytes: AtomicU64,
    restore_total: AtomicU64,
    restore_keys: AtomicU64,
    /// Where its RocksDB instance lives, for the disk size.
    dir: Mutex<Option<PathBuf>>,
}

impl Default for PartitionMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PartitionMetrics {
    fn new() -> Self {
        Self {
            stats: Arc::default(),
            owned: AtomicBool::new(false),
            high_watermark: AtomicI64::new(-1),
            committed: AtomicI64::new(-1),
            processed: AtomicI64::new(-1),
            records_in: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            stalled_since_ms: AtomicI64::new(-1),
            stalls: AtomicU64::new(0),
            skipped: Default::default(),
            checkpoint_at_ms: AtomicI64::new(now_ms()),
            checkpoint_size: AtomicU64::new(0),
            restoring: AtomicBool::new(false),
            restore_began_ms: AtomicI64::new(0),
            restore_ms: AtomicU64::new(0),
            restore_bytes: AtomicU64::new(0),
            restore_total: AtomicU64::new(0),
            restore_keys: AtomicU64::new(0),
            dir: Mutex::new(None),
        }
    }

    /// `n` records read for the partition, `bad` of them undecodable.
    pub(crate) fn read(&self, n: u64, bad: u64) {
        self.records_in.fetch_add(n, Ordering::Relaxed);
        if bad > 0 {
            self.decode_errors.fetch_add(bad, Ordering::Relaxed);
        }
    }

    /// The partition's input stalled (it last made progress at `since`),
    /// or, with `None`, is moving again.
    pub(crate) fn set_stalled(&self, since: Option<SystemTime>) {
        let ms = since.map_or(-1, |t| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        });
        if ms >= 0 {
            self.stalls.fetch_add(1, Ordering::Relaxed);
        }
        self.stalled_since_ms.store(ms, Ordering::Relaxed);
    }

    /// `n` input records were skipped for `why`.
    pub(crate) fn skipped(&self, why: Skip, n: u64) {
        self.skipped[why as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn stalled(&self) -> bool {
        self.stalled_since_ms.load(Ordering::Relaxed) >= 0
    }

    /// Positions count records from 0 (file input, where the high
    /// watermark is what was routed to the partition). Without checkpoints
    /// nothing is ever committed: no committed lag, no checkpoint age.
    pub(crate) fn count_from_zero(&self, checkpoints: bool) {
        self.high_watermark.store(0, Ordering::Relaxed);
        self.processed.store(0, Ordering::Relaxed);
        let committed = if checkpoints { 0 } else { -1 };
        self.committed.store(committed, Ordering::Relaxed);
        if !checkpoints {
            self.checkpoint_at_ms.store(-1, Ordering::Relaxed);
        }
    }

    /// The restore needs `total` bytes (from the start again, when an
    /// earlier checkpoint is tried after a broken one).
    pub(crate) fn restore_size(&self, total: u64) {
        self.restore_total.store(total, Ordering::Relaxed);
        self.restore_bytes.store(0, Ordering::Relaxed);
    }

    /// `bytes` more of the restore are in.
    pub(crate) fn restore_progress(&self, bytes: u64) {
        self.restore_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The restore ended: the state is open, with about `keys` keys.
    pub(crate) fn restore_finished(&self, keys: u64) {
        let began = self.restore_began_ms.load(Ordering::Relaxed);
        let took = if began > 0 { now_ms() - began } else { 0 };
        self.restore_ms.store(took.max(0) as u64, Ordering::Relaxed);
        self.restore_keys.store(keys, Ordering::Relaxed);
        self.restoring.store(false, Ordering::Relaxed);
    }

    /// The partition has read nothing a checkpoint would cover.
    pub(crate) fn nothing_to_checkpoint(&self) {
        self.checkpoint_at_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A checkpoint holding `size` bytes of this partition completed.
    pub(crate) fn checkpointed(&self, size: u64) {
        self.checkpoint_size.store(size, Ordering::Relaxed);
        self.checkpoint_at_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// High watermark minus the position in `of`; unknown (not exported)
    /// until both are known.
    fn lag(&self, of: &AtomicI64) -> Option<f64> {
        let hw = self.high_watermark.load(Ordering::Relaxed);
        let at = of.load(Ordering::Relaxed);
        (hw >= 0 && at >= 0).then(|| (hw - at).max(0) as f64)
    }
}

/// How a processed batch moves its partition's processed position.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Advance {
    /// By this many records (file input counts records).
    By(i64),
    /// Up to this offset (Kafka).
    To(i64),
}

/// Dropped when its batch was processed: records the batch's latency and
/// the partition's progress. One per batch, so nothing per record.
pub(crate) struct BatchDone {
    pub(crate) metrics: Metrics,
    pub(crate) partition: Arc<PartitionMetrics>,
    pub(crate) since: Instant,
    pub(crate) advance: Advance,
}

impl Drop for BatchDone {
    fn drop(&mut self) {
        let processed = &self.partition.processed;
        match self.advance {
            Advance::By(n) => processed.fetch_add(n, Ordering::Relaxed),
            Advance::To(offset) => processed.fetch_max(offset, Ordering::Relaxed),
        };
        self.metrics.processed_batch(self.since);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Total size of the files under `dir` (not following links).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

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

    /// Registers a callback reporting `value` of every partition (every one
    /// seen for counters, owned ones for gauges) and, with `unrouted`, of
    /// the input that has no partition.
    fn per_partition(
        &self,
        meter: &Meter,
        m: Metric,
        unrouted: bool,
        value: impl Fn(&PartitionMetrics) -> Option<f64> + Send + Sync + 'static,
    ) {
        let inner = Arc::clone(&self.0);
        let each = move |emit: &mut dyn FnMut(f64, &[KeyValue])| {
            for (p, pm) in inner.partitions_now() {
                if m.kind == Kind::Gauge && !pm.owned.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(v) = value(&pm) {
                    emit(v, &[KeyValue::new("partition", p.to_string())]);
                }
            }
            let none = &inner.unrouted;
            if unrouted
                && none.records_in.load(Ordering::Relaxed) > 0
                && let Some(v) = value(none)
            {
                emit(v, &[KeyValue::new("partition", UNROUTED)]);
            }
        };
        match m.kind {
            Kind::Counter => {
                meter
                    .u64_observable_counter(m.instrument())
                    .with_description(m.help)
                    .with_callback(move |o| each(&mut |v, attrs| o.observe(v as u64, attrs)))
                    .build();
            }
            _ => {
                meter
                    .f64_observable_gauge(m.instrument())
                    .with_description(m.help)
                    .with_callback(move |o| each(&mut |v, attrs| o.observe(v, attrs)))
                    .build();
            }
        }
    }

    fn observe_partitions(&self, meter: &Meter) {
        let stat = |f: fn(&PartitionStats) -> &AtomicU64| {
            move |pm: &PartitionMetrics| Some(PartitionStats::get(f(&pm.stats)) as f64)
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        self.per_partition(meter, names::LAG_COMMITTED, false, |pm| {
            pm.lag(&pm.committed)
        });
        self.per_partition(meter, names::LAG_PROCESSED, false, |pm| {
            pm.lag(&pm.processed)
        });
        self.per_partition(meter, names::RECORDS_IN, true, move |pm| {
            Some(load(&pm.records_in))
        });
        self.per_partition(meter, names::RECORDS_OUT, false, stat(|s| &s.emitted));
        self.per_partition(meter, names::DEAD_LETTERED, true, move |pm| {
            Some(load(&pm.decode_errors) + load(&pm.stats.dead_lettered))
        });
        self.per_partition(meter, names::LATE, false, stat(|s| &s.late));
        self.per_partition(meter, names::LIVE_ACTORS, false, stat(|s| &s.live_keys));
        self.per_partition(meter, names::PASSIVATIONS, false, stat(|s| &s.passivations));
        self.per_partition(
            meter,
            names::PENDING_TIMERS,
            false,
            stat(|s| &s.pending_timers),
        );
        self.per_partition(
            meter,
            names::TIMERS_DEFERRED,
            false,
            stat(|s| &s.timers_deferred),
        );
        self.per_partition(meter, names::CHECKPOINT_SIZE, false, move |pm| {
            Some(load(&pm.checkpoint_size))
        });
        self.per_partition(meter, names::CHECKPOINT_AGE, false, |pm| {
            let at = pm.checkpoint_at_ms.load(Ordering::Relaxed);
            (at >= 0).then(|| (now_ms() - at).max(0) as f64 / 1000.0)
        });
        self.per_partition(meter, names::RESTORE_DURATION, false, move |pm| {
            Some(load(&pm.restore_ms) / 1000.0)
        });
        self.per_partition(meter, names::RESTORE_BYTES, false, move |pm| {
            Some(load(&pm.restore_bytes))
        });
        self.per_partition(meter, names::RESTORE_TOTAL_BYTES, false, move |pm| {
            Some(load(&pm.restore_total))
        });
        self.per_partition(meter, names::RESTORE_KEYS, false, move |pm| {
            Some(load(&pm.restore_keys))
        });
        self.per_partition(meter, names::INPUT_STALLED, false, |pm| {
            let since = pm.stalled_since_ms.load(Ordering::Relaxed);
            Some(if since >= 0 {
                (now_ms() - since).max(0) as f64 / 1000.0
            } else {
                0.0
            })
        });
        self.per_partition(meter, names::INPUT_STALLS, false, move |pm| {
            Some(load(&pm.stalls))
        });
        let inner = Arc::clone(&self.0);
        meter
            .u64_observable_counter(names::INPUT_SKIPPED.instrument())
            .with_description(names::INPUT_SKIPPED.help)
            .with_callback(move |o| {
                for (p, pm) in inner.partitions_now() {
                    for (why, n) in Skip::ALL.iter().zip(&pm.skipped) {
                        let attrs = [
                            KeyValue::new("partition", p.to_string()),
                            KeyValue::new("reason", why.label()),
                        ];
                        o.observe(n.load(Ordering::Relaxed), &attrs);
                    }
                }
            })
            .build();
        self.per_partition(meter, names::DISK, false, |pm| {
            let dir = lock(&pm.dir).clone()?;
            Some(dir_size(&dir) as f64)
        });
    }

    fn observe_process(&self, meter: &Meter) {
        let gauge = |m: Metric, value: Box<dyn Fn(&Inner) -> f64 + Send + Sync>| {
            let inner = Arc::clone(&self.0);
            meter
                .f64_observable_gauge(m.instrument())
                .with_description(m.help)
                .with_callback(move |o| o.observe(value(&inner), &[]))
                .build();
        };
        let counter = |m: Metric, value: fn(&Inner) -> &AtomicU64| {
            let inner = Arc::clone(&self.0);
            meter
                .u64_observable_counter(m.instrument())
                .with_description(m.help)
                .with_callback(move |o| o.observe(value(&inner).load(Ordering::Relaxed), &[]))
                .build();
        };
        counter(names::CHECKPOINTS, |i| &i.checkpoints);
        counter(names::CHECKPOINT_FAILURES, |i| &i.checkpoint_failures);
        counter(names::CONSUMER_ERRORS, |i| &i.consumer_errors);
        let owned = |i: &Inner, restoring: bool| {
            lock(&i.partitions)
                .values()
                .filter(|p| p.owned.load(Ordering::Relaxed))
                .filter(|p| !restoring || p.restoring.load(Ordering::Relaxed))
                .count() as f64
        };
        gauge(
            names::PARTITIONS_ASSIGNED,
            Box::new(move |i| owned(i, false)),
        );
        gauge(
            names::PARTITIONS_RESTORING,
            Box::new(move |i| owned(i, true)),
        );
        gauge(names::READY, Box::new(|i| f64::from(u8::from(ready(i)))));
        let inner = Arc::clone(&self.0);
        meter
            .f64_observable_gauge(names::CHECKPOINT_INTERVAL.instrument())
            .with_description(names::CHECKPOINT_INTERVAL.help)
            .with_callback(move |o| match inner.interval_ms.load(Ordering::Relaxed) {
                0 => {}
                ms => o.observe(ms as f64 / 1000.0, &[]),
            })
            .build();
        let memory = |f: fn(&StateEnv) -> usize| {
            Box::new(move |i: &Inner| lock(&i.env).as_ref().map_or(0.0, |e| f(e) as f64))
        };
        gauge(names::BLOCK_CACHE, memory(StateEnv::cache_usage));
        gauge(names::MEMTABLES, memory(StateEnv::memtable_usage));
        let inner = Arc::clone(&self.0);
        meter
            .u64_observable_counter(names::REBALANCES.instrument())
            .with_description(names::REBALANCES.help)
            .with_callback(move |o| {
                for (kind, n) in REBALANCE_KINDS.iter().zip(&inner.rebalances) {
                    o.observe(n.load(Ordering::Relaxed), &[KeyValue::new("kind", *kind)]);
                }
            })
            .build();
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
        assert_eq!(dir_size(dir.path()), 15);
    }
}
