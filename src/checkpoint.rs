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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use weir_actors::Clock;
use weir_actors::SystemClock;
use weir_actors::runtime::PartitionCheckpoint;
use weir_state::owner;
use weir_state::snapshot::{
    self, MANIFEST_FORMAT_VERSION, PartitionSnapshot, Retention, UploadStats, choose_checkpoint,
    list_checkpoints, load_manifest, manifest_key, restore_partition_with,
};
use weir_state::{LocalDirStore, Manifest, Prefixed, SnapshotStore, StateEnv};

use crate::telemetry::Metrics;
use crate::{Error, Result, lock};

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

/// A checkpoint whose parts are all in, ready to upload.
pub(crate) struct Ready {
    pub(crate) id: u64,
    pub(crate) parts: Vec<PartitionCheckpoint>,
    pub(crate) sinks: BTreeMap<String, u64>,
    pub(crate) started: Instant,
}

#[derive(Default)]
struct Pending {
    parts: BTreeMap<u32, PartitionCheckpoint>,
    sinks: Option<BTreeMap<String, u64>>,
    started: Option<Instant>,
}

/// Tracks checkpoints from barrier to manifest.
pub(crate) struct Coordinator {
    partitions: u32,
    pending: Mutex<BTreeMap<u64, Pending>>,
    requested: AtomicU64,
    status: tokio::sync::watch::Sender<Status>,
    uploads: Mutex<Option<mpsc::Sender<Ready>>>,
    metrics: Metrics,
}

impl Coordinator {
    /// A coordinator numbering checkpoints in `owner`'s epoch, uploading
    /// to `store` (the job's area) on a thread of its own.
    pub(crate) fn start(
        partitions: u32,
        owner: Owner,
        store: Arc<dyn SnapshotStore>,
        metrics: &Metrics,
    ) -> Result<(Arc<Self>, std::thread::JoinHandle<()>)> {
        let last_id = owner.first_id() - 1;
        let (tx, rx) = mpsc::channel::<Ready>();
        let status = tokio::sync::watch::Sender::new(Status {
            started: last_id,
            finished: last_id,
            completed: last_id,
            ..Status::default()
        });
        let coordinator = Arc::new(Self {
            partitions,
            pending: Mutex::new(BTreeMap::new()),
            requested: AtomicU64::new(0),
            status,
            uploads: Mutex::new(Some(tx)),
            metrics: metrics.clone(),
        });
        let c = Arc::clone(&coordinator);
        let handle = std::thread::Builder::new()
            .name("weir-upload".into())
            .spawn(move || c.upload_loop(rx, store.as_ref(), &owner))
            .map_err(|e| Error::Io {
                what: "starting the upload thread".into(),
                source: e,
            })?;
        Ok((coordinator, handle))
    }

    /// Asks for a checkpoint unless one is in flight. Returns its id.
    pub(crate) fn request(&self) -> Option<u64> {
        let mut id = None;
        self.status.send_if_modified(|s| {
            if s.started > s.finished {
                return false;
            }
            s.started += 1;
            id = Some(s.started);
            true
        });
        if let Some(id) = id {
            lock(&self.pending).entry(id).or_default().started = Some(Instant::now());
            self.requested.store(id, Ordering::SeqCst);
        }
        id
    }

    /// The barrier the feed should inject now, if any; an error once
    /// another owner took over the job's checkpoints.
    pub(crate) fn take_request(&self) -> Result<Option<u64>> {
        if let Some(why) = self.status.borrow().fenced.clone() {
            return Err(Error::Failed(why));
        }
        Ok(match self.requested.swap(0, Ordering::SeqCst) {
            0 => None,
            id => Some(id),
        })
    }

