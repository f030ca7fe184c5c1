//! A partition's live figures, shared with whoever exports metrics.
//!
//! The partition actor publishes into [`PartitionStats`] once per message
//! it handles (a batch, a tick, a barrier), never per record, with relaxed
//! atomic operations: no lock, no allocation. Readers (a metrics exporter)
//! load the atomics whenever they like.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::Counters;

/// Cumulative counts and current levels of one partition.
///
/// Counts add up over every actor that owned the partition in this process
/// (a partition can be revoked and assigned again); levels are those of the
/// current owner.
#[derive(Debug, Default)]
pub struct PartitionStats {
    /// Records received (late ones included).
    pub records: AtomicU64,
    /// Records behind the watermark.
    pub late: AtomicU64,
    /// Records too far ahead of the processing clock.
    pub future: AtomicU64,
    /// Records and timers dead-lettered by the actor.
    pub dead_lettered: AtomicU64,
    /// Outputs emitted.
    pub emitted: AtomicU64,
    /// Keys passivated.
    pub passivations: AtomicU64,
    /// Due timers held back by the timer chain bound.
    pub timers_deferred: AtomicU64,
    /// Keys live now.
    pub live_keys: AtomicU64,
    /// Timers pending now.
    pub pending_timers: AtomicU64,
}

impl PartitionStats {
    /// Adds what `now` counted since `published` and sets the levels;
    /// `published` becomes `now`.
    pub fn publish(&self, published: &mut Counters, now: &Counters, live: usize, timers: usize) {
        let add = |a: &AtomicU64, old: u64, new: u64| {
            if new > old {
                a.fetch_add(new - old, Ordering::Relaxed);
            }
        };
        add(&self.records, published.records, now.records);
        add(&self.late, published.late, now.late);
        add(&self.future, published.future, now.future);
        add(
            &self.dead_lettered,
            published.dead_lettered,
            now.dead_lettered,
        );
        add(&self.emitted, published.emitted, now.emitted);
        add(&self.passivations, published.passivations, now.passivations);
        add(
            &self.timers_deferred,
            published.timers_deferred,
            now.timers_deferred,
        );
        self.live_keys.store(live as u64, Ordering::Relaxed);
        self.pending_timers.store(timers as u64, Ordering::Relaxed);
        *published = *now;
    }

    /// Marks the partition as owned by no actor here: no live keys, no
    /// pending timers (they are in its checkpoint).
    pub fn clear_levels(&self) {
        self.live_keys.store(0, Ordering::Relaxed);
        self.pending_timers.store(0, Ordering::Relaxed);
    }

    /// Loads one counter.
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_adds_deltas_across_owners() {
        let stats = PartitionStats::default();
        let mut published = Counters::default();
        let mut now = Counters {
            records: 10,
            emitted: 2,
            passivations: 1,
            ..Counters::default()
        };
        stats.publish(&mut published, &now, 5, 3);
        now.records = 15;
        stats.publish(&mut published, &now, 4, 1);
        // A new owner starts counting from zero again.
        let mut published = Counters::default();
        let again = Counters {
            records: 7,
            ..Counters::default()
        };
        stats.publish(&mut published, &again, 2, 0);
        assert_eq!(PartitionStats::get(&stats.records), 22);
        assert_eq!(PartitionStats::get(&stats.emitted), 2);
        assert_eq!(PartitionStats::get(&stats.passivations), 1);
        assert_eq!(PartitionStats::get(&stats.live_keys), 2);
        assert_eq!(PartitionStats::get(&stats.pending_timers), 0);
        stats.clear_levels();
        assert_eq!(PartitionStats::get(&stats.live_keys), 0);
    }
}
