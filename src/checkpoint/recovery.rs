//! Recovery: restoring the newest usable checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_state::owner;
use weir_state::snapshot::{
    Choice, PartitionSnapshot, choose_checkpoint, list_checkpoints, load_manifest,
    restore_partition_with,
};
use weir_state::{Manifest, SnapshotStore, StateEnv};

use super::{CheckpointSettings, Owner, job_area, look_around};
use crate::telemetry::Metrics;
use crate::{Error, Result};

/// What recovery found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// The restored checkpoint, if any.
    pub manifest: Option<Manifest>,
    /// Checkpoints skipped, with reasons.
    pub skipped: Vec<(u64, String)>,
    /// Bytes restored.
    pub bytes: u64,
    /// The highest checkpoint id in the store (new ones are numbered after).
    pub highest: u64,
    pub elapsed: Duration,
}

impl Recovery {
    /// The input position to resume from.
    pub fn position(&self) -> u64 {
        self.manifest
            .as_ref()
            .and_then(|m| m.partitions.iter().map(|p| p.position).min())
            .unwrap_or(0)
    }

    /// A sink's recorded length (0 on a fresh start).
    pub fn sink_len(&self, name: &str) -> u64 {
        self.manifest
            .as_ref()
            .and_then(|m| m.sinks.get(name).copied())
            .unwrap_or(0)
    }

    /// The id of the restored checkpoint (0 on a fresh start).
    pub fn checkpoint_id(&self) -> u64 {
        self.manifest.as_ref().map_or(0, |m| m.checkpoint_id)
    }
}

/// Takes the job's checkpoint area and restores its newest usable
/// checkpoint into the partitions' directories, or empties them when there
/// is none. Returns the area, its owner and what was restored.
pub(crate) fn recover(
    settings: &CheckpointSettings,
    job_id: &str,
    env: &StateEnv,
    partitions: u32,
    metrics: &Metrics,
) -> Result<(Arc<dyn SnapshotStore>, Owner, Recovery)> {
    let area: Arc<dyn SnapshotStore> = Arc::new(job_area(&settings.store, job_id));
    let all: Vec<u32> = (0..partitions).collect();
    let (owner, recovery) =
        take_and_restore(settings, area.as_ref(), job_id, "", env, &all, metrics)?;
    Ok((area, owner, recovery))
}

/// Takes `area` for `job_id` and restores its newest usable checkpoint of
/// `partitions`. An area without checkpoints is first looked around
/// ([`look_around`], with the pre-job-id place `legacy`), before it is
/// taken, so a refusal leaves nothing behind. File mode calls this once for
/// the job, Kafka mode once per assigned partition.
pub(crate) fn take_and_restore(
    settings: &CheckpointSettings,
    area: &dyn SnapshotStore,
    job_id: &str,
    legacy: &str,
    env: &StateEnv,
    partitions: &[u32],
    metrics: &Metrics,
) -> Result<(Owner, Recovery)> {
    if list_checkpoints(area)?.is_empty() {
        look_around(
            settings.store.as_ref(),
            job_id,
            legacy,
            settings.start_empty,
        )?;
    }
    let owner = Owner::take(area, job_id, settings)?;
    let recovery = restore_newest(area, job_id, env, partitions, settings.start_empty, metrics)?;
    Ok((owner, recovery))
}

