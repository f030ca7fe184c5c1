//! Where a Kafka job's outputs, dead letters and checkpoints go: the
//! producer, and the upload thread that writes a partition's checkpoint
//! once the producer has acknowledged every output before it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use weir_actors::DeadLetter;
use weir_actors::runtime::{Outlet, PartitionCheckpoint};
use weir_state::{Prefixed, SnapshotStore};

use super::group::{Done, Outcome};
use super::output::Outputs;
use crate::checkpoint::{Owner, Ready, is_fenced, upload};
use crate::lock;
use crate::outlet::Failure;
use crate::telemetry::Metrics;

/// What reaches the poll thread from the actors and the upload thread.
pub(super) enum Inbox {
    /// An actor finished a batch of this assignment.
    BatchDone(i32, u64),
    /// An actor made a local checkpoint.
    Checkpointed(Upload),
    /// A checkpoint upload ended.
    Done(Done),
}

/// A partition's checkpoint for the upload thread: its assignment, the
/// owner epoch it is written in, the local files.
pub(super) struct Upload {
    pub(super) generation: u64,
    pub(super) owner: Arc<Owner>,
    pub(super) checkpoint: PartitionCheckpoint,
}

/// Outputs and dead letters of every partition a worker owns.
pub(super) struct KafkaOutlet<K, T> {
    pub(super) out: Arc<dyn Outputs<K, T>>,
    pub(super) input_topic: String,
    pub(super) failure: Failure,
}

impl<K: 'static, T: 'static> KafkaOutlet<K, T> {
    pub(super) fn fail(&self, message: String) {
        tracing::error!(%message, "worker failing");
        self.failure.record(message);
    }

    /// Why outputs may have been lost, if they may: then no checkpoint
    /// may complete any more.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure.message().or_else(|| self.out.failure())
    }

    pub(super) fn send_dead_letters(&self, items: &[DeadLetter]) {
        if let Err(e) = self.out.dead_letters(items, &self.input_topic) {
            self.fail(e);
        }
    }
}

/// The outlet of one assignment of one partition: its checkpoints go to
/// the poll thread tagged with the assignment, so those of an assignment
/// that ended are never uploaded.
pub(super) struct Assigned<K, T> {
    pub(super) shared: Arc<KafkaOutlet<K, T>>,
    pub(super) generation: u64,
    /// The owner epoch this assignment writes checkpoints in.
    pub(super) owner: Arc<Owner>,
    /// The poll thread, which decides whether the checkpoint is uploaded.
    pub(super) inbox: mpsc::Sender<Inbox>,
}

impl<K: Send + Sync + 'static, T: Send + 'static> Outlet<K, T> for Assigned<K, T> {
    fn outputs(&self, partition: u32, items: Vec<(K, T)>) {
        if let Err(e) = self.shared.out.outputs(items) {
            self.shared.fail(format!("partition {partition}: {e}"));
        }
    }

    fn dead_letters(&self, _partition: u32, items: Vec<DeadLetter>) {
        self.shared.send_dead_letters(&items);
    }

    fn barrier(&self, _partition: u32, _id: u64) {}

    fn checkpointed(&self, checkpoint: PartitionCheckpoint) {
        let _ = self.inbox.send(Inbox::Checkpointed(Upload {
            generation: self.generation,
            owner: Arc::clone(&self.owner),
            checkpoint,
        }));
    }

    fn failed(&self, partition: u32, error: &weir_actors::Error) {
        self.shared
            .fail(format!("partition {partition} failed: {error}"));
    }
}

/// Where one partition of `topic` keeps its checkpoints, below its job's
/// folder (and, before job ids, at the store's root).
pub(crate) fn partition_area(topic: &str, partition: i32) -> String {
    format!("{topic}/p{partition}")
}

/// The snapshot store of one partition of `topic` in job `job`.
pub(crate) fn partition_store(
    root: &Arc<dyn SnapshotStore>,
    job: &str,
    topic: &str,
    partition: i32,
) -> Prefixed {
    let prefix = format!(
        "{}/{}",
        weir_state::owner::job_prefix(job),
        partition_area(topic, partition)
    );
    Prefixed::new(Arc::clone(root), &prefix)
}

/// Which assignment of each partition is current (partition ->
/// generation); shared by the poll thread and the upload thread.
pub(super) type Live = Arc<Mutex<BTreeMap<i32, u64>>>;

/// The upload thread: acknowledgements, files, manifest, then report. A
/// checkpoint of an assignment that ended, or taken after outputs may have
/// been lost, is not written.
pub(super) struct Uploader<K, T> {
    pub(super) outlet: Arc<KafkaOutlet<K, T>>,
    pub(super) live: Live,
    pub(super) root: Arc<dyn SnapshotStore>,
    pub(super) topic: String,
    pub(super) delivery_timeout: Duration,
    pub(super) metrics: Metrics,
}

pub(super) fn upload_loop<K: 'static, T: 'static>(
    u: Uploader<K, T>,
    rx: mpsc::Receiver<Upload>,
    done: mpsc::Sender<Inbox>,
) {
    let Uploader {
        outlet,
        live,
        root,
        topic,
        delivery_timeout,
        metrics,
    } = u;
    // Checksums of files already uploaded, per partition and assignment: a
    // partition restored anew may reuse file names for other content.
    let mut known = std::collections::HashMap::new();
    let mut known_generation: BTreeMap<i32, u64> = BTreeMap::new();
    for Upload {
        generation,
        owner,
        checkpoint: cp,
    } in rx
    {
        let partition = cp.partition as i32;
        let (id, position) = (cp.id, cp.position as i64);
        let span = tracing::info_span!("checkpoint", partition, checkpoint = id);
        let _enter = span.enter();
        let started = Instant::now();
        let dir = cp.dir.clone();
        if known_generation.insert(partition, generation) != Some(generation) {
            known.retain(|(p, _, _), _| *p != cp.partition);
        }
        let current = || lock(&live).get(&partition) == Some(&generation);
        let released = || Outcome::Failed("the partition was released".into());
        let outcome = if let Some(why) = outlet.failure() {
            Outcome::Fatal(format!("outputs may have been lost: {why}"))
        } else if !current() {
            released()
        } else if let Err(e) = outlet.out.commit(delivery_timeout) {
            Outcome::Fatal(e)
        } else if !current() {
            released()
        } else {
            let ready = Ready {
                id,
                parts: vec![cp],
                sinks: BTreeMap::new(),
                started,
            };
            let store = partition_store(&root, &owner.job_id, &topic, partition);
            match upload(&store, &ready, &mut known, &owner, &metrics) {
                Ok(_) => Outcome::Complete,
                Err(e) if is_fenced(&e) => Outcome::Fenced(e.to_string()),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        };
        // A checkpoint of a partition released meanwhile is moot, not failed.
        let moot = matches!(outcome, Outcome::Failed(_) | Outcome::Fenced(_)) && !current();
        if outcome != Outcome::Complete && !moot {
            metrics.checkpoint_failed(1);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = done.send(Inbox::Done(Done {
            partition,
            generation,
            id,
            position,
            outcome,
        }));
    }
}
