//! A partition's queue of records read and not yet handed to its actor,
//! and the guard that travels with each batch.

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use weir_actors::runtime::{Envelope, InputBatch};

use super::super::group::Queue;
use super::super::lag::Progress;
use super::super::upload::Inbox;
use crate::runtime::Decoded;
use crate::telemetry::BatchDone;

/// The records of one partition read and not yet handed to its actor, and
/// their raw bytes (one buffer, so a batch's bytes are one allocation).
pub(in super::super) struct Pending<K, V> {
    records: Vec<Envelope<K, V>>,
    data: Vec<u8>,
}

impl<K, V> Default for Pending<K, V> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl<K, V> Queue for Pending<K, V> {
    type Item<'a>
        = (Decoded<K, V>, &'a [u8])
    where
        Self: 'a;
    type Batch = InputBatch<K, V>;

    fn push(&mut self, offset: i64, (d, bytes): (Decoded<K, V>, &[u8])) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.records.push(Envelope {
            key: d.key,
            timestamp: d.timestamp,
            value: d.value,
            position: offset as u64,
            raw: start..self.data.len(),
        });
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn first(&self) -> Option<i64> {
        self.records.first().map(|r| r.position as i64)
    }

    fn take(&mut self, n: usize) -> InputBatch<K, V> {
        let records: Vec<_> = self.records.drain(..n).collect();
        let end = records.last().map_or(0, |r| r.raw.end);
        let data: Arc<[u8]> = Arc::from(&self.data[..end]);
        self.data.drain(..end);
        for r in &mut self.records {
            r.raw = r.raw.start - end..r.raw.end - end;
        }
        InputBatch { data, records }
    }

    fn clear(&mut self) {
        self.records.clear();
        self.data.clear();
    }
}

/// Dropped when a batch is processed: gives the credit back to the poll
/// thread and records progress (through `_done`, dropped after this).
pub(super) struct Processed {
    pub(super) progress: Arc<Progress>,
    pub(super) generation: u64,
    pub(super) inbox: mpsc::Sender<Inbox>,
    pub(super) _done: BatchDone,
}

impl Drop for Processed {
    fn drop(&mut self) {
        let p = &self.progress;
        let _ = self
            .inbox
            .send(Inbox::BatchDone(p.partition, self.generation));
        if p.restored && !p.first_done.swap(true, Ordering::Relaxed) {
            let ms = p.joined.elapsed().as_millis() as u64;
            p.first_restored_ms.fetch_min(ms, Ordering::Relaxed);
            tracing::info!(
                partition = p.partition,
                since_join_ms = ms,
                "first records processed on a restored partition"
            );
        }
    }
}
