//! Every metric weir exports, by the name Prometheus sees.
//!
//! These names are stable: dashboards and alert rules depend on them. The
//! table in `docs/METRICS.md` lists the same metrics (a test checks both
//! ways), and `ops/grafana` and `ops/prometheus` use only these names (a
//! test checks that too).

/// How a metric behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (reset when the process restarts).
    Counter,
    /// A value now.
    Gauge,
    /// A distribution: `_bucket`, `_sum` and `_count` series.
    Histogram,
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The name in the Prometheus exposition (counters end in `_total`).
    pub name: &'static str,
    pub kind: Kind,
    /// Its labels, besides those Prometheus adds (`job`, `instance`).
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

impl Metric {
    /// The OpenTelemetry instrument name (the exporter adds `_total` to
    /// counters).
    pub fn instrument(&self) -> &'static str {
        match self.kind {
            Kind::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            _ => self.name,
        }
    }
}

const P: &[&str] = &["partition"];

macro_rules! metrics {
    ($($id:ident = $name:literal, $kind:ident, $labels:expr, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $id: Metric = Metric {
                name: $name,
                kind: Kind::$kind,
                labels: $labels,
                help: $help,
            };
        )*
        /// Every metric, in the order of the docs table.
        pub const ALL: &[Metric] = &[$($id),*];
    };
}

metrics! {
    LAG_COMMITTED = "weir_consumer_lag_committed_records", Gauge, P,
        "Input records not yet covered by a completed checkpoint: high watermark minus committed position.";
    LAG_PROCESSED = "weir_consumer_lag_processed_records", Gauge, P,
        "Input records not yet processed: high watermark minus processed position.";
    RECORDS_IN = "weir_records_in_total", Counter, P,
        "Input records read for the partition (those that fail to decode included).";
    RECORDS_OUT = "weir_records_out_total", Counter, P,
        "Outputs the partition's processor emitted.";
    DEAD_LETTERED = "weir_records_dead_lettered_total", Counter, P,
        "Records and timers sent to the dead-letter sink (decode errors, processing errors, late records).";
    LATE = "weir_records_late_total", Counter, P,
        "Records behind the partition's watermark.";
    FUTURE = "weir_records_future_total", Counter, P,
        "Records whose event time was further ahead of the processing clock than the bound (max_future); dead-lettered, they do not move the watermark.";
    PROCESSING_LATENCY = "weir_processing_latency_seconds", Histogram, &[],
        "Time from handing a batch of records to its partition actor until they are processed.";
    LIVE_ACTORS = "weir_live_actors", Gauge, P,
        "Key actors live (state in memory) now.";
    PASSIVATIONS = "weir_passivations_total", Counter, P,
        "Key actors passivated (state written back, memory freed).";
    PENDING_TIMERS = "weir_pending_timers", Gauge, P,
        "Timers set and not yet fired.";
    TIMERS_DEFERRED = "weir_timers_deferred_total", Counter, P,
        "Due timers held back because their key re-armed its timers more than the timer chain bound allows in one firing round (a processor that re-arms without end).";
    CHECKPOINT_DURATION = "weir_checkpoint_duration_seconds", Histogram, &[],
        "Time from a checkpoint's barrier until its manifest is written.";
    CHECKPOINT_SIZE = "weir_checkpoint_size_bytes", Gauge, P,
        "Size of the partition's files in its last completed checkpoint.";
    CHECKPOINT_AGE = "weir_checkpoint_age_seconds", Gauge, P,
        "Time since the partition's last completed checkpoint (since it started, before its first).";
    CHECKPOINT_INTERVAL = "weir_checkpoint_interval_seconds", Gauge, &[],
        "The job's checkpoint interval (absent without periodic checkpoints); alert rules compare the age with it.";
    CHECKPOINTS = "weir_checkpoints_total", Counter, &[],
        "Checkpoints completed.";
    CHECKPOINT_FAILURES = "weir_checkpoint_failures_total", Counter, &[],
        "Checkpoints that failed or were abandoned.";
    RESTORE_DURATION = "weir_restore_duration_seconds", Gauge, P,
        "How long the partition's last restore took (download and open).";
    RESTORE_BYTES = "weir_restore_bytes", Gauge, P,
        "Bytes of checkpoint files restored so far in the partition's current or last restore.";
    RESTORE_TOTAL_BYTES = "weir_restore_total_bytes", Gauge, P,
        "Bytes of checkpoint files the partition's current or last restore needs.";
    RESTORE_KEYS = "weir_restore_keys", Gauge, P,
        "Keys in the state the partition's last restore opened (RocksDB's estimate).";
    PARTITIONS_ASSIGNED = "weir_partitions_assigned", Gauge, &[],
        "Partitions this process owns now.";
    PARTITIONS_RESTORING = "weir_partitions_restoring", Gauge, &[],
        "Partitions this process is restoring now.";
    READY = "weir_ready", Gauge, &[],
        "1 when every owned partition is restored and none is stalled, and the process is not shutting down (what /readyz says).";
    REBALANCES = "weir_rebalances_total", Counter, &["kind"],
        "Consumer-group rebalance events (kind: assigned, revoked, lost).";
    BLOCK_CACHE = "weir_rocksdb_block_cache_bytes", Gauge, &[],
        "Memory held by the RocksDB block cache all partitions share.";
    MEMTABLES = "weir_rocksdb_memtable_bytes", Gauge, &[],
        "Memory held by RocksDB memtables (all partitions).";
    INPUT_STALLED = "weir_input_stalled_seconds", Gauge, P,
        "How long the partition has had records to read and read none, once that passed the stall time (0 when it is not stalled); /readyz is not ready meanwhile.";
    INPUT_STALLS = "weir_input_stalls_total", Counter, P,
        "Times the partition's input stalled (undecodable or corrupt batches, fetch errors that repeat, an unreachable leader).";
    INPUT_SKIPPED = "weir_input_skipped_records_total", Counter, &["partition", "reason"],
        "Input offsets skipped without being processed (reason: log_start when retention removed them before they were read, gap for holes in the log).";
    CONSUMER_ERRORS = "weir_consumer_errors_total", Counter, &[],
        "Errors the Kafka consumer reported (failed fetches, undecodable batches, broker errors); it retries them.";
    DISK = "weir_rocksdb_disk_bytes", Gauge, P,
        "Size of the partition's RocksDB files on disk.";
}
