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
//! ## Recovery
//! The newest checkpoint whose manifest loads and whose files are present
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
use weir_actors::PartitionCheckpoint;
use weir_actors::SystemClock;
use weir_state::snapshot::{
    self, MANIFEST_FORMAT_VERSION, PartitionSnapshot, UploadStats, choose_checkpoint,
    list_checkpoints, load_manifest, manifest_key, restore_partition_with,
};
use weir_state::{LocalDirStore, Manifest, SnapshotStore, StateEnv};

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
    /// A coordinator numbering checkpoints after `last_id`, uploading to
    /// `store` on a thread of its own.
    pub(crate) fn start(
        partitions: u32,
        last_id: u64,
        settings: &CheckpointSettings,
        metrics: &Metrics,
    ) -> Result<(Arc<Self>, std::thread::JoinHandle<()>)> {
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
        let store = Arc::clone(&settings.store);
        let retain = settings.retain.max(1);
        let c = Arc::clone(&coordinator);
        let handle = std::thread::Builder::new()
            .name("weir-upload".into())
            .spawn(move || c.upload_loop(rx, store.as_ref(), retain))
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

    /// The barrier the feed should inject now, if any.
    pub(crate) fn take_request(&self) -> Option<u64> {
        match self.requested.swap(0, Ordering::SeqCst) {
            0 => None,
            id => Some(id),
        }
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

    fn upload_loop(&self, rx: mpsc::Receiver<Ready>, store: &dyn SnapshotStore, retain: usize) {
        let mut known = std::collections::HashMap::new();
        for ready in rx {
            let id = ready.id;
            let span = tracing::info_span!("checkpoint", checkpoint = id);
            let _enter = span.enter();
            let result = upload(store, &ready, &mut known, retain, &self.metrics);
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
                        tracing::warn!(error = %e, "checkpoint failed");
                    }
                }
            });
        }
    }
}

/// Copies a checkpoint's new files to `store`, writes its manifest last,
/// then prunes to `retain` checkpoints.
pub(crate) fn upload(
    store: &dyn SnapshotStore,
    ready: &Ready,
    known: &mut std::collections::HashMap<(u32, String, u64), u32>,
    retain: usize,
    metrics: &Metrics,
) -> Result<UploadStats> {
    weir_actors::crash_point!("checkpoint-before-upload");
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
        checkpoint_id: ready.id,
        created_at_ms: SystemClock.now_ms(),
        sinks: ready.sinks.clone(),
        partitions,
    };
    weir_actors::crash_point!("checkpoint-before-manifest");
    store.put_bytes(&manifest_key(ready.id), &manifest.encode())?;
    weir_actors::crash_point!("checkpoint-before-prune");
    // The checkpoint is complete; pruning is housekeeping and a failure
    // there (an unreadable old manifest, say) must not fail it.
    for part in &manifest.partitions {
        let size = part.files.iter().map(|f| f.size).sum();
        metrics.partition(part.partition).checkpointed(size);
    }
    metrics.checkpoint_completed(ready.started);
    if let Err(e) = snapshot::prune(store, retain) {
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

/// Restores the newest usable checkpoint into the partitions' directories,
/// or empties them when there is none.
pub(crate) fn recover(
    settings: &CheckpointSettings,
    env: &StateEnv,
    partitions: u32,
    metrics: &Metrics,
) -> Result<Recovery> {
    let all: Vec<u32> = (0..partitions).collect();
    restore_newest(
        settings.store.as_ref(),
        env,
        &all,
        settings.start_empty,
        metrics,
    )
}

/// Restores the newest usable checkpoint of `store`, which must hold
/// exactly `partitions`, into their directories; empties them when there is
/// none. With checkpoints present but none usable this is an error unless
/// `start_empty`.
pub(crate) fn restore_newest(
    store: &dyn SnapshotStore,
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
    // Restoring is the check (it verifies every checksum), so candidates
    // are tried one at a time, newest first.
    let choice = choose_checkpoint(&ids, |id| -> Result<(Manifest, u64)> {
        let m = load_manifest(store, id)?;
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
