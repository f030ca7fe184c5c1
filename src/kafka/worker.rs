//! A consumer-group worker: reads a topic, runs a [`Processor`] per key with
//! checkpointed state, writes outputs and dead letters to topics.
//!
//! ## Threads
//! One *poll thread* owns the consumer. It polls, decodes each value and
//! queues the record for its partition; queued records go to the
//! partition's actor as a batch when the actor has a free batch credit. A
//! partition whose queue grows past [`KafkaSettings::max_buffered`] is
//! paused at the broker and resumed once it drains, so a slow partition
//! never stops polling (no `max.poll.interval.ms` expiry) and memory stays
//! bounded. Rebalance callbacks run on the poll thread, between polls.
//! Checkpoint uploads run on an upload thread.
//!
//! ## Checkpoints (per partition, no cross-partition alignment)
//! 1. Every checkpoint interval the poll thread sends barrier `n` to each
//!    partition with no checkpoint in flight. Its position is the offset of
//!    the first record not yet handed to the actor.
//! 2. The actor writes its state, timers and watermark, makes a local
//!    RocksDB checkpoint and hands it to the upload thread. Every output it
//!    emitted before the barrier was already given to the producer.
//! 3. The upload thread waits until the producer has every record given to
//!    it so far acknowledged ([`KafkaSink::commit`]), uploads the new files
//!    under `<topic>/p<N>/` in the snapshot store and writes the manifest.
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
//!   the log start, never the committed offset, see [`start_at`]). With the cooperative
//!   protocol only moved partitions are touched; the others keep running.
//!
//! Outputs are at-least-once: after a crash the records since the last
//! checkpoint are read again and their outputs produced again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use ractor::ActorRef;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::Semaphore;
use weir_actors::{
    Clock, DeadLetter, Envelope, InputBatch, Outlet, PartitionCheckpoint, PartitionMsg, Processor,
    SystemClock,
};
use weir_state::{Prefixed, SnapshotStore, StateEnv};

use super::Properties;
use super::sink::{DeadLetterRecord, KafkaSink, reserve};
use super::watch::{Change, OnOffsetReset, Seen, Skip, Watch};
use crate::checkpoint::{Owner, Ready, is_fenced, take_and_restore, upload};
use crate::job::{
    CheckpointTrigger, Decode, Settings, check_layout, clear_local_checkpoints, job_id,
    lock_state_dir, spawn_partition, watch_shutdown,
};
use crate::outlet::Failure;
use crate::telemetry::{self, Advance, BatchDone, Metrics, PartitionMetrics, Rebalance, Telemetry};
use crate::{Error, Result, lock};

/// The bytes a processor key is written as in an output record's key.
pub trait RecordKey {
    fn record_key(&self) -> Cow<'_, [u8]>;
}

