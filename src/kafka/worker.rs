//! The shell around the group state machine ([`super::group`]): it
//! decodes what the consumer returns, performs the machine's actions on
//! the consumer, the actors and the upload thread, restores partitions
//! when they are assigned, and watches each partition's input.
//!
//! ## Threads
//! One *poll thread* owns the consumer (see [`super::consumer`]). It polls,
//! decodes each value and queues the record for its partition; queued
//! records go to the partition's actor as a batch when the actor has a
//! free batch credit. A partition whose queue grows past
//! [`KafkaSettings::max_buffered`] is paused at the broker and resumed once
//! it drains, so a slow partition never stops polling (no
//! `max.poll.interval.ms` expiry) and memory stays bounded. Rebalance
//! callbacks run on the poll thread, between polls. Actors tell the poll
//! thread when a batch is done and when they made a local checkpoint;
//! checkpoint uploads run on an upload thread, which tells the poll thread
//! how each ended.
//!
//! ## Checkpoints (per partition, no cross-partition alignment)
//! 1. Every checkpoint interval the poll thread sends barrier `n` to each
//!    partition with no checkpoint in flight. Its position is the offset of
//!    the first record not yet handed to the actor.
//! 2. The actor writes its state, timers and watermark, makes a local
//!    RocksDB checkpoint and tells the poll thread, which hands it to the
//!    upload thread if the assignment is still live. Every output the
//!    actor emitted before the barrier was already given to the producer.
//! 3. The upload thread waits until the producer has every record given to
//!    it so far acknowledged ([`KafkaSink::commit`]), uploads the new files
//!    under the partition's area in the snapshot store and writes the
//!    manifest.
//! 4. The poll thread then commits the position as the group's offset.
//!
//! The checkpoint, not the committed offset, is the truth on restore: a
//! partition without a checkpoint reads from the log start.
//!
//! ## Rebalances
//! - **Revoke**: queued records of the partition are dropped (the next
//!   owner reads them again), a final barrier is sent, and the callback
//!   waits (up to [`KafkaSettings::revoke_deadline`]) for that checkpoint,
//!   commits its offset and stops the actor. Partitions whose assignment was
//!   *lost* (this worker was expelled) are dropped without a checkpoint:
//!   another worker may own them already.
//! - **Assign**: each new partition is restored from its newest usable
//!   checkpoint (in parallel, one thread per partition), its actor started,
//!   and the partition assigned at the checkpoint's offset (no checkpoint:
//!   the log start, never the committed offset, see [`start_at`]). With the
//!   cooperative protocol only moved partitions are touched; the others
//!   keep running.
//!
//! Outputs are at-least-once: after a crash the records since the last
//! checkpoint are read again and their outputs produced again.
//!
//! [`KafkaSink::commit`]: super::sink::KafkaSink::commit

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ractor::ActorRef;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use weir_actors::runtime::{InputBatch, PartitionMsg};
use weir_actors::{Clock, DeadLetter, Processor};
use weir_state::{SnapshotStore, StateEnv};

use super::consumer::GroupContext;
use super::group::{Action, Group};
use super::lag::{LagHandle, Progress};
use super::settings::{KafkaSettings, RecordKey};
use super::upload::{Inbox, KafkaOutlet, Live, Upload};
use super::watch::{Skip, Watch};
use crate::lock;
use crate::runtime::{Decode, Settings, decode_checked, too_large};
use crate::telemetry::{Advance, BatchDone, Metrics};

mod assign;
mod pending;
mod watch_inputs;

use pending::{Pending, Processed};
use watch_inputs::log_start;

/// The running side of one owned partition.
struct Running<K, V> {
    generation: u64,
    actor: ActorRef<PartitionMsg<K, V>>,
    handle: tokio::task::JoinHandle<()>,
    progress: Arc<Progress>,
    watch: Watch,
}

