//! Taking partitions on: a restore per partition (in parallel), an actor,
//! and the offset to read from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use rdkafka::Offset;
use serde::Serialize;
use weir_actors::Processor;
use weir_actors::runtime::Outlet;
use weir_state::{SnapshotStore, StateEnv};

use super::super::lag::Progress;
use super::super::settings::RecordKey;
use super::super::upload::{Assigned, partition_area, partition_store};
use super::super::watch::Watch;
use super::{Running, Worker};
use crate::checkpoint::{CheckpointSettings, Owner, Recovery, take_and_restore};
use crate::runtime::spawn_partition;
use crate::telemetry::{Metrics, PartitionMetrics};
use crate::{Error, Result, lock};

impl<P: Processor> Worker<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    /// Restores `partitions` (in parallel), starts their actors and returns
    /// the offsets to start from. A partition this worker owns already (a
    /// group may hand one out twice) is left as it is.
    pub(in super::super) fn assign(&mut self, partitions: &[i32]) -> BTreeMap<i32, Offset> {
        let started = Instant::now();
        let partitions: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|&p| {
                let owned = self.group.owns(p);
                if owned {
                    tracing::warn!(
                        partition = p,
                        "assigned a partition this worker owns already; keeping it as it is"
                    );
                }
                !owned
            })
            .collect();
        // Owned (and restoring, so not ready) from now on.
        let progress: BTreeMap<i32, Arc<PartitionMetrics>> = partitions
            .iter()
            .map(|&p| {
                let dir = self.parts.env.partition_dir(p as u32);
                (p, self.parts.metrics.set_owned(p as u32, Some(dir)))
            })
            .collect();
        let mut offsets = BTreeMap::new();
        for (p, r) in self.restore(&partitions) {
            match r {
                Ok((recovery, owner)) => {
                    let offset = self.start(p, recovery, owner, &progress[&p], started);
                    if let Some(offset) = offset {
                        offsets.insert(p, offset);
                    }
                }
                Err(e) => self.group.fail(format!("restoring partition {p}: {e}")),
            }
        }
        offsets
    }

    /// Each partition's newest usable checkpoint, restored in parallel
    /// after taking a new owner epoch.
    fn restore(&self, partitions: &[i32]) -> Vec<(i32, Result<(Recovery, Owner)>)> {
        let on = Restore {
            checkpoints: self.parts.settings.checkpoints.as_ref(),
            store: &self.parts.store,
            job_id: &self.parts.job_id,
            topic: &self.parts.kafka.input_topic,
            env: &self.parts.env,
            metrics: &self.parts.metrics,
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = partitions
                .iter()
                .map(|&p| (p, s.spawn(move || on.partition(p))))
                .collect();
            handles
                .into_iter()
                .map(|(p, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err(Error::Failed("restore thread panicked".into())));
                    (p, r)
                })
                .collect()
        })
    }

    /// Starts partition `p`'s actor on its restored state; returns where
    /// to read from (`None` when it could not start: the worker fails).
    fn start(
        &mut self,
        p: i32,
        recovery: Recovery,
        owner: Owner,
        metrics: &Arc<PartitionMetrics>,
        started: Instant,
    ) -> Option<Offset> {
        let position = recovery
            .manifest
            .as_ref()
            .and_then(|m| m.partitions.first())
            .map(|s| s.position as i64);
        let first_id = owner.first_id();
        let generation = self.group.assigned(p, position, first_id);
        let outlet = Arc::new(Assigned {
            shared: Arc::clone(&self.parts.outlet),
            generation,
            owner: Arc::new(owner),
            inbox: self.parts.inbox.clone(),
        });
        // Each assignment makes its local checkpoints in a folder of its
        // own.
        let local_dir = self.parts.local_dir.join(format!("g{generation}"));
        let spawned = self.runtime.block_on(spawn_partition(
            &self.parts.processor,
            &self.parts.env,
            &self.parts.settings,
            p as u32,
            &self.parts.clock,
            outlet as Arc<dyn Outlet<P::Key, P::Out>>,
            &local_dir,
            metrics,
        ));
        let (actor, handle) = match spawned {
            Ok(s) => s,
            Err(e) => {
                self.group.fail(format!("starting partition {p}: {e}"));
                self.group.release(&[p], true);
                return None;
            }
        };
        // The restored checkpoint covers the input before its position.
        metrics
            .processed
            .store(position.unwrap_or(-1), Ordering::Relaxed);
        metrics
            .committed
            .store(position.unwrap_or(-1), Ordering::Relaxed);
        let progress = Arc::new(Progress {
            partition: p,
            m: Arc::clone(metrics),
            fetched: AtomicI64::new(-1),
            low: AtomicI64::new(-1),
            end: AtomicI64::new(-1),
            first_done: AtomicBool::new(false),
            joined: self.parts.joined,
            restored: position.is_some(),
            first_restored_ms: Arc::clone(&self.parts.lag.1),
        });
        lock(&self.parts.lag.0).insert(p, Arc::clone(&progress));
        lock(&self.parts.live).insert(p, generation);
        lock(&self.parts.actors).insert(p as u32, actor.clone());
        tracing::info!(
            partition = p,
            checkpoint = recovery.checkpoint_id(),
            position = position.unwrap_or(-1),
            bytes = recovery.bytes,
            restore_ms = started.elapsed().as_millis() as u64,
            "partition assigned"
        );
        self.running.insert(
            p,
            Running {
                generation,
                actor,
                handle,
                progress,
                watch: Watch::new(Instant::now()),
            },
        );
        Some(start_at(p, position, &recovery, first_id))
    }
}

/// Where a newly assigned partition starts reading: at its checkpoint's
/// position; without one, at the log's start, never at the group's
/// committed offset. A committed offset without a checkpoint to go with it
/// (the job id or the store changed, the checkpoints were damaged or
/// written by a superseded owner) would mean reading on with empty state,
/// losing what came before; reading from the start rebuilds the state.
pub(in super::super) fn start_at(
    partition: i32,
    position: Option<i64>,
    recovery: &Recovery,
    first_id: u64,
) -> Offset {
    if let Some(offset) = position {
        return Offset::Offset(offset);
    }
    if recovery.highest > 0 || weir_state::owner::epoch_of(first_id) > 1 {
        tracing::warn!(
            partition,
            highest_checkpoint = recovery.highest,
            "no checkpoint restored for a partition that had owners before: reading it from the log start to rebuild its state"
        );
    }
    Offset::Beginning
}

/// What a restore thread needs of the worker.
#[derive(Clone, Copy)]
struct Restore<'a> {
    checkpoints: Option<&'a CheckpointSettings>,
    store: &'a Arc<dyn SnapshotStore>,
    job_id: &'a str,
    topic: &'a str,
    env: &'a StateEnv,
    metrics: &'a Metrics,
}

impl Restore<'_> {
    /// Takes a new owner epoch for partition `p` and restores its newest
    /// usable checkpoint.
    fn partition(self, p: i32) -> Result<(Recovery, Owner)> {
        let checkpoints = self
            .checkpoints
            .ok_or_else(|| Error::Config("Kafka mode needs checkpoints".into()))?;
        let store = partition_store(self.store, self.job_id, self.topic, p);
        let legacy = partition_area(self.topic, p);
        let (owner, recovery) = take_and_restore(
            checkpoints,
            &store,
            self.job_id,
            &legacy,
            self.env,
            &[p as u32],
            self.metrics,
        )?;
        Ok((recovery, owner))
    }
}