impl RecordKey for String {
    fn record_key(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl RecordKey for compact_str::CompactString {
    fn record_key(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl RecordKey for Vec<u8> {
    fn record_key(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}

macro_rules! big_endian_keys {
    ($($t:ty),*) => {$(
        /// Big-endian, as Kafka's integer serializers write it.
        impl RecordKey for $t {
            fn record_key(&self) -> Cow<'_, [u8]> {
                Cow::Owned(self.to_be_bytes().to_vec())
            }
        }
    )*};
}
big_endian_keys!(u32, u64, i32, i64);

/// Where a Kafka job reads and writes, and how it behaves in its group.
/// Its `Debug` output shows secret properties as `[redacted]`.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    pub input_topic: String,
    pub output_topic: String,
    /// Records that do not decode or fail permanently. Without one, such a
    /// record stops the job (dropping it would lose input).
    pub dead_letter_topic: Option<String>,
    /// The consumer group shared by the job's workers.
    pub group: String,
    /// Static membership (`group.instance.id`) for workers with stable
    /// names: a restart within the session timeout keeps its partitions.
    pub instance_id: Option<String>,
    /// Further librdkafka properties: for both clients, the consumer only
    /// and the producer only. Properties the guarantees rest on (manual
    /// offset commits, an idempotent producer with `acks=all`) cannot be
    /// changed.
    pub properties: Properties,
    /// Most time a revoke may spend on final checkpoints.
    pub revoke_deadline: Duration,
    /// Most time a checkpoint waits for the producer's acknowledgements.
    pub delivery_timeout: Duration,
    /// Most records in one batch to a partition.
    pub max_batch: usize,
    /// Records queued for one partition before it is paused.
    pub max_buffered: usize,
    /// A partition with records to read that reads none for this long is
    /// stalled: logged, counted, and `/readyz` not ready (see [`watch`]).
    ///
    /// [`watch`]: super::watch
    pub stall_after: Duration,
    /// A partition stalled this long stops the worker with an error naming
    /// it (`None`: never).
    pub stall_timeout: Option<Duration>,
    /// Whether a log-start skip (retention deleted records never
    /// processed) stops the worker; skips are always logged and counted.
    pub on_offset_reset: OnOffsetReset,
}

impl KafkaSettings {
    /// Settings with defaults for everything but the names.
    pub fn new(brokers: &str, input_topic: &str, output_topic: &str, group: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            input_topic: input_topic.to_string(),
            output_topic: output_topic.to_string(),
            dead_letter_topic: None,
            group: group.to_string(),
            instance_id: None,
            properties: Properties::default(),
            revoke_deadline: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(300),
            max_batch: 2_000,
            max_buffered: 20_000,
            stall_after: Duration::from_secs(30),
            stall_timeout: Some(Duration::from_secs(300)),
            on_offset_reset: OnOffsetReset::Earliest,
        }
    }

    fn validate(&self) -> Result<()> {
        for (what, value) in [
            ("brokers", &self.brokers),
            ("input topic", &self.input_topic),
            ("output topic", &self.output_topic),
            ("group", &self.group),
        ] {
            if value.trim().is_empty() {
                return Err(Error::Config(format!("the Kafka {what} is empty")));
            }
        }
        if self.stall_timeout.is_some_and(|t| t < self.stall_after) {
            return Err(Error::Config(format!(
                "the stall timeout ({:?}) is shorter than the stall time ({:?})",
                self.stall_timeout.unwrap_or_default(),
                self.stall_after
            )));
        }
        if self.max_batch == 0 || self.max_buffered == 0 {
            return Err(Error::Config(
                "max batch and max buffered must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A partition's consumer lag, as last seen. Offsets are "next to read";
/// `None` when not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub partition: i32,
    /// The partition's high watermark (from the client's statistics).
    pub high_watermark: Option<i64>,
    /// The offset committed to the group (after a checkpoint).
    pub committed: Option<i64>,
    /// The offset after the last record processed.
    pub processed: Option<i64>,
}

impl Lag {
    /// High watermark minus committed offset.
    pub fn behind_committed(&self) -> Option<i64> {
        Some((self.high_watermark? - self.committed?).max(0))
    }

    /// High watermark minus processed offset.
    pub fn behind_processed(&self) -> Option<i64> {
        Some((self.high_watermark? - self.processed?).max(0))
    }
}

/// Live progress of one owned partition.
struct Progress {
    partition: i32,
    /// Its positions (`-1`: unknown) and other figures.
    m: Arc<PartitionMetrics>,
    /// librdkafka's fetch position, the log's start and the end a consumer
    /// can read to (the last stable offset, below open transactions), from
    /// its statistics (`-1`: unknown).
    fetched: AtomicI64,
    low: AtomicI64,
    end: AtomicI64,
    /// Set once the first batch after assignment was processed.
    first_done: AtomicBool,
    /// When this worker started, and whether the partition was restored
    /// from a checkpoint (for the join-to-first-record figure).
    joined: Instant,
    restored: bool,
    /// The worker's earliest join-to-first-record time, ms.
    first_restored_ms: Arc<AtomicU64>,
}

impl Progress {
    fn lag(&self) -> Lag {
        let get = |a: &AtomicI64| Some(a.load(Ordering::Relaxed)).filter(|v| *v >= 0);
        Lag {
            partition: self.partition,
            high_watermark: get(&self.m.high_watermark),
            committed: get(&self.m.committed),
            processed: get(&self.m.processed),
        }
    }
}

/// Reads the progress of a running job: the lag of the partitions it owns.
/// Cheap to clone.
#[derive(Clone)]
pub struct LagHandle(Arc<Mutex<BTreeMap<i32, Arc<Progress>>>>, Arc<AtomicU64>);

impl Default for LagHandle {
    fn default() -> Self {
        Self(Arc::default(), Arc::new(AtomicU64::new(u64::MAX)))
    }
}

impl LagHandle {
    /// Every owned partition's lag.
    pub fn snapshot(&self) -> Vec<Lag> {
        lock(&self.0).values().map(|p| p.lag()).collect()
    }

    /// Time from the worker's start to the first record it processed on a
    /// partition restored from a checkpoint (a partition that moved to it),
    /// once there was one.
    pub fn first_record_on_restored_partition(&self) -> Option<Duration> {
        match self.1.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// Dropped when a batch is processed: frees its credit, records progress
/// (through `done`, dropped after this).
struct Processed {
    progress: Arc<Progress>,
    _done: BatchDone,
    _credit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Processed {
    fn drop(&mut self) {
        let p = &self.progress;
        if p.restored && !p.first_done.swap(true, Ordering::Relaxed) {
            let ms = p.joined.elapsed().as_millis() as u64;
            p.first_restored_ms.fetch_min(ms, Ordering::Relaxed);
            tracing::info!(
                partition = p.partition,
                since_join_ms = ms,
                "first records processed on a restored partition"
            );
        }
    }
}

/// What a Kafka job did until it stopped.
#[derive(Debug, Clone, Default)]
pub struct KafkaReport {
    /// Records read.
    pub records: u64,
    /// Records that did not decode (dead-lettered).
    pub decode_errors: u64,
    /// Partition checkpoints completed.
    pub checkpoints: u64,
    /// Partition checkpoints that failed.
    pub checkpoint_failures: u64,
    /// Partitions assigned over the run (a partition assigned twice counts
    /// twice).
    pub assigned: u64,
    /// Of those, restored from a checkpoint.
    pub restored: u64,
    pub elapsed: Duration,
}

/// A partition checkpoint's outcome, from the upload thread.
struct Done {
    partition: i32,
    /// The assignment the checkpoint belongs to.
    generation: u64,
    id: u64,
    position: i64,
    result: std::result::Result<(), String>,
    /// The producer lost records: the job must stop and replay.
    fatal: bool,
    /// Another worker took over the partition's checkpoints.
    fenced: bool,
}

/// A partition's checkpoint for the upload thread: its assignment, the
/// owner epoch it is written in, the local files.
type Upload = (u64, Arc<Owner>, PartitionCheckpoint);

/// Outputs and dead letters to Kafka; checkpoints to the upload thread.
struct KafkaOutlet {
    sink: Arc<KafkaSink>,
    input_topic: String,
    uploads: Mutex<Option<mpsc::Sender<Upload>>>,
    failure: Failure,
}

impl KafkaOutlet {
    fn fail(&self, message: String) {
        tracing::error!(%message, "worker failing");
        self.failure.record(message);
    }

    /// Why outputs may have been lost, if they may: then no checkpoint
    /// may complete any more.
    fn failure(&self) -> Option<String> {
        self.failure.message().or_else(|| self.sink.failure())
    }

    fn send_dead_letters(&self, items: &[DeadLetter]) {
        for d in items {
            let record = DeadLetterRecord {
                raw: &d.raw,
                error: &d.reason,
                source_topic: &self.input_topic,
                source_partition: d.partition.map_or(-1, |p| p as i32),
                source_offset: d.position.map_or(-1, |o| o as i64),
            };
            if let Err(e) = self.sink.send_dead_letter(&record) {
                self.fail(format!("dead letter not sent: {e}"));
            }
        }
    }
}

/// The outlet of one assignment of one partition: its checkpoints are
/// tagged with the assignment, so those of an assignment that ended are
/// never uploaded.
struct Assigned {
    shared: Arc<KafkaOutlet>,
    generation: u64,
    /// The owner epoch this assignment writes checkpoints in.
    owner: Arc<Owner>,
}

impl<K: RecordKey + Send + 'static, T: Serialize + Send + 'static> Outlet<K, T> for Assigned {
    fn outputs(&self, partition: u32, items: Vec<(K, T)>) {
        let shared = &self.shared;
        let mut value = Vec::with_capacity(256);
        for (key, out) in items {
            value.clear();
            if let Err(e) = serde_json::to_writer(&mut value, &out) {
                shared.fail(format!("partition {partition}: output not encoded: {e}"));
                return;
            }
            if let Err(e) = shared.sink.send(&key.record_key(), &value) {
                shared.fail(format!("partition {partition}: {e}"));
                return;
            }
        }
    }

    fn dead_letters(&self, _partition: u32, items: Vec<DeadLetter>) {
        self.shared.send_dead_letters(&items);
    }

    fn barrier(&self, _partition: u32, _id: u64) {}

    fn checkpointed(&self, checkpoint: PartitionCheckpoint) {
        if let Some(tx) = lock(&self.shared.uploads).as_ref() {
            let _ = tx.send((self.generation, Arc::clone(&self.owner), checkpoint));
        }
    }

    fn failed(&self, partition: u32, error: &weir_actors::Error) {
        self.shared
            .fail(format!("partition {partition} failed: {error}"));
    }
}

/// Input offsets `from..to` of `partition` were skipped for `why`: counted
/// and logged, or, for a log-start skip with [`OnOffsetReset::Fail`], the
/// error to stop with.
fn skipped<K, V>(
    kafka: &KafkaSettings,
    o: &mut Owned<K, V>,
    partition: i32,
    why: Skip,
    from: i64,
    to: i64,
) -> std::result::Result<(), String> {
    let topic = &kafka.input_topic;
    o.progress.m.skipped(why, (to - from) as u64);
    if why == Skip::LogStart && kafka.on_offset_reset == OnOffsetReset::Fail {
        return Err(format!(
            "partition {partition} of topic {topic}: offsets {from} to {} were never processed: \
             {} (--on-offset-reset fail)",
            to - 1,
            why.describe()
        ));
    }
    let quiet = match why {
        Skip::LogStart => Some(0),
        Skip::Gap => o.watch.log_gap(Instant::now()),
    };
    if let Some(quiet) = quiet {
        tracing::warn!(
            topic = %topic,
            partition,
            expected = from,
            resumed_at = to,
            skipped = to - from,
            reason = why.label(),
            gaps_not_logged = quiet,
            "{}: going on from the first record there is",
            why.describe()
        );
    }
    Ok(())
}

/// The start of `partition`'s log as librdkafka last saw it (in the
/// latest fetch response or offset query; no request is made), -1 when
/// not known.
fn log_start<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partition: i32) -> i64 {
    let Ok(topic) = std::ffi::CString::new(topic) else {
        return -1;
    };
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client handle is live for the call, the topic a valid C
    // string, and librdkafka only writes the two offsets.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    if err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        low
    } else {
        -1
    }
}

/// Where one partition of `topic` keeps its checkpoints, below its job's
/// folder (and, before job ids, at the store's root).
fn partition_area(topic: &str, partition: i32) -> String {
    format!("{topic}/p{partition}")
}

/// Where a newly assigned partition starts reading: at its checkpoint's
/// position; without one, at the log's start, never at the group's
/// committed offset. A committed offset without a checkpoint to go with it
/// (the job id or the store changed, the checkpoints were damaged or
/// written by a superseded owner) would mean reading on with empty state,
/// losing what came before; reading from the start rebuilds the state.
fn start_at(
    partition: i32,
    position: Option<i64>,
    recovery: &crate::checkpoint::Recovery,
    first_id: u64,
) -> Option<Offset> {
    if let Some(offset) = position {
        return Some(Offset::Offset(offset));
    }
    if recovery.highest > 0 || weir_state::owner::epoch_of(first_id) > 1 {
        tracing::warn!(
            partition,
            highest_checkpoint = recovery.highest,
            "no checkpoint restored for a partition that had owners before: reading it from the log start to rebuild its state"
        );
    }
    Some(Offset::Beginning)
}

/// The snapshot store of one partition of `topic` in job `job`.
fn partition_store(
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
type Live = Arc<Mutex<BTreeMap<i32, u64>>>;

/// The upload thread: acknowledgements, files, manifest, then report. A
/// checkpoint of an assignment that ended, or taken after outputs may have
/// been lost, is not written.
struct Uploader {
    outlet: Arc<KafkaOutlet>,
    live: Live,
    root: Arc<dyn SnapshotStore>,
    topic: String,
    delivery_timeout: Duration,
    metrics: Metrics,
}

fn upload_loop(u: Uploader, rx: mpsc::Receiver<Upload>, done: mpsc::Sender<Done>) {
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
    for (generation, owner, cp) in rx {
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
        let mut fenced = false;
        let (result, fatal) = if let Some(why) = outlet.failure() {
            (Err(format!("outputs may have been lost: {why}")), true)
        } else if !current() {
            (Err("the partition was released".to_string()), false)
        } else if let Err(e) = outlet.sink.commit(delivery_timeout) {
            (Err(e.to_string()), true)
        } else if !current() {
            (Err("the partition was released".to_string()), false)
        } else {
            let ready = Ready {
                id,
                parts: vec![cp],
                sinks: BTreeMap::new(),
                started,
            };
            let store = partition_store(&root, &owner.job_id, &topic, partition);
            let r = upload(&store, &ready, &mut known, &owner, &metrics);
            fenced = r.as_ref().is_err_and(is_fenced);
            (r.map(|_| ()).map_err(|e| e.to_string()), false)
        };
        // A checkpoint of a partition released meanwhile is moot, not failed.
        if result.is_err() && (fatal || current()) {
            metrics.checkpoint_failed(1);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = done.send(Done {
            partition,
            generation,
            id,
            position,
            result,
            fatal,
            fenced,
        });
    }
}

/// One partition this worker owns.
struct Owned<K, V> {
    /// This assignment's number (unique within the worker).
    generation: u64,
    actor: ActorRef<PartitionMsg<K, V>>,
    handle: tokio::task::JoinHandle<()>,
    credits: Arc<Semaphore>,
    progress: Arc<Progress>,
    /// Next offset expected from the consumer (`None`: not known yet).
    next_offset: Option<i64>,
    /// Records read but not yet handed to the actor, and their bytes.
    records: Vec<Envelope<K, V>>,
    data: Vec<u8>,
    paused: bool,
    next_checkpoint: u64,
    in_flight: Option<u64>,
    watch: Watch,
}

impl<K, V> Owned<K, V> {
    /// The offset a barrier sent now stands for: the first record not yet
    /// handed to the actor.
    fn barrier_position(&self) -> Option<i64> {
        match self.records.first() {
            Some(r) => Some(r.position as i64),
            None => self.next_offset,
        }
    }
}

/// Everything the poll thread and its rebalance callbacks share.
struct Worker<P: Processor> {
    settings: Settings,
    kafka: KafkaSettings,
    env: StateEnv,
    processor: Arc<P>,
    clock: Arc<dyn Clock>,
    decoder: Arc<dyn Decode<P::Key, P::In>>,
    outlet: Arc<KafkaOutlet>,
    store: Arc<dyn SnapshotStore>,
    job_id: String,
    local_dir: PathBuf,
    runtime: tokio::runtime::Handle,
    owned: BTreeMap<i32, Owned<P::Key, P::In>>,
    live: Live,
    generations: u64,
    lag: LagHandle,
    metrics: Metrics,
    done: mpsc::Receiver<Done>,
    /// Completed checkpoints' offsets not committed yet.
    to_commit: BTreeMap<i32, i64>,
    joined: Instant,
    fatal: Option<String>,
    /// The consumer's last error and when it came, for stall messages.
    last_error: Option<(Instant, String)>,
    /// Partitions whose checkpoints another worker took over, to release.
    fenced: Vec<(i32, u64)>,
    /// Partitions released that way, and when: taken back if the group
    /// still assigns them after [`REACQUIRE_AFTER`].
    released: BTreeMap<i32, Instant>,
    report: KafkaReport,
}

impl<P: Processor> Worker<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    fn tpl(&self, partitions: impl IntoIterator<Item = i32>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.kafka.input_topic, p);
        }
        tpl
    }

    /// Queues one consumed record for its partition.
    fn route(
        &mut self,
        consumer: &BaseConsumer<GroupContext<P>>,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
    ) {
        let Some(o) = self.owned.get_mut(&partition) else {
            return;
        };
        // The consumer never goes back on its own: the topic was recreated
        // or the log truncated. Going on would skip or mix records.
        if let Some(next) = o.next_offset
            && offset < next
        {
            self.fatal.get_or_insert(format!(
                "partition {partition} went back from offset {next} to {offset} (topic recreated \
                 or log truncated?): refusing to go on"
            ));
            return;
        }
        if let Some(next) = o.next_offset
            && offset > next
        {
            let low = log_start(consumer, &self.kafka.input_topic, partition);
            let why = Skip::of(low, next);
            if let Err(e) = skipped(&self.kafka, o, partition, why, next, offset) {
                self.fatal.get_or_insert(e);
                return;
            }
        }
        o.watch.read_any = true;
        o.next_offset = Some(offset + 1);
        self.report.records += 1;
        let reason = match payload {
            None => "record has no value".to_string(),
            Some(bytes) => match self.decoder.decode(bytes) {
                Ok(d) => {
                    let start = o.data.len();
                    o.data.extend_from_slice(bytes);
                    o.records.push(Envelope {
                        key: d.key,
                        timestamp: d.timestamp,
                        value: d.value,
                        position: offset as u64,
                        raw: start..o.data.len(),
                    });
                    return;
                }
                Err(reason) => reason,
            },
        };
        self.report.decode_errors += 1;
        o.progress.m.read(1, 1);
        self.outlet.send_dead_letters(&[DeadLetter {
            partition: Some(partition as u32),
            position: Some(offset as u64),
            raw: payload.unwrap_or_default().to_vec(),
            reason,
        }]);
    }

    /// Hands queued records to actors with a free credit; pauses partitions
    /// that queue too much and resumes those that drained.
    fn flush(&mut self, consumer: &BaseConsumer<GroupContext<P>>) {
        let mut pause = Vec::new();
        let mut resume = Vec::new();
        for (&p, o) in self.owned.iter_mut() {
            while !o.records.is_empty() {
                let Ok(credit) = Arc::clone(&o.credits).try_acquire_owned() else {
                    break;
                };
                let n = o.records.len().min(self.kafka.max_batch);
                let records: Vec<_> = o.records.drain(..n).collect();
                let end = records.last().map_or(0, |r| r.raw.end);
                let data: Arc<[u8]> = Arc::from(&o.data[..end]);
                o.data.drain(..end);
                for r in &mut o.records {
                    r.raw = r.raw.start - end..r.raw.end - end;
                }
                o.progress.m.read(records.len() as u64, 0);
                let guard = Processed {
                    progress: Arc::clone(&o.progress),
                    _done: BatchDone {
                        metrics: self.metrics.clone(),
                        partition: Arc::clone(&o.progress.m),
                        since: Instant::now(),
                        advance: Advance::To(records.last().map_or(0, |r| r.position as i64 + 1)),
                    },
                    _credit: credit,
                };
                let batch = InputBatch { data, records };
                if let Err(e) = o
                    .actor
                    .cast(PartitionMsg::Batch(batch, Some(Box::new(guard))))
                {
                    self.fatal
                        .get_or_insert(format!("partition {p} is gone: {e}"));
                    break;
                }
            }
            // Nothing queued or in flight: everything read is processed,
            // records that went to the dead-letter topic included.
            if o.records.is_empty()
                && o.credits.available_permits() == self.settings.batch_credits
                && let Some(next) = o.next_offset
            {
                o.progress.m.processed.fetch_max(next, Ordering::Relaxed);
            }
            if o.records.len() >= self.kafka.max_buffered && !o.paused {
                o.paused = true;
                pause.push(p);
            } else if o.records.is_empty() && o.paused {
                o.paused = false;
                resume.push(p);
            }
        }
        if !pause.is_empty()
            && let Err(e) = consumer.pause(&self.tpl(pause))
        {
            tracing::warn!(error = %e, "pausing partitions failed");
        }
        if !resume.is_empty()
            && let Err(e) = consumer.resume(&self.tpl(resume))
        {
            tracing::warn!(error = %e, "resuming partitions failed");
        }
    }

    /// Looks at each owned partition's input (see [`super::watch`]): a log
    /// whose start moved past the position to resume from before anything
    /// was read, and stalls.
    fn watch_inputs(&mut self, consumer: &BaseConsumer<GroupContext<P>>) {
        let now = Instant::now();
        for (&p, o) in self.owned.iter_mut() {
            let low = o.progress.low.load(Ordering::Relaxed);
            // The statistics say the log moved; librdkafka's latest view
            // says where it starts now.
            if !o.watch.read_any
                && let Some(next) = o.next_offset
                && low > next
                && let start = log_start(consumer, &self.kafka.input_topic, p)
                && start > next
            {
                if let Err(e) = skipped(&self.kafka, o, p, Skip::LogStart, next, start) {
                    self.fatal.get_or_insert(e);
                    return;
                }
                o.next_offset = Some(start);
            }
            let seen = Seen {
                read: o.next_offset,
                fetch: o.progress.fetched.load(Ordering::Relaxed),
                low,
                high: o.progress.end.load(Ordering::Relaxed),
                waiting: o.paused || !o.records.is_empty(),
            };
            let Some(change) =
                o.watch
                    .check(now, &seen, self.kafka.stall_after, self.kafka.stall_timeout)
            else {
                continue;
            };
            let topic = &self.kafka.input_topic;
            let at = seen.offset();
            let last_error = match &self.last_error {
                Some((when, e)) => format!("{e} ({} s ago)", when.elapsed().as_secs()),
                None => "none".into(),
            };
            match change {
                Change::Stalled(d) => {
                    let since = SystemTime::now().checked_sub(d);
                    o.progress.m.set_stalled(Some(since.unwrap_or(UNIX_EPOCH)));
                    tracing::warn!(
                        topic = %topic,
                        partition = p,
                        offset = %at,
                        high_watermark = seen.high,
                        stalled_s = d.as_secs(),
                        last_consumer_error = %last_error,
                        "the partition has records to read and reads none: stalled (not ready \
                         until it moves)"
                    );
                }
                Change::Recovered(d) => {
                    o.progress.m.set_stalled(None);
                    tracing::info!(
                        topic = %topic,
                        partition = p,
                        offset = %at,
                        stalled_s = d.as_secs(),
                        "the partition reads again"
                    );
                }
                Change::GaveUp(d) => {
                    self.fatal.get_or_insert(format!(
                        "partition {p} of topic {topic} made no progress at offset {at} for {} s \
                         with records to read (log end {}; the consumer's last error: \
                         {last_error}): a batch that does not decode or fails its CRC, or fetch \
                         errors that repeat",
                        d.as_secs(),
                        seen.high
                    ));
                    return;
                }
            }
        }
    }

    /// Sends a barrier to each partition without one in flight.
    fn checkpoint_all(&mut self) {
        let ps: Vec<i32> = self.owned.keys().copied().collect();
        for p in ps {
            if self.owned[&p].in_flight.is_none() {
                self.barrier(p);
            }
        }
    }

    /// Sends the next barrier to partition `p`; returns its id.
    fn barrier(&mut self, p: i32) -> Option<u64> {
        let o = self.owned.get_mut(&p)?;
        // Nothing read yet and nothing restored: nothing to checkpoint, and
        // no input waits for a checkpoint (its age stays 0).
        let Some(position) = o.barrier_position() else {
            o.progress.m.nothing_to_checkpoint();
            return None;
        };
        let id = o.next_checkpoint;
        o.next_checkpoint += 1;
        o.in_flight = Some(id);
        if let Err(e) = o.actor.cast(PartitionMsg::Barrier {
            id,
            position: position as u64,
        }) {
            self.fatal
                .get_or_insert(format!("partition {p} is gone: {e}"));
            return None;
        }
        Some(id)
    }

    /// Takes in one checkpoint outcome.
    fn on_done(&mut self, d: Done) {
        let current = self
            .owned
            .get(&d.partition)
            .is_some_and(|o| o.generation == d.generation);
        if let Some(o) = self.owned.get_mut(&d.partition)
            && current
            && o.in_flight == Some(d.id)
        {
            o.in_flight = None;
        }
        match d.result {
            Ok(()) => {
                self.report.checkpoints += 1;
                tracing::info!(
                    partition = d.partition,
                    checkpoint = d.id,
                    position = d.position,
                    "checkpoint complete"
                );
                if current {
                    self.to_commit.insert(d.partition, d.position);
                }
            }
            Err(e) => {
                self.report.checkpoint_failures += 1;
                if d.fenced {
                    tracing::error!(partition = d.partition, checkpoint = d.id, error = %e, "checkpoint refused: another worker owns the partition's checkpoints now; releasing it");
                    if current {
                        self.fenced.push((d.partition, d.generation));
                    }
                } else {
                    tracing::warn!(partition = d.partition, checkpoint = d.id, error = %e, "checkpoint failed");
                }
                if d.fatal {
                    self.fatal.get_or_insert(format!(
                        "partition {} checkpoint {}: {e}",
                        d.partition, d.id
                    ));
                }
            }
        }
    }

    /// Commits the offsets of completed checkpoints.
    fn commit(&mut self, consumer: &BaseConsumer<GroupContext<P>>, mode: CommitMode) {
        if self.to_commit.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &offset) in &self.to_commit {
            // Only an invalid offset is refused; checkpoint positions are not.
            let _ = tpl.add_partition_offset(&self.kafka.input_topic, p, Offset::Offset(offset));
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                let progress = lock(&self.lag.0);
                for (p, offset) in std::mem::take(&mut self.to_commit) {
                    if let Some(pr) = progress.get(&p) {
                        pr.m.committed.fetch_max(offset, Ordering::Relaxed);
                    }
                }
            }
            // The checkpoint holds the position; a later commit catches up.
            Err(e) => tracing::warn!(error = %e, "committing offsets failed"),
        }
    }

    /// Final checkpoints for `partitions` (unless `lost`), offsets
    /// committed, actors stopped.
    fn revoke(&mut self, consumer: &BaseConsumer<GroupContext<P>>, partitions: &[i32], lost: bool) {
        for p in partitions {
            self.released.remove(p);
        }
        let deadline = Instant::now() + self.kafka.revoke_deadline;
        let mut waiting = BTreeMap::new();
        for &p in partitions {
            let Some(o) = self.owned.get_mut(&p) else {
                continue;
            };
            // Queued records were never processed: the checkpoint must
            // start at the first of them, so the next owner reads them.
            if let Some(first) = o.records.first() {
                o.next_offset = Some(first.position as i64);
            }
            o.records.clear();
            o.data.clear();
            if lost || self.fatal.is_some() || self.outlet.failure().is_some() {
                continue;
            }
            if let Some(id) = self.barrier(p) {
                tracing::info!(
                    partition = p,
                    checkpoint = id,
                    position = self.owned[&p].next_offset.unwrap_or(-1),
                    "final checkpoint"
                );
                waiting.insert(p, id);
            }
        }
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(d) => {
                    if waiting.get(&d.partition) == Some(&d.id) {
                        waiting.remove(&d.partition);
                    }
                    self.on_done(d);
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
        if !lost && self.outlet.failure().is_none() {
            self.commit(consumer, CommitMode::Sync);
        }
        for &p in partitions {
            let Some(o) = self.owned.remove(&p) else {
                continue;
            };
            lock(&self.live).remove(&p);
            self.to_commit.remove(&p);
            lock(&self.lag.0).remove(&p);
            o.actor.stop(None);
            let _ = self.runtime.block_on(o.handle);
            self.metrics.set_owned(p as u32, None);
            tracing::info!(partition = p, lost, "partition released");
        }
    }

    /// Releases the partitions another worker took over (their checkpoints
    /// were refused): no final checkpoint and no commit. Records of them
    /// are dropped unprocessed, as for any partition not owned, until the
    /// group acts: a stale member (paused, cut off) learns within a session
    /// timeout that its assignment is gone. A partition the group still
    /// gives this worker after [`REACQUIRE_AFTER`] (the other owner's claim
    /// was the stale one, or the group handed it back without telling) is
    /// taken back: a new owner epoch, a restore of the newest checkpoint,
    /// and a seek to its position.
    fn release_fenced(&mut self, consumer: &BaseConsumer<GroupContext<P>>) {
        if !self.fenced.is_empty() {
            // Only the assignment that was refused: the group may have
            // assigned the partition anew meanwhile.
            let fenced: Vec<i32> = std::mem::take(&mut self.fenced)
                .into_iter()
                .filter(|&(p, g)| self.owned.get(&p).is_some_and(|o| o.generation == g))
                .map(|(p, _)| p)
                .collect();
            for &p in &fenced {
                self.to_commit.remove(&p);
            }
            self.revoke(consumer, &fenced, true);
            let now = Instant::now();
            self.released.extend(fenced.iter().map(|&p| (p, now)));
        }
        let due: Vec<i32> = self
            .released
            .iter()
            .filter(|(_, at)| at.elapsed() >= REACQUIRE_AFTER)
            .map(|(&p, _)| p)
            .collect();
        if due.is_empty() {
            return;
        }
        let assigned = consumer.assignment().unwrap_or_default();
        let mine: Vec<i32> = due
            .iter()
            .copied()
            .filter(|&p| {
                assigned
                    .find_partition(&self.kafka.input_topic, p)
                    .is_some()
            })
            .collect();
        for p in &due {
            self.released.remove(p);
        }
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
            if let Some(offset) = offset
                && let Err(e) =
                    consumer.seek(&self.kafka.input_topic, p, offset, Duration::from_secs(10))
            {
                self.fatal
                    .get_or_insert(format!("partition {p}: seeking to {offset:?}: {e}"));
            }
        }
    }

    /// Releases every owned partition: with final checkpoints, unless
    /// `lost` (then, as after a failure, without).
    fn release_all(&mut self, consumer: &BaseConsumer<GroupContext<P>>, lost: bool) {
        let all: Vec<i32> = self.owned.keys().copied().collect();
        self.revoke(consumer, &all, lost);
    }

    /// Restores `partitions` (in parallel), starts their actors and returns
    /// the offsets to start from.
    fn assign(&mut self, partitions: &[i32]) -> BTreeMap<i32, Option<Offset>> {
        let started = Instant::now();
        for p in partitions {
            self.released.remove(p);
        }
        // Owned (and restoring, so not ready) from now on.
        let progress: BTreeMap<i32, Arc<PartitionMetrics>> = partitions
            .iter()
            .map(|&p| {
                let dir = self.env.partition_dir(p as u32);
                (p, self.metrics.set_owned(p as u32, Some(dir)))
            })
            .collect();
        type Restored = Result<(crate::checkpoint::Recovery, Owner)>;
        let restored: Vec<(i32, Restored)> = std::thread::scope(|s| {
            let handles: Vec<_> = partitions
                .iter()
                .map(|&p| {
                    let root = &self.store;
                    let job = self.job_id.as_str();
                    let topic = self.kafka.input_topic.as_str();
                    let env = &self.env;
                    let checkpoints = self.settings.checkpoints.as_ref();
                    let metrics = &self.metrics;
                    (
                        p,
                        s.spawn(move || -> Restored {
                            let checkpoints = checkpoints.ok_or_else(|| {
                                Error::Config("Kafka mode needs checkpoints".into())
                            })?;
                            let store = partition_store(root, job, topic, p);
                            let legacy = partition_area(topic, p);
                            let (owner, recovery) = take_and_restore(
                                checkpoints,
                                &store,
                                job,
                                &legacy,
                                env,
                                &[p as u32],
                                metrics,
                            )?;
                            Ok((recovery, owner))
                        }),
                    )
                })
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
        });
        let mut offsets = BTreeMap::new();
        for (p, r) in restored {
            let (recovery, owner) = match r {
                Ok(r) => r,
                Err(e) => {
                    self.fatal
                        .get_or_insert(format!("restoring partition {p}: {e}"));
                    continue;
                }
            };
            let position = recovery
                .manifest
                .as_ref()
                .and_then(|m| m.partitions.first())
                .map(|s| s.position as i64);
            self.generations += 1;
            let generation = self.generations;
            let next_checkpoint = owner.first_id();
            let outlet = Arc::new(Assigned {
                shared: Arc::clone(&self.outlet),
                generation,
                owner: Arc::new(owner),
            });
            // Each assignment makes its local checkpoints in a folder of
            // its own.
            let local_dir = self.local_dir.join(format!("g{generation}"));
            let spawned = self.runtime.block_on(spawn_partition(
                &self.processor,
                &self.env,
                &self.settings,
                p as u32,
                &self.clock,
                outlet as Arc<dyn Outlet<P::Key, P::Out>>,
                &local_dir,
                &progress[&p],
            ));
            let (actor, handle) = match spawned {
                Ok(s) => s,
                Err(e) => {
                    self.fatal
                        .get_or_insert(format!("starting partition {p}: {e}"));
                    continue;
                }
            };
            let m = Arc::clone(&progress[&p]);
            // The restored checkpoint covers the input before its position.
            m.processed.store(position.unwrap_or(-1), Ordering::Relaxed);
            m.committed.store(position.unwrap_or(-1), Ordering::Relaxed);
            let progress = Arc::new(Progress {
                partition: p,
                m,
                fetched: AtomicI64::new(-1),
                low: AtomicI64::new(-1),
                end: AtomicI64::new(-1),
                first_done: AtomicBool::new(false),
                joined: self.joined,
                restored: position.is_some(),
                first_restored_ms: Arc::clone(&self.lag.1),
            });
            lock(&self.lag.0).insert(p, Arc::clone(&progress));
            lock(&self.live).insert(p, generation);
            self.report.assigned += 1;
            if position.is_some() {
                self.report.restored += 1;
            }
            tracing::info!(
                partition = p,
                checkpoint = recovery.checkpoint_id(),
                position = position.unwrap_or(-1),
                bytes = recovery.bytes,
                restore_ms = started.elapsed().as_millis() as u64,
                "partition assigned"
            );
            self.owned.insert(
                p,
                Owned {
                    generation,
                    actor,
                    handle,
                    credits: Arc::new(Semaphore::new(self.settings.batch_credits)),
                    progress,
                    next_offset: position,
                    records: Vec::new(),
                    data: Vec::new(),
                    paused: false,
                    next_checkpoint,
                    in_flight: None,
                    watch: Watch::new(Instant::now()),
                },
            );
            offsets.insert(p, start_at(p, position, &recovery, next_checkpoint));
        }
        offsets
    }
}

impl<P: Processor> Drop for Worker<P> {
    /// However the worker ends (a panic included), its actors stop.
    fn drop(&mut self) {
        for o in self.owned.values() {
            o.actor.stop(None);
        }
    }
}

/// The input topic's metadata, asked for in short attempts for up to 30 s.
/// The producer connects with the same settings; a client error it saw
/// that says they cannot work (TLS, login) ends the wait at once with that
/// error, instead of a silent retry. (The consumer reports such errors
/// only as codes, without librdkafka's reason.)
fn first_metadata<P: Processor>(
    consumer: &BaseConsumer<GroupContext<P>>,
    sink: &KafkaSink,
    kafka: &KafkaSettings,
) -> Result<rdkafka::metadata::Metadata>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = consumer.fetch_metadata(Some(&kafka.input_topic), Duration::from_secs(1));
        if let Some(why) = sink.settings_error() {
            return Err(Error::Kafka(format!(
                "cannot connect to {} with these settings: {why}",
                kafka.brokers
            )));
        }
        match attempt {
            Ok(metadata) => return Ok(metadata),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Kafka(format!(
                    "reading metadata of {} from {}: {e}",
                    kafka.input_topic, kafka.brokers
                )));
            }
            Err(_) => {}
        }
    }
}