/// Everything the poll thread and its rebalance callbacks share.
pub(super) struct Worker<P: Processor> {
    /// What it was started with.
    pub(super) parts: Parts<P>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) group: Group<Pending<P::Key, P::In>>,
    running: BTreeMap<i32, Running<P::Key, P::In>>,
    pub(super) inbox: mpsc::Receiver<Inbox>,
    /// The consumer's last error and when it came, for stall messages.
    pub(super) last_error: Option<(Instant, String)>,
}

/// The parts a worker starts from.
pub(super) struct Parts<P: Processor> {
    pub(super) settings: Settings,
    pub(super) kafka: KafkaSettings,
    pub(super) env: StateEnv,
    pub(super) processor: Arc<P>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) decoder: Arc<dyn Decode<P::Key, P::In>>,
    pub(super) outlet: Arc<KafkaOutlet<P::Key, P::Out>>,
    pub(super) store: Arc<dyn SnapshotStore>,
    pub(super) job_id: String,
    pub(super) local_dir: PathBuf,
    pub(super) lag: LagHandle,
    pub(super) metrics: Metrics,
    pub(super) live: Live,
    /// The running partitions' actors, for state queries.
    pub(super) actors: crate::job::query::Actors<P::Key, P::In>,
    /// The poll thread's inbox, for actors and the upload thread.
    pub(super) inbox: mpsc::Sender<Inbox>,
    pub(super) uploads: mpsc::Sender<Upload>,
    pub(super) joined: Instant,
}

type Kc<P> = BaseConsumer<GroupContext<P>>;

