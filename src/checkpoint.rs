//! Checkpoints: the coordinator, completion tracking, background upload and
//! recovery.
//!
//! ## Protocol (aligned barriers)
//! 1. The coordinator asks for checkpoint `n` (on an interval, on demand,
//!    at shutdown or at the end of input). The feed thread injects barrier
//!    `n` after the chunk it just routed, into every partition's mailbox and
//!    into the sinks' dead-letter input, with the input position right
//!    after that chunk.
//! 2. Each partition, having processed every record before the barrier,
//!    writes its dirty state, position and watermark, snapshots RocksDB
//!    (hard links) into a local directory, then passes the barrier to the
//!    sinks and reports its part. It goes on processing at once.
//! 3. The sinks align the barrier across all their inputs (partitions and
//!    the feed): outputs a partition sends after its barrier are held back
//!    until every input delivered it. Then the file sinks are flushed and
//!    fsynced and their lengths recorded: exactly the outputs before the
//!    barrier.
//! 4. When every partition's part and the sink lengths are in, the upload
//!    thread copies new files to the snapshot store, writes the manifest
//!    last, prunes old checkpoints and deletes the local directories.
//!
//! ## Ownership
//! A job's checkpoints live under `jobs/<job-id>/` in the store, and a
//! writer takes an owner epoch ([`weir_state::owner`]) before it restores
//! or writes: its checkpoint ids carry the epoch, it stops writing once a
//! newer owner took over, and restores skip what a superseded owner wrote
//! late.
//!
//! ## Recovery
//! The newest eligible checkpoint whose manifest loads and whose files are present
//! and pass their checksums is restored into the partitions' directories;
//! the source seeks to its position; file sinks are cut back to their
//! recorded lengths. Broken checkpoints are skipped with a warning. If
//! checkpoints exist but none is usable, the job stops with an error unless
//! it was told to start empty.

use std::sync::Arc;
use std::time::Duration;

use weir_actors::Clock;
use weir_actors::SystemClock;
use weir_state::owner;
use weir_state::{LocalDirStore, Prefixed, SnapshotStore};

use crate::{Error, Result};

mod coordinator;
mod recovery;
pub mod reshard;

pub(crate) use coordinator::{Coordinator, Ready, upload};
pub use recovery::Recovery;
pub(crate) use recovery::{newest_usable, recover, skipped_reasons, take_and_restore};

/// Sink names in manifests.
pub const OUTPUT_SINK: &str = "output";
/// Sink names in manifests.
pub const DEAD_LETTER_SINK: &str = "dead_letters";

/// How a job checkpoints.
#[derive(Clone)]
pub struct CheckpointSettings {
    /// Where checkpoints are kept.
    pub store: Arc<dyn SnapshotStore>,
    /// Time between checkpoints (`None`: only at shutdown, at the end of
    /// input and on demand).
    pub interval: Option<Duration>,
    /// Complete checkpoints kept in the store.
    pub retain: usize,
    /// When checkpoints exist but none is usable, start from empty state
    /// instead of stopping with an error.
    pub start_empty: bool,
    /// The job the checkpoints belong to: they live under `jobs/<id>/` in
    /// the store. `None`: Kafka mode uses the group id; file mode uses the
    /// id recorded in the state directory, or derives one from the input
    /// and the processor and records it.
    pub job_id: Option<String>,
    /// Pruning leaves unreferenced objects younger than this alone, so an
    /// upload in progress (of this writer or a superseded one) keeps its
    /// files.
    pub prune_grace: Duration,
}

impl CheckpointSettings {
    /// Checkpoints to `store` every 10 s, 3 kept, job id as described at
    /// [`job_id`](Self::job_id).
    pub fn new(store: Arc<dyn SnapshotStore>) -> Self {
        Self {
            store,
            interval: Some(Duration::from_secs(10)),
            retain: 3,
            start_empty: false,
            job_id: None,
            prune_grace: owner::DEFAULT_PRUNE_GRACE,
        }
    }
}

/// Who writes a checkpoint area, and how it prunes.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub(crate) job_id: String,
    pub(crate) epoch: u64,
    pub(crate) retain: usize,
    pub(crate) grace: Duration,
}