    /// Current status.
    pub(crate) fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until checkpoint `id` finished; errors if it failed.
    pub(crate) async fn wait(&self, id: u64) -> Result<()> {
        let mut rx = self.status.subscribe();
        let s = rx
            .wait_for(|s| s.finished >= id)
            .await
            .map_err(|_| Error::Failed("checkpoint coordinator stopped".into()))?
            .clone();
        if s.completed >= id {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "checkpoint {id} failed: {}",
                s.last_error.unwrap_or_default()
            )))
        }
    }

    /// The job is failing: checkpoints in flight will never complete.
    /// Marks them failed so nothing waits for them.
    pub(crate) fn abandon(&self, reason: &str) {
        lock(&self.pending).clear();
        self.status.send_modify(|s| {
            if s.started > s.finished {
                self.metrics.checkpoint_failed(s.started - s.finished);
                s.failures += s.started - s.finished;
                s.finished = s.started;
                s.last_error = Some(reason.to_string());
            }
        });
    }

    /// A partition's part of a checkpoint is ready.
    pub(crate) fn partition_done(&self, cp: PartitionCheckpoint) {
        let id = cp.id;
        self.with_pending(id, |p| {
            p.parts.insert(cp.partition, cp);
        });
    }

    /// The sinks aligned barrier `id` and recorded these lengths.
    pub(crate) fn sinks_done(&self, id: u64, lengths: BTreeMap<String, u64>) {
        self.with_pending(id, |p| p.sinks = Some(lengths));
    }

    fn with_pending(&self, id: u64, f: impl FnOnce(&mut Pending)) {
        let ready = {
            let mut pending = lock(&self.pending);
            let entry = pending.entry(id).or_default();
            f(entry);
            let complete = entry.parts.len() == self.partitions as usize && entry.sinks.is_some();
            if !complete {
                return;
            }
            let p = pending.remove(&id).expect("entry exists");
            Ready {
                id,
                parts: p.parts.into_values().collect(),
                sinks: p.sinks.expect("checked above"),
                started: p.started.unwrap_or_else(Instant::now),
            }
        };
        let uploads = lock(&self.uploads);
        if let Some(tx) = uploads.as_ref() {
            let _ = tx.send(ready);
        }
    }

    /// No more checkpoints: lets the upload thread end after the queue.
    pub(crate) fn close(&self) {
        lock(&self.uploads).take();
    }

    fn upload_loop(&self, rx: mpsc::Receiver<Ready>, store: &dyn SnapshotStore, owner: &Owner) {
        let mut known = std::collections::HashMap::new();
        for ready in rx {
            let id = ready.id;
            let span = tracing::info_span!("checkpoint", checkpoint = id);
            let _enter = span.enter();
            let result = upload(store, &ready, &mut known, owner, &self.metrics);
            for part in &ready.parts {
                let _ = std::fs::remove_dir_all(&part.dir);
            }
            self.status.send_modify(|s| {
                s.finished = s.finished.max(id);
                match &result {
                    Ok(stats) => {
                        // The input a partition processed before the barrier
                        // is now covered.
                        for part in &ready.parts {
                            self.metrics
                                .partition(part.partition)
                                .committed
                                .store(part.records as i64, Ordering::Relaxed);
                        }
                        s.completed = s.completed.max(id);
                        s.count += 1;
                        s.last_duration = ready.started.elapsed();
                        s.last_uploaded_bytes = stats.uploaded_bytes;
                        s.last_total_bytes = stats.uploaded_bytes + stats.reused_bytes;
                        tracing::debug!(
                            uploaded = stats.uploaded_bytes,
                            reused = stats.reused_bytes,
                            millis = ready.started.elapsed().as_millis() as u64,
                            "checkpoint complete"
                        );
                    }
                    Err(e) => {
                        self.metrics.checkpoint_failed(1);
                        s.failures += 1;
                        s.last_error = Some(e.to_string());
                        if is_fenced(e) {
                            tracing::error!(error = %e, "checkpoint refused: another owner took over");
                            s.fenced = Some(e.to_string());
                        } else {
                            tracing::warn!(error = %e, "checkpoint failed");
                        }
                    }
                }
            });
        }
    }
}