impl<P: Processor> Worker<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    pub(super) fn new(p: Parts<P>, inbox: mpsc::Receiver<Inbox>) -> Self {
        let limits = super::group::Limits {
            max_batch: p.kafka.max_batch,
            max_buffered: p.kafka.max_buffered,
            credits: p.settings.batch_credits,
            reacquire_after: REACQUIRE_AFTER,
        };
        Self {
            parts: p,
            group: Group::new(limits),
            running: BTreeMap::new(),
            runtime: tokio::runtime::Handle::current(),
            inbox,
            last_error: None,
        }
    }

    pub(super) fn tpl(&self, partitions: impl IntoIterator<Item = i32>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.parts.kafka.input_topic, p);
        }
        tpl
    }

    /// Why the worker must stop, if it must.
    pub(super) fn failure(&self) -> Option<String> {
        let own = self.group.failure().map(str::to_string);
        own.or_else(|| self.parts.outlet.failure())
    }

    /// Decodes and queues one consumed record for its partition.
    pub(super) fn route(&mut self, partition: i32, offset: i64, payload: Option<&[u8]>) {
        let Some(r) = self.running.get_mut(&partition) else {
            return;
        };
        r.watch.read_any = true;
        let max = self.parts.settings.max_record_bytes;
        let (item, dead) = match payload {
            None => (None, Some((Vec::new(), "record has no value".to_string()))),
            Some(bytes) if bytes.len() > max => {
                (None, Some(too_large(bytes, bytes.len() as u64, max)))
            }
            Some(bytes) => match decode_checked(&*self.parts.decoder, bytes) {
                Ok(d) => (Some((d, bytes)), None),
                Err(reason) => (None, Some((bytes.to_vec(), reason))),
            },
        };
        if !self.group.record(partition, offset, item) {
            return;
        }
        if let Some((raw, reason)) = dead {
            if let Some(r) = self.running.get(&partition) {
                r.progress.m.read(1, 1);
            }
            self.parts.outlet.send_dead_letters(&[DeadLetter {
                partition: Some(partition as u32),
                position: Some(offset as u64),
                raw,
                reason,
            }]);
        }
    }

    /// Takes in what the actors and the upload thread said, without
    /// waiting.
    pub(super) fn drain_inbox(&mut self) {
        while let Ok(m) = self.inbox.try_recv() {
            self.take(m);
        }
    }

    fn take(&mut self, m: Inbox) {
        match m {
            Inbox::BatchDone(p, g) => self.group.batch_done(p, g),
            Inbox::Checkpointed(u) => {
                let cp = &u.checkpoint;
                if self
                    .group
                    .checkpointed(cp.partition as i32, u.generation, cp.id)
                {
                    let _ = self.parts.uploads.send(u);
                } else {
                    let _ = std::fs::remove_dir_all(&cp.dir);
                }
            }
            Inbox::Done(d) => self.group.done(d),
        }
    }

    /// Housekeeping once per poll round, then the actions it decided.
    pub(super) fn tick(&mut self, consumer: &Kc<P>, checkpoint: bool) {
        self.group.tick(Instant::now(), checkpoint);
        self.perform(consumer);
    }

    /// Performs the state machine's actions.
    pub(super) fn perform(&mut self, consumer: &Kc<P>) {
        for action in self.group.actions() {
            match action {
                Action::Deliver {
                    partition,
                    generation,
                    batch,
                    end,
                } => self.deliver(partition, generation, batch, end),
                Action::Barrier {
                    partition,
                    generation,
                    id,
                    position,
                } => {
                    let Some(r) = self.running.get(&partition) else {
                        continue;
                    };
                    debug_assert_eq!(r.generation, generation);
                    let barrier = PartitionMsg::Barrier {
                        id,
                        position: position as u64,
                    };
                    if let Err(e) = r.actor.cast(barrier) {
                        self.group
                            .fail(format!("partition {partition} is gone: {e}"));
                    }
                }
                Action::NothingToCheckpoint { partition } => {
                    if let Some(r) = self.running.get(&partition) {
                        r.progress.m.nothing_to_checkpoint();
                    }
                }
                Action::Skipped {
                    partition,
                    from,
                    to,
                } => {
                    let low = log_start(consumer, &self.parts.kafka.input_topic, partition);
                    self.skipped(partition, Skip::of(low, from), from, to);
                }
                Action::CaughtUp { partition, offset } => {
                    if let Some(r) = self.running.get(&partition) {
                        r.progress.m.processed.fetch_max(offset, Ordering::Relaxed);
                    }
                }
                Action::Pause(ps) => {
                    if let Err(e) = consumer.pause(&self.tpl(ps)) {
                        tracing::warn!(error = %e, "pausing partitions failed");
                    }
                }
                Action::Resume(ps) => {
                    if let Err(e) = consumer.resume(&self.tpl(ps)) {
                        tracing::warn!(error = %e, "resuming partitions failed");
                    }
                }
                Action::Stop {
                    partition,
                    generation,
                    lost,
                } => self.stop(partition, generation, lost),
                Action::Reacquire(ps) => self.reacquire(consumer, &ps),
            }
        }
    }

    fn deliver(&mut self, p: i32, generation: u64, batch: InputBatch<P::Key, P::In>, end: i64) {
        let Some(r) = self.running.get(&p) else {
            return;
        };
        r.progress.m.read(batch.records.len() as u64, 0);
        let guard = Processed {
            progress: Arc::clone(&r.progress),
            generation,
            inbox: self.parts.inbox.clone(),
            _done: BatchDone {
                metrics: self.parts.metrics.clone(),
                partition: Arc::clone(&r.progress.m),
                since: Instant::now(),
                advance: Advance::To(end),
            },
        };
        if let Err(e) = r
            .actor
            .cast(PartitionMsg::Batch(batch, Some(Box::new(guard))))
        {
            self.group.fail(format!("partition {p} is gone: {e}"));
        }
    }

    fn stop(&mut self, p: i32, generation: u64, lost: bool) {
        let Some(r) = self.running.remove(&p) else {
            return;
        };
        debug_assert_eq!(r.generation, generation);
        lock(&self.parts.live).remove(&p);
        lock(&self.parts.lag.0).remove(&p);
        lock(&self.parts.actors).remove(&(p as u32));
        r.actor.stop(None);
        let _ = self.runtime.block_on(r.handle);
        self.parts.metrics.set_owned(p as u32, None);
        tracing::info!(partition = p, lost, "partition released");
    }

    /// Commits the positions of completed checkpoints.
    pub(super) fn commit(&mut self, consumer: &Kc<P>, mode: CommitMode) {
        let offsets = self.group.take_commit();
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &(p, offset) in &offsets {
            // Only an invalid offset is refused; checkpoint positions are not.
            let _ =
                tpl.add_partition_offset(&self.parts.kafka.input_topic, p, Offset::Offset(offset));
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                self.group.committed(&offsets);
                for (p, offset) in offsets {
                    if let Some(r) = self.running.get(&p) {
                        r.progress.m.committed.fetch_max(offset, Ordering::Relaxed);
                    }
                }
            }
            // The checkpoint holds the position; a later commit catches up.
            Err(e) => tracing::warn!(error = %e, "committing offsets failed"),
        }
    }

    /// Final checkpoints for `partitions` (unless `lost`), offsets
    /// committed, actors stopped.
    pub(super) fn revoke(&mut self, consumer: &Kc<P>, partitions: &[i32], lost: bool) {
        let deadline = Instant::now() + self.parts.kafka.revoke_deadline;
        let healthy = !lost && self.failure().is_none();
        let mut waiting = self.group.revoke(partitions, healthy);
        for (&p, &id) in &waiting {
            let position = self.group.view(p).and_then(|v| v.next_offset);
            tracing::info!(
                partition = p,
                checkpoint = id,
                position = position.unwrap_or(-1),
                "final checkpoint"
            );
        }
        self.perform(consumer);
        loop {
            waiting.retain(|&p, &mut id| self.group.awaits(p, id));
            if waiting.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok(m) => {
                    self.take(m);
                    self.perform(consumer);
                }
                Err(_) => {
                    tracing::warn!(
                        partitions = ?waiting.keys().collect::<Vec<_>>(),
                        "final checkpoints not complete within the revoke deadline; the next owner replays from an earlier one"
                    );
                    break;
                }
            }
        }
        if healthy && self.parts.outlet.failure().is_none() {
            self.commit(consumer, CommitMode::Sync);
        }
        self.group.release(partitions, lost);
        self.perform(consumer);
    }

    /// Releases every owned partition: with final checkpoints, unless
    /// `lost` (then, as after a failure, without).
    pub(super) fn release_all(&mut self, consumer: &Kc<P>, lost: bool) {
        let all: Vec<i32> = self.group.owned().collect();
        self.revoke(consumer, &all, lost);
    }

    /// Takes back partitions released because another worker took over
    /// their checkpoints, if the group still gives them to this worker
    /// (the other owner's claim was the stale one, or the group handed
    /// them back without telling): a new owner epoch, a restore of the
    /// newest checkpoint, and a seek to its position.
    fn reacquire(&mut self, consumer: &Kc<P>, due: &[i32]) {
        let assigned = consumer.assignment().unwrap_or_default();
        let mine: Vec<i32> = due
            .iter()
            .copied()
            .filter(|&p| {
                assigned
                    .find_partition(&self.parts.kafka.input_topic, p)
                    .is_some()
            })
            .collect();
        if mine.is_empty() {
            return;
        }
        tracing::warn!(partitions = ?mine, "the group still assigns partitions whose checkpoints another worker took over; taking them back");
        // A pause for backlog outlives the release; the new owner starts
        // unpaused.
        if let Err(e) = consumer.resume(&self.tpl(mine.iter().copied())) {
            tracing::warn!(error = %e, "resuming partitions taken back failed");
        }
        for (p, offset) in self.assign(&mine) {
            if let Err(e) = consumer.seek(
                &self.parts.kafka.input_topic,
                p,
                offset,
                Duration::from_secs(10),
            ) {
                self.group
                    .fail(format!("partition {p}: seeking to {offset:?}: {e}"));
            }
        }
    }
}

impl<P: Processor> Drop for Worker<P> {
    /// However the worker ends (a panic included), its actors stop.
    fn drop(&mut self) {
        for r in self.running.values() {
            r.actor.stop(None);
        }
    }
}

/// How long a partition released because another worker took over its
/// checkpoints waits for the group to take it away (a stale member learns
/// that within a session timeout) before this worker takes it back.
const REACQUIRE_AFTER: Duration = Duration::from_secs(20);
