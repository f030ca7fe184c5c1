//! One partition's figures, and what updates them on the hot path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_actors::runtime::PartitionStats;

use super::Metrics;
use crate::kafka::watch::Skip;
use crate::lock;

/// One partition's figures (kept after the partition leaves the process, so
/// its counters never go backwards).
#[derive(Debug)]
pub struct PartitionMetrics {
    /// What the partition's actor publishes.
    pub(crate) stats: Arc<PartitionStats>,
    pub(super) owned: AtomicBool,
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
    pub(super) stalled_since_ms: AtomicI64,
    pub(super) stalls: AtomicU64,
    pub(super) skipped: [AtomicU64; 2],
    /// When the last checkpoint completed (or the partition started, before
    /// one did), ms since the epoch.
    pub(super) checkpoint_at_ms: AtomicI64,
    pub(super) checkpoint_size: AtomicU64,
    pub(super) restoring: AtomicBool,
    pub(super) restore_began_ms: AtomicI64,
    pub(super) restore_ms: AtomicU64,
    pub(super) restore_bytes: AtomicU64,
    pub(super) restore_total: AtomicU64,
    pub(super) restore_keys: AtomicU64,
    /// Where its RocksDB instance lives, for the disk size.
    pub(super) dir: Mutex<Option<PathBuf>>,
    /// The disk size last measured, and when: walking the directory is
    /// done at most once per [`DISK_SIZE_EVERY`], however often metrics
    /// are collected.
    pub(super) disk: Mutex<Option<(Instant, u64)>>,
}

/// How long a measured disk size is served before the directory is walked
/// again.
pub(super) const DISK_SIZE_EVERY: Duration = Duration::from_secs(10);

impl Default for PartitionMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PartitionMetrics {
    pub(super) fn new() -> Self {
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
            disk: Mutex::new(None),
        }
    }

    /// The size of the partition's RocksDB files, measured at most once
    /// per [`DISK_SIZE_EVERY`] (`None` while it has no directory).
    pub(super) fn disk_size(&self) -> Option<u64> {
        let dir = lock(&self.dir).clone()?;
        let mut disk = lock(&self.disk);
        match *disk {
            Some((at, size)) if at.elapsed() < DISK_SIZE_EVERY => Some(size),
            _ => {
                let size = dir_size(&dir);
                *disk = Some((Instant::now(), size));
                Some(size)
            }
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

    pub(super) fn stalled(&self) -> bool {
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
    pub(super) fn lag(&self, of: &AtomicI64) -> Option<f64> {
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

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Total size of the files under `dir` (not following links).
pub(super) fn dir_size(dir: &Path) -> u64 {
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