/// The consumer's context: rebalance callbacks and statistics.
struct GroupContext<P: Processor> {
    worker: Mutex<Option<Worker<P>>>,
    topic: String,
    lag: LagHandle,
}

impl<P: Processor> ClientContext for GroupContext<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            return;
        };
        let Some(parts) = v
            .get("topics")
            .and_then(|t| t.get(&self.topic))
            .and_then(|t| t.get("partitions"))
            .and_then(|p| p.as_object())
        else {
            return;
        };
        let progress = lock(&self.lag.0);
        for (p, stats) in parts {
            let offset = |name: &str| stats.get(name).and_then(|v| v.as_i64()).filter(|v| *v >= 0);
            let (Ok(p), Some(hi)) = (p.parse::<i32>(), offset("hi_offset")) else {
                continue;
            };
            let Some(pr) = progress.get(&p) else {
                continue;
            };
            let m = &pr.m;
            m.high_watermark.store(hi, Ordering::Relaxed);
            pr.fetched
                .store(offset("next_offset").unwrap_or(-1), Ordering::Relaxed);
            pr.low
                .store(offset("lo_offset").unwrap_or(-1), Ordering::Relaxed);
            let end = offset("ls_offset").map_or(hi, |ls| ls.min(hi));
            pr.end.store(end, Ordering::Relaxed);
            // Before this worker's first checkpoint of the partition, the
            // group's committed offset is what is covered; an empty
            // partition (nothing between low and high watermark) has
            // nothing to cover or process.
            let empty = offset("lo_offset") == Some(hi);
            let known = if empty {
                Some(hi)
            } else {
                offset("committed_offset")
            };
            if let Some(at) = known {
                let _ = m
                    .committed
                    .compare_exchange(-1, at, Ordering::Relaxed, Ordering::Relaxed);
                if empty {
                    let _ =
                        m.processed
                            .compare_exchange(-1, at, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
        }
        drop(progress);
        for lag in self.lag.snapshot() {
            tracing::debug!(
                partition = lag.partition,
                high_watermark = lag.high_watermark,
                behind_committed = lag.behind_committed(),
                behind_processed = lag.behind_processed(),
                "consumer lag"
            );
        }
    }
}

impl<P: Processor> ConsumerContext for GroupContext<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let mut guard = lock(&self.worker);
        let Some(w) = guard.as_mut() else {
            // The worker has stopped (its partitions are released): only
            // let the consumer finish leaving.
            let r = match (err, cooperative) {
                (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, true) => {
                    consumer.incremental_assign(tpl)
                }
                (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, false) => {
                    consumer.assign(tpl)
                }
                (_, true) => consumer.incremental_unassign(tpl),
                (_, false) => consumer.unassign(),
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "rebalance while leaving");
            }
            return;
        };
        let mine: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let span = tracing::info_span!("rebalance", ?err, partitions = ?mine);
        let _enter = span.enter();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                w.metrics.rebalanced(Rebalance::Assigned);
                // Ready once the group has assigned (even nothing) and the
                // restores below are done.
                w.metrics.set_started();
                for (p, offset) in w.assign(&mine) {
                    if let Some(offset) = offset
                        && let Err(e) = tpl.set_partition_offset(&self.topic, p, offset)
                    {
                        w.fatal
                            .get_or_insert(format!("partition {p}: offset {offset:?}: {e}"));
                    }
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                // A partition paused when it was last revoked from this
                // worker would stay paused: the flag outlives assignments.
                assigned.and_then(|()| consumer.resume(tpl))
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                w.metrics.rebalanced(if lost {
                    Rebalance::Lost
                } else {
                    Rebalance::Revoked
                });
                w.revoke(consumer, &mine, lost);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; releasing every partition");
                w.metrics.rebalanced(Rebalance::Lost);
                w.release_all(consumer, true);
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            w.fatal.get_or_insert(format!("applying a rebalance: {e}"));
        }
    }
}