impl Owner {
    /// Takes the next owner epoch of `area` for `job_id`.
    pub(crate) fn take(
        area: &dyn SnapshotStore,
        job_id: &str,
        settings: &CheckpointSettings,
    ) -> Result<Self> {
        let who = format!(
            "{}/{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
            std::process::id()
        );
        let epoch = owner::take(area, job_id, &who, SystemClock.now_ms())?;
        tracing::info!(store = %area.describe(), epoch = epoch.epoch, sealed = epoch.sealed, "took the checkpoint area");
        Ok(Self {
            job_id: job_id.to_string(),
            epoch: epoch.epoch,
            retain: settings.retain.max(1),
            grace: settings.prune_grace,
        })
    }

    /// The id of this owner's first checkpoint.
    pub(crate) fn first_id(&self) -> u64 {
        owner::checkpoint_id(self.epoch, 1)
    }
}

/// The area of a job in file mode: `jobs/<job>/`.
pub(crate) fn job_area(root: &Arc<dyn SnapshotStore>, job_id: &str) -> Prefixed {
    Prefixed::new(Arc::clone(root), &owner::job_prefix(job_id))
}

/// Whether `e` says another owner took over.
pub(crate) fn is_fenced(e: &Error) -> bool {
    matches!(e, Error::State(weir_state::Error::Fenced { .. }))
}

/// Before a job starts without checkpoints of its own: refuses to go on
/// when `root` holds checkpoints written before job ids at `legacy` (they
/// may be this job's: moving them under `jobs/<job>/` keeps them), unless
/// `start_empty`; says which other jobs the store holds.
fn look_around(
    root: &dyn SnapshotStore,
    job_id: &str,
    legacy: &str,
    start_empty: bool,
) -> Result<()> {
    let old = if legacy.is_empty() {
        "checkpoints/".to_string()
    } else {
        format!("{legacy}/checkpoints/")
    };
    if root
        .list(&old)?
        .iter()
        .any(|k| k.ends_with("/MANIFEST.json"))
    {
        let here = if legacy.is_empty() {
            "its root"
        } else {
            legacy
        };
        let msg = format!(
            "{} holds checkpoints at {here} written before checkpoints had job ids; they may be \
             this job's: move that folder to jobs/{job_id}/{legacy} in the store to keep them, or \
             pass --start-empty to start without them",
            root.describe()
        );
        if !start_empty {
            return Err(Error::Config(msg));
        }
        tracing::warn!("{msg} (starting empty)");
    }
    let mut others: Vec<String> = root
        .list("jobs/")?
        .iter()
        .filter(|k| k.ends_with("/MANIFEST.json"))
        .filter_map(|k| {
            k.strip_prefix("jobs/")?
                .split('/')
                .next()
                .map(str::to_string)
        })
        .filter(|j| j != job_id)
        .collect();
    others.dedup();
    if !others.is_empty() {
        tracing::info!(
            job = job_id,
            other_jobs = ?others,
            store = %root.describe(),
            "the store holds checkpoints of other jobs only; this job starts without one"
        );
    }
    Ok(())
}

impl std::fmt::Debug for CheckpointSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSettings")
            .field("store", &self.store.describe())
            .field("interval", &self.interval)
            .field("retain", &self.retain)
            .field("start_empty", &self.start_empty)
            .finish()
    }
}

/// Opens a snapshot store from a URL: a path or `file://` URL is a local
/// directory; `s3://bucket/prefix` is S3 or an S3-compatible server
/// (configured by the `AWS_*` environment variables, see
/// [`weir_state::ObjectStorage`]).
pub fn open_store(url: &str) -> Result<Arc<dyn SnapshotStore>> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Arc::new(LocalDirStore::new(path)?));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(weir_state::ObjectStorage::s3(url)?));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(Error::Config(format!(
            "unsupported checkpoint store scheme '{scheme}' in {url} (use a directory path, file:// or s3://)"
        )));
    }
    Ok(Arc::new(LocalDirStore::new(url)?))
}

/// The state of checkpointing, as the job sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Highest checkpoint id started.
    pub started: u64,
    /// Highest checkpoint id finished (completed or failed).
    pub finished: u64,
    /// Highest checkpoint id completed (manifest written).
    pub completed: u64,
    /// Checkpoints completed by this run.
    pub count: u64,
    /// Checkpoints that failed.
    pub failures: u64,
    /// Why the last failure happened.
    pub last_error: Option<String>,
    /// Barrier to manifest, for the last completed checkpoint.
    pub last_duration: Duration,
    /// Bytes the last completed checkpoint references in the store.
    pub last_total_bytes: u64,
    /// Bytes the last completed checkpoint copied (the rest was reused).
    pub last_uploaded_bytes: u64,
    /// Another owner took over the job's checkpoints: why. No checkpoint
    /// is written after it, and the job stops.
    pub fenced: Option<String>,
}