/// Copies a checkpoint's new files to `store`, writes its manifest last,
/// then prunes. Nothing is written once `owner` was superseded
/// ([`Error::State`] with [`weir_state::Error::Fenced`]).
pub(crate) fn upload(
    store: &dyn SnapshotStore,
    ready: &Ready,
    known: &mut std::collections::HashMap<(u32, String, u64), u32>,
    owner: &Owner,
    metrics: &Metrics,
) -> Result<UploadStats> {
    weir_actors::crash_point!("checkpoint-before-upload");
    owner::check_owner(store, owner.epoch)?;
    let mut stats = UploadStats::default();
    let mut partitions = Vec::with_capacity(ready.parts.len());
    for part in &ready.parts {
        let files = snapshot::upload_partition(
            store,
            ready.id,
            part.partition,
            &part.dir,
            known,
            &mut stats,
        )?;
        partitions.push(PartitionSnapshot {
            partition: part.partition,
            position: part.position,
            watermark: part.watermark,
            files,
        });
    }
    let manifest = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        job_id: Some(owner.job_id.clone()),
        epoch: owner.epoch,
        checkpoint_id: ready.id,
        created_at_ms: SystemClock.now_ms(),
        sinks: ready.sinks.clone(),
        partitions,
    };
    weir_actors::crash_point!("checkpoint-before-manifest");
    // Tests pause a writer here while another takes over
    // (`checkpoint-before-owner-check=pause`).
    fail::fail_point!("checkpoint-before-owner-check");
    owner::check_owner(store, owner.epoch)?;
    store.put_bytes(&manifest_key(ready.id), &manifest.encode())?;
    weir_actors::crash_point!("checkpoint-before-prune");
    // The checkpoint is complete; pruning is housekeeping and a failure
    // there (an unreadable old manifest, say) must not fail it.
    for part in &manifest.partitions {
        let size = part.files.iter().map(|f| f.size).sum();
        metrics.partition(part.partition).checkpointed(size);
    }
    metrics.checkpoint_completed(ready.started);
    let keep = Retention {
        retain: owner.retain,
        grace: owner.grace,
        epoch: owner.epoch,
    };
    if let Err(e) = snapshot::prune(store, keep) {
        tracing::warn!(error = %e, "pruning old checkpoints failed");
    }
    Ok(stats)
}

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
    let ids = list_checkpoints(store)?;
    let highest = ids.last().copied().unwrap_or(0);
    // Tests check that the kill tests catch a job that never restores
    // (`recovery-disabled=return`): it sees no checkpoint at all.
    #[cfg(feature = "failpoints")]
    let ids = match fail::eval("recovery-disabled", |_| ()) {
        Some(()) => Vec::new(),
        None => ids,
    };
    // What a superseded owner wrote late is never a candidate.
    let split = owner::eligibility(&ids, &owner::load_epochs(store)?);
    for (id, why) in &split.excluded {
        tracing::warn!(checkpoint = id, reason = %why, store = %store.describe(), "ignored a checkpoint of a superseded owner");
    }
    // Restoring is the check (it verifies every checksum), so candidates
    // are tried one at a time, newest first.
    let choice = choose_checkpoint(&split.eligible, |id| -> Result<(Manifest, u64)> {
        let m = load_manifest(store, id)?;
        if let Some(other) = m.job_id.as_deref().filter(|j| *j != job_id) {
            return Err(Error::Config(format!(
                "checkpoint {id} belongs to job {other}, not {job_id}"
            )));
        }
        let found: Vec<u32> = m.partitions.iter().map(|p| p.partition).collect();
        if found != partitions {
            return Err(Error::Config(format!(
                "checkpoint {id} holds partitions {found:?}, expected {partitions:?}"
            )));
        }
        let _span =
            tracing::info_span!("restore", checkpoint = id, partitions = ?partitions).entered();
        let mut bytes = 0;
        for (part, pm) in m.partitions.iter().zip(&progress) {
            pm.restore_size(part.files.iter().map(|f| f.size).sum());
            // Tests slow restores down here (`restore-partition=sleep(ms)`).
            fail::fail_point!("restore-partition");
            let dir = env.partition_dir(part.partition);
            bytes += restore_partition_with(store, part, &dir, &mut |b| pm.restore_progress(b))?;
        }
        Ok((m, bytes))
    });
    let skipped = choice.skipped;
    for (id, reason) in &skipped {
        tracing::warn!(checkpoint = id, %reason, store = %store.describe(), "skipped a broken checkpoint");
    }
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
        let reasons: Vec<String> = skipped
            .iter()
            .map(|(id, r)| format!("checkpoint {id}: {r}"))
            .collect();
        return Err(Error::Failed(format!(
            "no usable checkpoint in {} ({}); start with empty state only if that is acceptable \
             (--start-empty)",
            store.describe(),
            reasons.join("; ")
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
