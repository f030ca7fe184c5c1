//! Each owned partition's progress (positions, lag, the first record on a
//! restored partition) and the client statistics it is read from.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lock;
use crate::telemetry::PartitionMetrics;

/// A partition's consumer lag, as last seen. Offsets are "next to read";
/// `None` when not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub partition: i32,
    /// The partition's high watermark (from the client's statistics).
    pub high_watermark: Option<i64>,
    /// The offset committed to the group (after a checkpoint).
    pub committed: Option<i64>,
    /// The offset after the last record processed.
    pub processed: Option<i64>,
}

impl Lag {
    /// High watermark minus committed offset.
    pub fn behind_committed(&self) -> Option<i64> {
        Some((self.high_watermark? - self.committed?).max(0))
    }

    /// High watermark minus processed offset.
    pub fn behind_processed(&self) -> Option<i64> {
        Some((self.high_watermark? - self.processed?).max(0))
    }
}

/// Live progress of one owned partition.
pub(super) struct Progress {
    pub(super) partition: i32,
    /// Its positions (`-1`: unknown) and other figures.
    pub(super) m: Arc<PartitionMetrics>,
    /// librdkafka's fetch position, the log's start and the end a consumer
    /// can read to (the last stable offset, below open transactions), from
    /// its statistics (`-1`: unknown).
    pub(super) fetched: AtomicI64,
    pub(super) low: AtomicI64,
    pub(super) end: AtomicI64,
    /// Set once the first batch after assignment was processed.
    pub(super) first_done: AtomicBool,
    /// When this worker started, and whether the partition was restored
    /// from a checkpoint (for the join-to-first-record figure).
    pub(super) joined: Instant,
    pub(super) restored: bool,
    /// The worker's earliest join-to-first-record time, ms.
    pub(super) first_restored_ms: Arc<AtomicU64>,
}

impl Progress {
    fn lag(&self) -> Lag {
        let get = |a: &AtomicI64| Some(a.load(Ordering::Relaxed)).filter(|v| *v >= 0);
        Lag {
            partition: self.partition,
            high_watermark: get(&self.m.high_watermark),
            committed: get(&self.m.committed),
            processed: get(&self.m.processed),
        }
    }
}

/// Reads the progress of a running job: the lag of the partitions it owns.
/// Cheap to clone.
#[derive(Clone)]
pub struct LagHandle(
    pub(super) Arc<Mutex<BTreeMap<i32, Arc<Progress>>>>,
    pub(super) Arc<AtomicU64>,
);

impl Default for LagHandle {
    fn default() -> Self {
        Self(Arc::default(), Arc::new(AtomicU64::new(u64::MAX)))
    }
}

impl LagHandle {
    /// Every owned partition's lag.
    pub fn snapshot(&self) -> Vec<Lag> {
        lock(&self.0).values().map(|p| p.lag()).collect()
    }

    /// Time from the worker's start to the first record it processed on a
    /// partition restored from a checkpoint (a partition that moved to it),
    /// once there was one.
    pub fn first_record_on_restored_partition(&self) -> Option<Duration> {
        match self.1.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// Takes in the client's statistics (JSON): each owned partition's
/// watermarks, fetch position and committed offset.
pub(super) fn read_statistics(lag: &LagHandle, topic: &str, statistics: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(statistics) else {
        return;
    };
    let Some(parts) = v
        .get("topics")
        .and_then(|t| t.get(topic))
        .and_then(|t| t.get("partitions"))
        .and_then(|p| p.as_object())
    else {
        return;
    };
    let progress = lock(&lag.0);
    for (p, stats) in parts {
        let offset = |name: &str| stats.get(name).and_then(|v| v.as_i64()).filter(|v| *v >= 0);
        let (Ok(p), Some(hi)) = (p.parse::<i32>(), offset("hi_offset")) else {
            continue;
        };
        let Some(pr) = progress.get(&p) else {
            continue;
        };
        let m = &pr.m;
        m.high_watermark.store(hi, Ordering::Relaxed);
        pr.fetched
            .store(offset("next_offset").unwrap_or(-1), Ordering::Relaxed);
        pr.low
            .store(offset("lo_offset").unwrap_or(-1), Ordering::Relaxed);
        let end = offset("ls_offset").map_or(hi, |ls| ls.min(hi));
        pr.end.store(end, Ordering::Relaxed);
        // Before this worker's first checkpoint of the partition, the
        // group's committed offset is what is covered; an empty
        // partition (nothing between low and high watermark) has
        // nothing to cover or process.
        let empty = offset("lo_offset") == Some(hi);
        let known = if empty {
            Some(hi)
        } else {
            offset("committed_offset")
        };
        if let Some(at) = known {
            let _ = m
                .committed
                .compare_exchange(-1, at, Ordering::Relaxed, Ordering::Relaxed);
            if empty {
                let _ = m
                    .processed
                    .compare_exchange(-1, at, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }
    drop(progress);
    for lag in lag.snapshot() {
        tracing::debug!(
            partition = lag.partition,
            high_watermark = lag.high_watermark,
            behind_committed = lag.behind_committed(),
            behind_processed = lag.behind_processed(),
            "consumer lag"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_measured_from_the_high_watermark() {
        let lag = Lag {
            partition: 3,
            high_watermark: Some(1_000),
            committed: Some(400),
            processed: Some(990),
        };
        assert_eq!(lag.behind_committed(), Some(600));
        assert_eq!(lag.behind_processed(), Some(10));
        let unknown = Lag {
            high_watermark: None,
            ..lag
        };
        assert_eq!(unknown.behind_committed(), None);
        // Statistics lag behind processing: never negative.
        let ahead = Lag {
            high_watermark: Some(980),
            ..lag
        };
        assert_eq!(ahead.behind_processed(), Some(0));
    }
}
