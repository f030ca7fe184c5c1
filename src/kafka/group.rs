//! The decisions of a consumer-group worker, as a state machine without
//! I/O: [`Group`] takes events (a partition assigned or revoked, a record
//! polled, a batch processed, a checkpoint taken or uploaded, time passing)
//! and answers with [`Action`]s as data (hand a batch to an actor, send a
//! barrier, pause, commit, stop an actor). The worker
//! ([`super::worker`]) performs them against the real consumer, actors
//! and upload thread; the property test in `group/tests.rs` drives the
//! same machine with random event sequences and a model of the broker, the
//! actors and the snapshot store.
//!
//! ## Invariants
//! - An offset is committed only once a checkpoint manifest of the same
//!   assignment at that position was written ([`Group::take_commit`] only
//!   offers positions of completed checkpoints of live assignments).
//! - An assignment that ended (revoked, lost, fenced) never has a
//!   checkpoint uploaded or an offset committed: its generation is gone.
//! - A barrier stands for every record before its position: the records
//!   queued but not yet handed to the actor are at or after it. So when a
//!   partition is released, its queued records are dropped and the next
//!   owner, starting from the newest checkpoint, reads them again.
//! - A partition whose checkpoint was refused because another owner took
//!   its checkpoints over is dropped without a final checkpoint or commit,
//!   and taken back only if the group still assigns it after a while.

use std::collections::BTreeMap;
use std::time::Instant;

use super::job::KafkaReport;

mod events;

pub(crate) use events::{Action, Done, Limits, Outcome, Queue, View};

/// One owned partition.
#[derive(Debug)]
struct Part<Q> {
    /// This assignment's number (unique within the worker).
    generation: u64,
    /// Next offset expected from the consumer (`None`: not known yet).
    next_offset: Option<i64>,
    queue: Q,
    /// Batch credits not held by the actor.
    credits: usize,
    paused: bool,
    next_checkpoint: u64,
    in_flight: Option<u64>,
}

/// The worker's decisions. See the module docs.
pub(crate) struct Group<Q: Queue> {
    limits: Limits,
    parts: BTreeMap<i32, Part<Q>>,
    generations: u64,
    /// Completed checkpoints' positions not committed yet.
    to_commit: BTreeMap<i32, i64>,
    /// Assignments whose checkpoints were refused, to release.
    fenced: Vec<(i32, u64)>,
    /// Partitions released that way, and when.
    released: BTreeMap<i32, Instant>,
    fatal: Option<String>,
    actions: Vec<Action<Q::Batch>>,
    pub report: KafkaReport,
}