/// The newest checkpoint of `store` that its owners allow (what a
/// superseded owner wrote late is never a candidate), that belongs to
/// `job_id`, holds exactly `expected` partitions (when given), and whose
/// every partition `restore` restores: restoring is the check (it verifies
/// every checksum), so candidates are tried one at a time, newest first.
/// Also returns the highest checkpoint id in the store.
pub(crate) fn newest_usable(
    store: &dyn SnapshotStore,
    job_id: &str,
    expected: Option<&[u32]>,
    restore: &mut dyn FnMut(&PartitionSnapshot) -> Result<u64>,
) -> Result<(Choice<(Manifest, u64)>, u64)> {
    let ids = list_checkpoints(store)?;
    let highest = ids.last().copied().unwrap_or(0);
    // Tests check that the kill tests catch a job that never restores
    // (`recovery-disabled=return`): it sees no checkpoint at all.
    #[cfg(feature = "failpoints")]
    let ids = match fail::eval("recovery-disabled", |_| ()) {
        Some(()) => Vec::new(),
        None => ids,
    };
    let split = owner::eligibility(&ids, &owner::load_epochs(store)?);
    for (id, why) in &split.excluded {
        tracing::warn!(checkpoint = id, reason = %why, store = %store.describe(), "ignored a checkpoint of a superseded owner");
    }
    let choice = choose_checkpoint(&split.eligible, |id| -> Result<(Manifest, u64)> {
        let m = load_manifest(store, id)?;
        if let Some(other) = m.job_id.as_deref().filter(|j| *j != job_id) {
            return Err(Error::Config(format!(
                "checkpoint {id} belongs to job {other}, not {job_id}"
            )));
        }
        let found: Vec<u32> = m.partitions.iter().map(|p| p.partition).collect();
        if let Some(expected) = expected.filter(|e| **e != found) {
            return Err(Error::Config(format!(
                "checkpoint {id} holds partitions {found:?}, expected {expected:?} (to change \
                 the partition count, re-shard the checkpoint first with weir checkpoints \
                 reshard)"
            )));
        }
        let _span = tracing::info_span!("restore", checkpoint = id, partitions = ?found).entered();
        let mut bytes = 0;
        for part in &m.partitions {
            bytes += restore(part)?;
        }
        Ok((m, bytes))
    });
    for (id, reason) in &choice.skipped {
        tracing::warn!(checkpoint = id, %reason, store = %store.describe(), "skipped a broken checkpoint");
    }
    Ok((choice, highest))
}

/// Why the checkpoints in `skipped` were skipped, as ` (checkpoint N:
/// reason; ...)`, or nothing when none was.
pub(crate) fn skipped_reasons(skipped: &[(u64, String)]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let reasons: Vec<String> = skipped
        .iter()
        .map(|(id, r)| format!("checkpoint {id}: {r}"))
        .collect();
    format!(" ({})", reasons.join("; "))
}

/// Restores the newest usable checkpoint of `store`, which must hold
/// exactly `partitions`, into their directories; empties them when there is
/// none. With checkpoints present but none usable this is an error unless
/// `start_empty`.
fn restore_newest(
    store: &dyn SnapshotStore,
    job_id: &str,
    env: &StateEnv,
    partitions: &[u32],
    start_empty: bool,
    metrics: &Metrics,
) -> Result<Recovery> {
    let started = Instant::now();
    // The partitions were marked restoring when they were taken over.
    let progress: Vec<_> = partitions.iter().map(|&p| metrics.partition(p)).collect();
    let (choice, highest) = newest_usable(store, job_id, Some(partitions), &mut |part| {
        // The partitions were checked against `partitions` already.
        let Some(pm) = partitions
            .iter()
            .position(|&p| p == part.partition)
            .map(|i| &progress[i])
        else {
            return Err(Error::Failed(format!(
                "partition {} was not expected",
                part.partition
            )));
        };
        pm.restore_size(part.files.iter().map(|f| f.size).sum());
        // Tests slow restores down here (`restore-partition=sleep(ms)`).
        fail::fail_point!("restore-partition");
        let dir = env.partition_dir(part.partition);
        Ok(restore_partition_with(store, part, &dir, &mut |b| {
            pm.restore_progress(b)
        })?)
    })?;
    let skipped = choice.skipped;
    if let Some((id, (manifest, bytes))) = choice.chosen {
        tracing::info!(checkpoint = id, bytes, store = %store.describe(), "restored checkpoint");
        return Ok(Recovery {
            manifest: Some(manifest),
            skipped,
            bytes,
            highest,
            elapsed: started.elapsed(),
        });
    }
    if !skipped.is_empty() && !start_empty {
        return Err(Error::Failed(format!(
            "no usable checkpoint in {}{}; start with empty state only if that is acceptable \
             (--start-empty)",
            store.describe(),
            skipped_reasons(&skipped)
        )));
    }
    for &p in partitions {
        env.reset_partition(p)?;
    }
    Ok(Recovery {
        manifest: None,
        skipped,
        bytes: 0,
        highest,
        elapsed: started.elapsed(),
    })
}
