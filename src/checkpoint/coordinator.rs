//! The coordinator: a checkpoint from barrier to manifest, and its upload.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use weir_actors::Clock;
use weir_actors::SystemClock;
use weir_actors::runtime::PartitionCheckpoint;
use weir_state::owner;
use weir_state::snapshot::{
    self, MANIFEST_FORMAT_VERSION, PartitionSnapshot, Retention, UploadStats, manifest_key,
};
use weir_state::{Manifest, SnapshotStore};

use super::{Owner, Status, is_fenced};
use crate::telemetry::Metrics;
use crate::{Error, Result, lock};

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