impl<Q: Queue> Group<Q> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            parts: BTreeMap::new(),
            generations: 0,
            to_commit: BTreeMap::new(),
            fenced: Vec::new(),
            released: BTreeMap::new(),
            fatal: None,
            actions: Vec::new(),
            report: KafkaReport::default(),
        }
    }

    /// The actions decided since the last call, in order.
    pub fn actions(&mut self) -> Vec<Action<Q::Batch>> {
        std::mem::take(&mut self.actions)
    }

    /// Why the worker must stop, once it must.
    pub fn failure(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Records the first reason to stop.
    pub fn fail(&mut self, why: String) {
        self.fatal.get_or_insert(why);
    }

    pub fn owns(&self, partition: i32) -> bool {
        self.parts.contains_key(&partition)
    }

    pub fn owned(&self) -> impl Iterator<Item = i32> + '_ {
        self.parts.keys().copied()
    }

    pub fn view(&self, partition: i32) -> Option<View> {
        self.parts.get(&partition).map(|p| View {
            generation: p.generation,
            next_offset: p.next_offset,
            queued: p.queue.len(),
            paused: p.paused,
        })
    }

    /// Whether anything is queued for an actor.
    pub fn busy(&self) -> bool {
        self.parts.values().any(|p| p.queue.len() > 0)
    }

    /// `partition` was restored (from a checkpoint at `position`, if any)
    /// and its actor is about to start; checkpoints of this assignment
    /// start at id `first_id`. Returns the assignment's generation.
    pub fn assigned(&mut self, partition: i32, position: Option<i64>, first_id: u64) -> u64 {
        self.released.remove(&partition);
        self.generations += 1;
        let generation = self.generations;
        self.report.assigned += 1;
        if position.is_some() {
            self.report.restored += 1;
        }
        self.to_commit.remove(&partition);
        self.parts.insert(
            partition,
            Part {
                generation,
                next_offset: position,
                queue: Q::default(),
                credits: self.limits.credits,
                paused: false,
                next_checkpoint: first_id,
                in_flight: None,
            },
        );
        generation
    }

    /// A record the consumer returned: `item` is `None` when it did not
    /// decode (the worker dead-letters it). Returns whether the partition
    /// is owned (records of others are dropped: their owner reads them).
    pub fn record(&mut self, partition: i32, offset: i64, item: Option<Q::Item<'_>>) -> bool {
        let Some(p) = self.parts.get_mut(&partition) else {
            return false;
        };
        if let Some(next) = p.next_offset {
            // The consumer never goes back on its own: the topic was
            // recreated or the log truncated. Going on would skip or mix
            // records.
            if offset < next {
                self.fatal.get_or_insert(format!(
                    "partition {partition} went back from offset {next} to {offset} (topic \
                     recreated or log truncated?): refusing to go on"
                ));
                return true;
            }
            if offset > next {
                self.actions.push(Action::Skipped {
                    partition,
                    from: next,
                    to: offset,
                });
            }
        }
        p.next_offset = Some(offset + 1);
        self.report.records += 1;
        match item {
            Some(item) => p.queue.push(offset, item),
            None => self.report.decode_errors += 1,
        }
        true
    }

    /// The log of `partition` starts at `start`, past the position it was
    /// to be read from: reading goes on there (the worker logged it).
    pub fn skip_to(&mut self, partition: i32, start: i64) {
        if let Some(p) = self.parts.get_mut(&partition)
            && p.next_offset.is_some_and(|n| n < start)
        {
            p.next_offset = Some(start);
        }
    }

    /// The actor of this assignment finished a batch.
    pub fn batch_done(&mut self, partition: i32, generation: u64) {
        if let Some(p) = self.parts.get_mut(&partition)
            && p.generation == generation
        {
            p.credits = (p.credits + 1).min(self.limits.credits);
        }
    }

    /// The actor made local checkpoint `id`: whether to upload it (only an
    /// assignment that has not ended, in a worker that has not failed,
    /// may). One not uploaded is no longer in flight.
    pub fn checkpointed(&mut self, partition: i32, generation: u64, id: u64) -> bool {
        let current = self.is_current(partition, generation);
        if current && self.fatal.is_none() {
            return true;
        }
        if current
            && let Some(p) = self.parts.get_mut(&partition)
            && p.in_flight == Some(id)
        {
            p.in_flight = None;
        }
        false
    }

    /// Whether `generation` is `partition`'s live assignment.
    pub fn is_current(&self, partition: i32, generation: u64) -> bool {
        self.parts
            .get(&partition)
            .is_some_and(|p| p.generation == generation)
    }

    /// Takes in one checkpoint outcome.
    pub fn done(&mut self, d: Done) {
        let current = self.is_current(d.partition, d.generation);
        if let Some(p) = self.parts.get_mut(&d.partition)
            && current
            && p.in_flight == Some(d.id)
        {
            p.in_flight = None;
        }
        let (partition, checkpoint) = (d.partition, d.id);
        match d.outcome {
            Outcome::Complete => {
                self.report.checkpoints += 1;
                tracing::info!(
                    partition,
                    checkpoint,
                    position = d.position,
                    "checkpoint complete"
                );
                if current {
                    self.to_commit.insert(d.partition, d.position);
                }
            }
            Outcome::Failed(e) => {
                self.report.checkpoint_failures += 1;
                tracing::warn!(partition, checkpoint, error = %e, "checkpoint failed");
            }
            Outcome::Fenced(e) => {
                self.report.checkpoint_failures += 1;
                tracing::error!(partition, checkpoint, error = %e, "checkpoint refused: another worker owns the partition's checkpoints now; releasing it");
                if current {
                    self.fenced.push((d.partition, d.generation));
                }
            }
            Outcome::Fatal(e) => {
                self.report.checkpoint_failures += 1;
                tracing::warn!(partition, checkpoint, error = %e, "checkpoint failed");
                self.fatal.get_or_insert(format!(
                    "partition {partition} checkpoint {checkpoint}: {e}"
                ));
            }
        }
    }

    /// The positions to commit now: those of completed checkpoints of live
    /// assignments. Call [`committed`](Self::committed) once they are.
    pub fn take_commit(&self) -> Vec<(i32, i64)> {
        self.to_commit.iter().map(|(&p, &o)| (p, o)).collect()
    }

    /// `offsets` were committed.
    pub fn committed(&mut self, offsets: &[(i32, i64)]) {
        for (p, o) in offsets {
            if self.to_commit.get(p) == Some(o) {
                self.to_commit.remove(p);
            }
        }
    }

    /// Housekeeping, once per poll round: releases fenced partitions and
    /// asks to take back those released long enough ago; hands queued
    /// records to actors with a free credit; pauses partitions that queue
    /// too much and resumes those that drained; with `checkpoint`, sends a
    /// barrier to each partition without one in flight.
    pub fn tick(&mut self, now: Instant, checkpoint: bool) {
        self.release_fenced(now);
        self.flush();
        if checkpoint {
            let idle: Vec<i32> = self
                .parts
                .iter()
                .filter(|(_, p)| p.in_flight.is_none())
                .map(|(&k, _)| k)
                .collect();
            for partition in idle {
                self.barrier(partition);
            }
        }
    }

    fn flush(&mut self) {
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        for (&partition, p) in self.parts.iter_mut() {
            while p.queue.len() > 0 && p.credits > 0 {
                let n = p.queue.len().min(self.limits.max_batch);
                let batch = p.queue.take(n);
                // The batch ends before the next queued record, or after
                // the last one read (records between that did not decode
                // went to the dead-letter topic when they were read).
                let end = p.queue.first().or(p.next_offset).unwrap_or_default();
                p.credits -= 1;
                self.actions.push(Action::Deliver {
                    partition,
                    generation: p.generation,
                    batch,
                    end,
                });
            }
            // Nothing queued or in flight: everything read is processed,
            // records that went to the dead-letter topic included.
            if p.queue.len() == 0
                && p.credits == self.limits.credits
                && let Some(offset) = p.next_offset
            {
                self.actions.push(Action::CaughtUp { partition, offset });
            }
            if p.queue.len() >= self.limits.max_buffered && !p.paused {
                p.paused = true;
                pause.push(partition);
            } else if p.queue.len() == 0 && p.paused {
                p.paused = false;
                resume.push(partition);
            }
        }
        if !pause.is_empty() {
            self.actions.push(Action::Pause(pause));
        }
        if !resume.is_empty() {
            self.actions.push(Action::Resume(resume));
        }
    }

    /// Sends the next barrier to `partition`; returns its id.
    fn barrier(&mut self, partition: i32) -> Option<u64> {
        let p = self.parts.get_mut(&partition)?;
        // The first record not yet handed to the actor.
        let Some(position) = p.queue.first().or(p.next_offset) else {
            self.actions.push(Action::NothingToCheckpoint { partition });
            return None;
        };
        let id = p.next_checkpoint;
        p.next_checkpoint += 1;
        p.in_flight = Some(id);
        self.actions.push(Action::Barrier {
            partition,
            generation: p.generation,
            id,
            position,
        });
        Some(id)
    }

    /// Starts releasing `partitions`: their queued records are dropped
    /// (the position to resume from goes back to the first of them) and,
    /// with `final_checkpoint`, each gets a last barrier. Returns the
    /// barriers to wait for (partition -> id); then commit, then
    /// [`release`](Self::release).
    pub fn revoke(&mut self, partitions: &[i32], final_checkpoint: bool) -> BTreeMap<i32, u64> {
        let mut waiting = BTreeMap::new();
        for partition in partitions {
            self.released.remove(partition);
            let Some(p) = self.parts.get_mut(partition) else {
                continue;
            };
            // Queued records were never processed: the checkpoint must
            // start at the first of them, so the next owner reads them.
            if let Some(first) = p.queue.first() {
                p.next_offset = Some(first);
            }
            p.queue.clear();
            if final_checkpoint
                && self.fatal.is_none()
                && let Some(id) = self.barrier(*partition)
            {
                waiting.insert(*partition, id);
            }
        }
        waiting
    }

    /// Whether a final checkpoint `id` of `partition` is still awaited.
    pub fn awaits(&self, partition: i32, id: u64) -> bool {
        self.parts
            .get(&partition)
            .is_some_and(|p| p.in_flight == Some(id))
    }

    /// Ends the assignments of `partitions`: their actors stop and their
    /// uncommitted positions are forgotten.
    pub fn release(&mut self, partitions: &[i32], lost: bool) {
        for partition in partitions {
            let Some(p) = self.parts.remove(partition) else {
                continue;
            };
            self.to_commit.remove(partition);
            self.actions.push(Action::Stop {
                partition: *partition,
                generation: p.generation,
                lost,
            });
        }
    }

    fn release_fenced(&mut self, now: Instant) {
        if !self.fenced.is_empty() {
            // Only the assignment that was refused: the group may have
            // assigned the partition anew meanwhile.
            let fenced: Vec<i32> = std::mem::take(&mut self.fenced)
                .into_iter()
                .filter(|&(p, g)| self.is_current(p, g))
                .map(|(p, _)| p)
                .collect();
            self.revoke(&fenced, false);
            self.release(&fenced, true);
            self.released.extend(fenced.iter().map(|&p| (p, now)));
        }
        let after = self.limits.reacquire_after;
        let due: Vec<i32> = self
            .released
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= after)
            .map(|(&p, _)| p)
            .collect();
        if !due.is_empty() {
            for p in &due {
                self.released.remove(p);
            }
            self.actions.push(Action::Reacquire(due));
        }
    }
}

#[cfg(test)]
mod tests;