/// A job over a Kafka topic, run by one worker of a consumer group. Build
/// it with [`KafkaJob::new`] and the setters, then
/// [`run_until`](KafkaJob::run_until).
pub struct KafkaJob<P: Processor> {
    processor: P,
    settings: Settings,
    kafka: Option<KafkaSettings>,
    decoder: Option<Arc<dyn Decode<P::Key, P::In>>>,
    clock: Arc<dyn Clock>,
    trigger: CheckpointTrigger,
    lag: LagHandle,
    telemetry: Option<Telemetry>,
}

impl<P: Processor> KafkaJob<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    /// A job running `processor` with default settings.
    pub fn new(processor: P) -> Self {
        Self {
            processor,
            settings: Settings::default(),
            kafka: None,
            decoder: None,
            clock: Arc::new(SystemClock),
            trigger: CheckpointTrigger::default(),
            lag: LagHandle::default(),
            telemetry: None,
        }
    }

    /// Reports metrics to `telemetry` and serves its admin endpoints while
    /// the job runs.
    pub fn telemetry(mut self, telemetry: &Telemetry) -> Self {
        self.telemetry = Some(telemetry.clone());
        self
    }

    /// Replaces the job settings (`partitions` is taken from the topic;
    /// checkpoints are required).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Where to read and write.
    pub fn kafka(mut self, kafka: KafkaSettings) -> Self {
        self.kafka = Some(kafka);
        self
    }

    /// Decodes each record value with `decoder`.
    pub fn decoder(mut self, decoder: impl Decode<P::Key, P::In>) -> Self {
        self.decoder = Some(Arc::new(decoder));
        self
    }

    /// Uses `clock` for processing time.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A handle that requests checkpoints of every owned partition now.
    pub fn checkpoint_trigger(&self) -> CheckpointTrigger {
        self.trigger.clone()
    }

    /// A handle that reads the consumer lag while the job runs.
    pub fn lag_handle(&self) -> LagHandle {
        self.lag.clone()
    }

    /// Runs until `shutdown` completes (or the job fails): then takes a
    /// final checkpoint of every owned partition, commits their offsets and
    /// leaves the group.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<KafkaReport> {
        let started = Instant::now();
        let (metrics, _admin) = telemetry::for_job(self.telemetry.as_ref()).await?;
        let kafka = self
            .kafka
            .ok_or_else(|| Error::Config("the job has no Kafka settings".into()))?;
        kafka.validate()?;
        let decoder = self
            .decoder
            .ok_or_else(|| Error::Config("the job has no decoder".into()))?;
        let mut settings = self.settings;
        let checkpoints = settings.checkpoints.clone().ok_or_else(|| {
            Error::Config(
                "a Kafka job needs a checkpoint store (its state must follow its partitions)"
                    .into(),
            )
        })?;
        let interval = checkpoints.interval;

        let mut config = ClientConfig::new();
        config
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("statistics.interval.ms", "1000")
            // When its local queue is full (queued.max.messages.kbytes),
            // librdkafka waits this long before fetching the partition
            // again. The poll thread empties the queue in well under its
            // default of 1 s, and then sat idle: 10 ms tripled the job's
            // rate on realistic batches (BENCHMARKS.md).
            .set("fetch.queue.backoff.ms", "10");
        if let Some(id) = &kafka.instance_id {
            config.set("group.instance.id", id);
        }
        for (k, v) in kafka.properties.for_consumer() {
            config.set(k, v);
        }
        reserve(
            &mut config,
            &[
                ("bootstrap.servers", &kafka.brokers),
                ("group.id", &kafka.group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
            ],
        )?;
        let producer_config: Vec<(String, String)> =
            kafka.properties.for_producer().cloned().collect();
        let sink = Arc::new(KafkaSink::with_config(
            &kafka.brokers,
            &kafka.output_topic,
            kafka.dead_letter_topic.as_deref(),
            &producer_config,
        )?);

        let (stop, watcher) = watch_shutdown(
            shutdown,
            "final checkpoints, then leaving the group",
            &metrics,
        );
        let runtime = tokio::runtime::Handle::current();
        let processor = Arc::new(self.processor);
        let clock = self.clock;
        let trigger = self.trigger;
        let lag = self.lag;
        let result = tokio::task::spawn_blocking(move || -> Result<KafkaReport> {
            let consumer: BaseConsumer<GroupContext<P>> = config
                .create_with_context(GroupContext {
                    worker: Mutex::new(None),
                    topic: kafka.input_topic.clone(),
                    lag: lag.clone(),
                })
                .map_err(|e| {
                    Error::Kafka(format!(
                        "creating a consumer for {}: {}",
                        kafka.brokers,
                        super::config::client_error(&e)
                    ))
                })?;
            let metadata = first_metadata(&consumer, &sink, &kafka)?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == kafka.input_topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if partitions == 0 {
                return Err(Error::Config(format!(
                    "input topic {} does not exist on {} (or has no partitions)",
                    kafka.input_topic, kafka.brokers
                )));
            }
            settings.partitions = partitions as u32;
            settings.validate()?;
            let env = StateEnv::new(&settings.state_dir, settings.memory)?;
            let _lock = lock_state_dir(&settings)?;
            // A job is its group unless told otherwise.
            let job_id = job_id(&settings, || kafka.group.clone())?;
            check_layout(&settings, &format!("kafka:{}", kafka.input_topic), &job_id)?;
            let local_dir = clear_local_checkpoints(&settings)?;
            let _job = metrics.job_started(&env, interval);

            let (uploads_tx, uploads_rx) = mpsc::channel();
            let (done_tx, done_rx) = mpsc::channel();
            let outlet = Arc::new(KafkaOutlet {
                sink: Arc::clone(&sink),
                input_topic: kafka.input_topic.clone(),
                uploads: Mutex::new(Some(uploads_tx)),
                failure: Failure::default(),
            });
            let live: Live = Arc::default();
            let uploader = {
                let u = Uploader {
                    outlet: Arc::clone(&outlet),
                    live: Arc::clone(&live),
                    root: Arc::clone(&checkpoints.store),
                    topic: kafka.input_topic.clone(),
                    delivery_timeout: kafka.delivery_timeout,
                    metrics: metrics.clone(),
                };
                std::thread::Builder::new()
                    .name("weir-upload".into())
                    .spawn(move || upload_loop(u, uploads_rx, done_tx))
                    .map_err(|e| Error::Io {
                        what: "starting the upload thread".into(),
                        source: e,
                    })?
            };
            *lock(&consumer.context().worker) = Some(Worker {
                settings: settings.clone(),
                kafka: kafka.clone(),
                env,
                processor,
                clock,
                decoder,
                outlet: Arc::clone(&outlet),
                store: Arc::clone(&checkpoints.store),
                job_id: job_id.clone(),
                local_dir,
                runtime,
                owned: BTreeMap::new(),
                live,
                generations: 0,
                lag,
                metrics: metrics.clone(),
                done: done_rx,
                to_commit: BTreeMap::new(),
                joined: started,
                fatal: None,
                last_error: None,
                fenced: Vec::new(),
                released: BTreeMap::new(),
                report: KafkaReport::default(),
            });
            consumer
                .subscribe(&[&kafka.input_topic])
                .map_err(|e| Error::Kafka(format!("subscribing to {}: {e}", kafka.input_topic)))?;
            tracing::info!(topic = %kafka.input_topic, group = %kafka.group, partitions, "joined the group");

            let outcome = poll_loop(&consumer, &stop, interval, &trigger);
            // Final checkpoints of everything still owned, then leave.
            let report = {
                let mut guard = lock(&consumer.context().worker);
                let w = guard.as_mut().expect("worker set above");
                let lost = outcome.is_err() || w.fatal.is_some();
                w.release_all(&consumer, lost);
                let fatal = w.fatal.clone();
                let report = w.report.clone();
                *guard = None;
                (report, fatal)
            };
            consumer.unsubscribe();
            drop(consumer);
            lock(&outlet.uploads).take();
            let _ = uploader.join();
            outcome?;
            if let Some(f) = report.1.or_else(|| outlet.failure()) {
                return Err(Error::Failed(f));
            }
            Ok(report.0)
        })
        .await
        .map_err(|e| Error::Actor(format!("poll thread failed: {e}")))?;
        watcher.abort();
        let mut report = result?;
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// How long a partition released because another worker took over its
/// checkpoints waits for the group to take it away (a stale member learns
/// that within a session timeout) before this worker takes it back.
const REACQUIRE_AFTER: Duration = Duration::from_secs(20);

/// How long a worker waits for its first assignment before `/readyz` says
/// ready without one (longer than the default session timeout).
const READY_WITHOUT_ASSIGNMENT: Duration = Duration::from_secs(60);

/// Polls until stopped or failed; routes records, hands batches to actors,
/// drives checkpoints and commits.
fn poll_loop<P: Processor>(
    consumer: &BaseConsumer<GroupContext<P>>,
    stop: &AtomicBool,
    interval: Option<Duration>,
    trigger: &CheckpointTrigger,
) -> Result<()>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    let ctx = consumer.context();
    let mut next_checkpoint = interval.map(|i| Instant::now() + i);
    let mut last_warning: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let busy = {
            let mut guard = lock(&ctx.worker);
            let w = guard.as_mut().expect("worker set");
            while let Ok(d) = w.done.try_recv() {
                w.on_done(d);
            }
            w.release_fenced(consumer);
            if let Some(f) = w.fatal.clone().or_else(|| w.outlet.failure()) {
                return Err(Error::Failed(f));
            }
            if let Some((code, why)) = consumer.client().fatal_error() {
                return Err(Error::Kafka(format!("consumer failed ({code}): {why}")));
            }
            w.commit(consumer, CommitMode::Async);
            w.flush(consumer);
            w.watch_inputs(consumer);
            // The group normally answers the join with an assignment (maybe
            // empty) well within this; a worker still waiting says ready
            // anyway rather than hold up a rollout.
            if !w.metrics.started() && w.joined.elapsed() > READY_WITHOUT_ASSIGNMENT {
                tracing::warn!("no assignment from the group yet; reporting ready anyway");
                w.metrics.set_started();
            }
            let due = next_checkpoint.is_some_and(|t| Instant::now() >= t);
            let asked = trigger.0.notified().now_or_never().is_some();
            if due || asked {
                w.checkpoint_all();
                next_checkpoint = interval.map(|i| Instant::now() + i);
            }
            w.owned.values().any(|o| !o.records.is_empty())
        };
        let mut timeout = if busy {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
        };
        // A burst of records, then back to the housekeeping above.
        for _ in 0..5_000 {
            let Some(polled) = consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            match polled {
                Ok(msg) => {
                    let mut guard = lock(&ctx.worker);
                    if let Some(w) = guard.as_mut() {
                        w.route(consumer, msg.partition(), msg.offset(), msg.payload());
                    }
                }
                Err(e) => {
                    if let Some(w) = lock(&ctx.worker).as_mut() {
                        w.metrics.consumer_error();
                        w.last_error = Some((Instant::now(), e.to_string()));
                    }
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        tracing::warn!(error = %e, "consumer error (retrying)");
                        last_warning = Some(Instant::now());
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_measured_from_the_high_watermark() {
        let lag = Lag {
            partition: 3,
            high_watermark: Some(1_000),
            committed: Some(400),
            processed: Some(990),
        };
        assert_eq!(lag.behind_committed(), Some(600));
        assert_eq!(lag.behind_processed(), Some(10));
        let unknown = Lag {
            high_watermark: None,
            ..lag
        };
        assert_eq!(unknown.behind_committed(), None);
        // Statistics lag behind processing: never negative.
        let ahead = Lag {
            high_watermark: Some(980),
            ..lag
        };
        assert_eq!(ahead.behind_processed(), Some(0));
    }

    #[test]
    fn record_keys_are_the_plain_bytes_or_big_endian_integers() {
        assert_eq!(&*"10.0.0.1".to_string().record_key(), b"10.0.0.1");
        assert_eq!(&*7u32.record_key(), &[0, 0, 0, 7]);
        assert_eq!(&*(-1i64).record_key(), &[0xff; 8]);
    }

    #[test]
    fn settings_name_what_is_missing() {
        let mut k = KafkaSettings::new("h:9092", "in", "out", "g");
        k.validate().expect("valid");
        k.group = " ".into();
        let err = k.validate().unwrap_err().to_string();
        assert!(err.contains("group"), "{err}");
    }
}
