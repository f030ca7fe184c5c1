//! The job: source -> decoder -> partitions (key actors) -> sink.
//!
//! [`Job`] wires a [`Source`] of lines, a [`Decode`] function that turns a
//! line into a keyed, timestamped record, a [`Processor`], a [`Sink`] for its
//! outputs and one for dead letters. Records are routed to partitions by a
//! hash of their key ([`crate::partitioner`]); each partition is a ractor
//! [`PartitionActor`] owning one RocksDB instance.
//!
//! Threads: the source reads and decodes on a blocking thread and sends
//! batches (one per partition per chunk) to the partition actors, which run
//! on the tokio runtime. Each partition grants a few batch credits
//! (permits); the source waits for one before sending, so memory stays
//! bounded when processing is slower than reading.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use weir_actors::runtime::{
    Envelope, InputBatch, Outlet, PartitionActor, PartitionArgs, PartitionCore, PartitionMsg,
};
use weir_actors::{Clock, CoreConfig, Counters, DeadLetter, Processor, SystemClock};
use weir_state::{KeyCodec, MemoryBudget, StateEnv};

use crate::checkpoint::{
    CheckpointSettings, Coordinator, DEAD_LETTER_SINK, OUTPUT_SINK, Recovery, Status, recover,
};
use crate::outlet::SinkOutlet;
use crate::partitioner::partition_of;
use crate::sink::Sink;
use crate::source::Source;
use crate::telemetry::{self, Advance, BatchDone, Metrics, PartitionMetrics, Telemetry};
use crate::{Error, Result};

/// A decoded input record: its key, event time and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<K, V> {
    pub key: K,
    /// Event time, ms since the epoch.
    pub timestamp: Option<i64>,
    pub value: V,
}

/// Turns one input line into a record, or says why it cannot.
pub trait Decode<K, V>: Send + Sync + 'static {
    /// Decodes `line` (without its line end).
    fn decode(&self, line: &[u8]) -> std::result::Result<Decoded<K, V>, String>;
}

impl<K, V, F> Decode<K, V> for F
where
    F: Fn(&[u8]) -> std::result::Result<Decoded<K, V>, String> + Send + Sync + 'static,
{
    fn decode(&self, line: &[u8]) -> std::result::Result<Decoded<K, V>, String> {
        self(line)
    }
}

/// How a job runs. Every field has a default suited to a laptop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Partitions the input is split into (each with its own RocksDB).
    pub partitions: u32,
    /// Where partition state lives.
    pub state_dir: PathBuf,
    /// RocksDB memory for all partitions together.
    pub memory: MemoryBudget,
    /// Most key actors live at once, all partitions together.
    pub live_actor_cap: usize,
    /// Keys idle this long (processing time) are passivated.
    pub idle_passivation: Option<Duration>,
    /// Bounded out-of-orderness of event time.
    pub max_out_of_orderness: Duration,
    /// A partition without records this long advances its watermark with
    /// processing time.
    pub idle_watermark: Option<Duration>,
    /// How often partitions look at processing time.
    pub tick: Duration,
    /// Attempts for retryable failures before dead-lettering.
    pub max_attempts: u32,
    /// First retry back-off (doubles, capped at one second).
    pub retry_backoff: Duration,
    /// Batches in flight per partition.
    pub batch_credits: usize,
    /// Most timers one key fires in a row in one firing round, each set by
    /// the `on_timer` call before it; a key past it waits for the next round
    /// (at the end of input: its timers stay stored), counted and logged.
    pub max_timer_chain: u32,
    /// Checkpointing (`None`: no checkpoints; every run starts empty).
    pub checkpoints: Option<CheckpointSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            partitions: 4,
            state_dir: PathBuf::from("weir-state"),
            memory: MemoryBudget::default(),
            live_actor_cap: 100_000,
            idle_passivation: Some(Duration::from_secs(60)),
            max_out_of_orderness: Duration::from_secs(5),
            idle_watermark: Some(Duration::from_secs(10)),
            tick: Duration::from_millis(100),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(10),
            batch_credits: 4,
            max_timer_chain: weir_actors::runtime::DEFAULT_MAX_TIMER_CHAIN,
            checkpoints: None,
        }
    }
}

impl Settings {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.partitions == 0 {
            return Err(Error::Config("partitions must be at least 1".into()));
        }
        if self.live_actor_cap == 0 {
            return Err(Error::Config("live actor cap must be at least 1".into()));
        }
        if self.max_attempts == 0 {
            return Err(Error::Config("max attempts must be at least 1".into()));
        }
        if self.tick.is_zero() {
            return Err(Error::Config("tick must be longer than zero".into()));
        }
        if self.batch_credits == 0 {
            return Err(Error::Config("batch credits must be at least 1".into()));
        }
        if self.max_timer_chain == 0 {
            return Err(Error::Config("max timer chain must be at least 1".into()));
        }
        Ok(())
    }

    fn core_config(&self, partition: u32) -> CoreConfig {
        let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
        CoreConfig {
            partition,
            live_actor_cap: (self.live_actor_cap / self.partitions as usize).max(1),
            idle_passivation_ms: self.idle_passivation.map(ms),
            out_of_orderness_ms: Some(ms(self.max_out_of_orderness)),
            idle_watermark_ms: self.idle_watermark.map(ms),
            max_attempts: self.max_attempts,
            retry_backoff: self.retry_backoff,
            max_timer_chain: self.max_timer_chain,
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Lines read (blank lines excluded).
    pub lines: u64,
    /// Lines that did not decode (dead-lettered).
    pub decode_errors: u64,
    /// Partition counters, summed.
    pub totals: Counters,
    /// Each partition's counters.
    pub partitions: Vec<Counters>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The run was stopped (shutdown signal) before its input ended; its
    /// last checkpoint lets the next run resume.
    pub stopped: bool,
    /// What recovery restored at start.
    pub recovery: Recovery,
    /// From start until every partition was restored, opened and running.
    pub startup: Duration,
    /// Checkpoints taken.
    pub checkpoints: Status,
}

impl Report {
    /// Records dead-lettered, decode errors included.
    pub fn dead_lettered(&self) -> u64 {
        self.decode_errors + self.totals.dead_lettered
    }

    /// Lines per second.
    pub fn lines_per_sec(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Asks a running job for a checkpoint now. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CheckpointTrigger(pub(crate) Arc<Notify>);

impl CheckpointTrigger {
    /// Requests a checkpoint (ignored while one is in flight).
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// A runnable job. Build it with [`Job::new`] and the setters, then
/// [`run`](Job::run) it.
pub struct Job<P: Processor> {
    processor: P,
    settings: Settings,
    source: Option<Box<dyn Source>>,
    decoder: Option<Arc<dyn Decode<P::Key, P::In>>>,
    sink: Option<Box<dyn Sink<P::Out>>>,
    dead_letters: Option<Box<dyn Sink<DeadLetter>>>,
    clock: Arc<dyn Clock>,
    trigger: CheckpointTrigger,
    telemetry: Option<Telemetry>,
}

/// How the feed thread ended.
struct FeedEnd {
    lines: u64,
    decode_errors: u64,
    /// Input position after the last routed chunk.
    position: u64,
    /// Stopped by a shutdown request rather than by the end of input.
    stopped: bool,
}

impl<P: Processor> Job<P>
where
    P::Out: Serialize,
{
    /// A job running `processor` with default settings.
    pub fn new(processor: P) -> Self {
        Self {
            processor,
            settings: Settings::default(),
            source: None,
            decoder: None,
            sink: None,
            dead_letters: None,
            clock: Arc::new(SystemClock),
            trigger: CheckpointTrigger::default(),
            telemetry: None,
        }
    }

    /// Reports metrics to `telemetry` and serves its admin endpoints while
    /// the job runs.
    pub fn telemetry(mut self, telemetry: &Telemetry) -> Self {
        self.telemetry = Some(telemetry.clone());
        self
    }

    /// Replaces all settings.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Reads lines from `source`.
    pub fn source(mut self, source: impl Source) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Decodes each line with `decoder`.
    pub fn decoder(mut self, decoder: impl Decode<P::Key, P::In>) -> Self {
        self.decoder = Some(Arc::new(decoder));
        self
    }

    /// Writes outputs to `sink`.
    pub fn sink(mut self, sink: impl Sink<P::Out>) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Writes dead letters to `sink`.
    pub fn dead_letters(mut self, sink: impl Sink<DeadLetter>) -> Self {
        self.dead_letters = Some(Box::new(sink));
        self
    }

    /// Uses `clock` for processing time.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A handle that requests checkpoints on demand while the job runs.
    pub fn checkpoint_trigger(&self) -> CheckpointTrigger {
        self.trigger.clone()
    }

    /// Runs the job until its source ends: fires every event-time timer,
    /// writes all state, takes a final checkpoint (when checkpoints are on)
    /// and commits the sinks.
    pub async fn run(self) -> Result<Report> {
        self.run_until(std::future::pending()).await
    }

    /// Like [`run`](Job::run), but stops early when `shutdown` completes:
    /// work in flight is finished, a final checkpoint is taken and the job
    /// returns with [`Report::stopped`] set, without closing windows (the
    /// next run resumes them).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Report> {
        self.settings.validate()?;
        let started = Instant::now();
        let mut source = self
            .source
            .ok_or_else(|| Error::Config("the job has no source".into()))?;
        let decoder = self
            .decoder
            .ok_or_else(|| Error::Config("the job has no decoder".into()))?;
        let sink = self
            .sink
            .ok_or_else(|| Error::Config("the job has no sink".into()))?;
        let dlq = self
            .dead_letters
            .ok_or_else(|| Error::Config("the job has no dead-letter sink".into()))?;
        let settings = self.settings;
        let n = settings.partitions;
        let (metrics, _admin) = telemetry::for_job(self.telemetry.as_ref()).await?;
        let env = StateEnv::new(&settings.state_dir, settings.memory)?;
        let _lock = lock_state_dir(&settings)?;
        let job_id = job_id(&settings, || {
            // The same file however its path is spelled.
            let input = source.describe();
            let input = std::fs::canonicalize(&input).map_or(input, |p| p.display().to_string());
            derived_job_id(&input, std::any::type_name::<P>())
        })?;
        check_layout(&settings, &n.to_string(), &job_id)?;
        let interval = settings.checkpoints.as_ref().and_then(|c| c.interval);
        let _job = metrics.job_started(&env, interval);
        let progress: Vec<Arc<PartitionMetrics>> = (0..n)
            .map(|p| {
                let pm = metrics.set_owned(p, Some(env.partition_dir(p)));
                pm.count_from_zero(settings.checkpoints.is_some());
                pm
            })
            .collect();

        // Recovery: restore the newest usable checkpoint, or start empty.
        let (recovery, area) = match &settings.checkpoints {
            Some(c) => {
                let (area, owner, recovery) = recover(c, &job_id, &env, n, &metrics)?;
                (recovery, Some((area, owner)))
            }
            None => {
                for p in 0..n {
                    env.reset_partition(p)?;
                }
                (Recovery::default(), None)
            }
        };
        let local_dir = clear_local_checkpoints(&settings)?;
        let (coordinator, uploader) = match area {
            Some((area, owner)) => {
                let (coordinator, handle) = Coordinator::start(n, owner, area, &metrics)?;
                (Some(coordinator), Some(handle))
            }
            None => (None, None),
        };
        let outlet = Arc::new(SinkOutlet::new(sink, dlq, n, coordinator.clone()));
        outlet
            .rewind(
                recovery.sink_len(OUTPUT_SINK),
                recovery.sink_len(DEAD_LETTER_SINK),
            )
            .map_err(|e| Error::Io {
                what: "rewinding the sinks to the checkpoint".into(),
                source: e,
            })?;
        let position = recovery.position();
        source.seek(position).map_err(|e| Error::Io {
            what: format!("seeking {} to position {position}", source.describe()),
            source: e,
        })?;

        let processor = Arc::new(self.processor);
        let mut actors = Vec::with_capacity(n as usize);
        let mut handles = Vec::with_capacity(n as usize);
        for p in 0..n {
            let (actor, handle) = spawn_partition(
                &processor,
                &env,
                &settings,
                p,
                &self.clock,
                outlet.clone() as Arc<dyn Outlet<P::Key, P::Out>>,
                &local_dir,
                &progress[p as usize],
            )
            .await?;
            actors.push(actor);
            handles.push(handle);
        }

        let startup = started.elapsed();
        metrics.set_started();
        let (stop, watcher) = watch_shutdown(shutdown, "finishing in-flight work", &metrics);
        let ticker = coordinator.as_ref().map(|c| {
            let c = Arc::clone(c);
            let trigger = self.trigger.clone();
            let interval = settings.checkpoints.as_ref().and_then(|s| s.interval);
            tokio::spawn(async move {
                let mut every = interval.map(|d| {
                    // The first checkpoint one interval in, not at once.
                    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
                    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    i
                });
                loop {
                    tokio::select! {
                        _ = async { match every.as_mut() { Some(i) => { i.tick().await; } None => std::future::pending().await } } => {}
                        _ = trigger.0.notified() => {}
                    }
                    c.request();
                }
            })
        });

        let fed = {
            let actors = actors.clone();
            let outlet = Arc::clone(&outlet);
            let coordinator = coordinator.clone();
            let stop = Arc::clone(&stop);
            let credits = settings.batch_credits;
            let runtime = tokio::runtime::Handle::current();
            let metrics = metrics.clone();
            tokio::task::spawn_blocking(move || {
                feed(
                    source,
                    position,
                    decoder,
                    &actors,
                    &outlet,
                    coordinator.as_deref(),
                    &stop,
                    credits,
                    runtime,
                    &metrics,
                )
            })
        }
        .await
        .map_err(|e| Error::Actor(format!("source thread failed: {e}")))?;
        if let Some(t) = ticker {
            // Abort and wait: a request the ticker was making completes (or
            // never starts) before the final checkpoint logic below.
            t.abort();
            let _ = t.await;
        }

        let mut report = Report {
            recovery,
            startup,
            ..Report::default()
        };
        let outcome = async {
            let end = fed?;
            report.lines = end.lines;
            report.decode_errors = end.decode_errors;
            report.stopped = end.stopped;
            if outlet.has_failed() {
                return Ok(());
            }
            if !end.stopped {
                finish_all(&actors, &mut report).await?;
            }
            if let Some(c) = &coordinator {
                // A barrier requested but not injected before the feed ended
                // goes in now, then the final one.
                inject_requested(Some(c), &actors, &outlet, end.position)?;
                let id = loop {
                    if outlet.has_failed() {
                        return Ok(());
                    }
                    if let Some(id) = c.request() {
                        break id;
                    }
                    let busy = c.status().started;
                    c.wait(busy).await.ok();
                };
                c.take_request()?;
                inject(&actors, &outlet, id, end.position)?;
                c.wait(id).await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        watcher.abort();
        // Finished or stopping: not ready any more.
        metrics.set_shutting_down();
        for actor in &actors {
            actor.stop(None);
        }
        for handle in handles {
            let _ = handle.await;
        }
        if report.stopped && coordinator.is_some() {
            // Partitions kept ticking until stopped: outputs after the final
            // checkpoint would be cut (and maybe written differently) by the
            // next run, so cut them now.
            outlet.rewind_to_last_alignment().map_err(|e| Error::Io {
                what: "rewinding the sinks to the final checkpoint".into(),
                source: e,
            })?;
        }
        if let Some(c) = &coordinator {
            report.checkpoints = c.status();
            c.close();
        }
        if let Some(h) = uploader {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        if let Some(failure) = outlet.failure() {
            return Err(Error::Failed(failure));
        }
        outcome?;
        outlet.commit().map_err(|e| Error::Io {
            what: "committing sinks".into(),
            source: e,
        })?;
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// A flag set once `shutdown` completes (logging what happens next), and
/// the task watching for it (abort it when the job ends first).
pub(crate) fn watch_shutdown(
    shutdown: impl Future<Output = ()> + Send + 'static,
    next: &'static str,
    metrics: &Metrics,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let metrics = metrics.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: {next}");
        metrics.set_shutting_down();
        flag.store(true, Ordering::SeqCst);
    });
    (stop, watcher)
}

/// Local checkpoints of a run that died are of no use: starts clean.
/// Returns the folder where local checkpoints are made.
pub(crate) fn clear_local_checkpoints(settings: &Settings) -> Result<PathBuf> {
    let local_dir = settings.state_dir.join("checkpoints-local");
    match std::fs::remove_dir_all(&local_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            what: format!("clearing {}", local_dir.display()),
            source: e,
        }),
        _ => Ok(local_dir),
    }
}

/// Opens partition `p`'s RocksDB instance (restored beforehand) and starts
/// its actor.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn spawn_partition<P: Processor>(
    processor: &Arc<P>,
    env: &StateEnv,
    settings: &Settings,
    p: u32,
    clock: &Arc<dyn Clock>,
    outlet: Arc<dyn Outlet<P::Key, P::Out>>,
    checkpoint_dir: &std::path::Path,
    progress: &PartitionMetrics,
) -> Result<(
    ActorRef<PartitionMsg<P::Key, P::In>>,
    tokio::task::JoinHandle<()>,
)> {
    let store = env.open_partition(p)?;
    let keys = store
        .db()
        .property_int_value("rocksdb.estimate-num-keys")
        .ok()
        .flatten()
        .unwrap_or(0);
    progress.restore_finished(keys);
    let core = PartitionCore::new(
        Arc::clone(processor),
        store,
        settings.core_config(p),
        Arc::clone(clock),
    )
    .map_err(|source| Error::Partition {
        partition: p,
        source,
    })?;
    let args = PartitionArgs {
        core,
        outlet,
        tick: settings.tick,
        checkpoint_dir: checkpoint_dir.to_path_buf(),
        stats: Arc::clone(&progress.stats),
    };
    Actor::spawn(None, PartitionActor::<P>::default(), args)
        .await
        .map_err(|e| Error::Actor(format!("partition {p} did not start: {e}")))
}

/// Sends barrier `id` at input `position` to every partition and to the
/// sinks' feed input. Everything routed before was sent before it.
fn inject<K, V, O>(
    actors: &[ActorRef<PartitionMsg<K, V>>],
    outlet: &SinkOutlet<O>,
    id: u64,
    position: u64,
) -> Result<()>
where
    K: Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    weir_actors::crash_point!("checkpoint-inject");
    for (p, actor) in actors.iter().enumerate() {
        actor
            .cast(PartitionMsg::Barrier { id, position })
            .map_err(|e| Error::Actor(format!("partition {p} is gone: {e}")))?;
    }
    outlet.feed_barrier(id);
    Ok(())
}

/// Injects the barrier `coordinator` asks for, if any, at `position`.
fn inject_requested<K, V, O>(
    coordinator: Option<&Coordinator>,
    actors: &[ActorRef<PartitionMsg<K, V>>],
    outlet: &SinkOutlet<O>,
    position: u64,
) -> Result<()>
where
    K: Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    match coordinator
        .map(Coordinator::take_request)
        .transpose()?
        .flatten()
    {
        Some(id) => inject(actors, outlet, id, position),
        None => Ok(()),
    }
}

/// A field of the state directory's layout record, if recorded.
fn layout_field(settings: &Settings, name: &str) -> Result<Option<String>> {
    let path = settings.state_dir.join("weir-layout");
    let found = match std::fs::read_to_string(&path) {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    };
    Ok(found
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string))
}

/// The job's id: the one configured, else the one recorded in the state
/// directory, else `derive()`'s.
pub(crate) fn job_id(settings: &Settings, derive: impl FnOnce() -> String) -> Result<String> {
    let id = match settings.checkpoints.as_ref().and_then(|c| c.job_id.clone()) {
        Some(id) => id,
        None => match layout_field(settings, "job")? {
            Some(id) => id,
            None => derive(),
        },
    };
    weir_state::owner::validate_job_id(&id)?;
    Ok(id)
}

/// A file-mode job's id when none is given: the input's name and a hash of
/// the input and the processor type, so another input or another processor
/// is another job.
pub(crate) fn derived_job_id(input: &str, processor: &str) -> String {
    let stem: String = std::path::Path::new(input)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    let stem = stem.trim_start_matches(['.', '_', '-']);
    let mut h = crc32fast::Hasher::new();
    h.update(input.as_bytes());
    h.update(&[0]);
    h.update(processor.as_bytes());
    let hash = h.finalize();
    if stem.is_empty() {
        format!("job-{hash:08x}")
    } else {
        format!("{stem}-{hash:08x}")
    }
}

/// Keys are spread over partitions by hash, so state written with one
/// partition count is unreadable with another: refuse rather than lose it.
/// The snapshot store is recorded too: resuming against another (or an
/// unmounted, empty) store would look like a fresh start and truncate the
/// outputs, so a different store is refused unless told to start empty.
pub(crate) fn check_layout(settings: &Settings, partitions: &str, job: &str) -> Result<()> {
    let path = settings.state_dir.join("weir-layout");
    let store = settings
        .checkpoints
        .as_ref()
        .map_or_else(|| "none".to_string(), |c| c.store.describe());
    let expected = format!("partitions={partitions}\nstore={store}\njob={job}\n");
    let field = |name: &str| layout_field(settings, name);
    if let Some(p) = field("partitions")?
        && p != partitions
    {
        return Err(Error::Config(format!(
            "state directory {} was written with partitions={p}, this job has partitions={partitions}: \
             use the same partitions or a new state directory",
            settings.state_dir.display(),
        )));
    }
    let start_empty = settings.checkpoints.as_ref().is_some_and(|c| c.start_empty);
    if let Some(j) = field("job")?
        && j != job
        && !start_empty
    {
        return Err(Error::Config(format!(
            "state directory {} belongs to job {j}, not {job}: use that job id, a new state \
             directory, or --start-empty to start over",
            settings.state_dir.display()
        )));
    }
    if let Some(s) = field("store")?
        && s != store
        && !start_empty
    {
        return Err(Error::Config(format!(
            "state directory {} belongs to checkpoint store {s}, not {store}: use the same store, \
             a new state directory, or --start-empty to start over",
            settings.state_dir.display()
        )));
    }
    if std::fs::read_to_string(&path).ok().as_deref() != Some(expected.as_str()) {
        std::fs::write(&path, expected).map_err(|source| Error::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
    }
    Ok(())
}

/// Takes the state directory's lock, so two processes never share it.
pub(crate) fn lock_state_dir(settings: &Settings) -> Result<std::fs::File> {
    let path = settings.state_dir.join("weir.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Io {
            what: format!("opening {}", path.display()),
            source: e,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Config(format!(
            "state directory {} is in use by another process",
            settings.state_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io {
            what: format!("locking {}", path.display()),
            source: e,
        }),
    }
}

async fn finish_all<K, V>(
    actors: &[ActorRef<PartitionMsg<K, V>>],
    report: &mut Report,
) -> Result<()>
where
    K: Send + 'static,
    V: Send + 'static,
{
    for (p, actor) in actors.iter().enumerate() {
        let counters = actor
            .call(PartitionMsg::Finish, None)
            .await
            .map_err(|e| Error::Actor(format!("partition {p} did not finish: {e}")))?
            .success_or(())
            .map_err(|_| Error::Actor(format!("partition {p} stopped before finishing")))?;
        add(&mut report.totals, &counters);
        report.partitions.push(counters);
    }
    Ok(())
}

fn add(total: &mut Counters, c: &Counters) {
    total.records += c.records;
    total.late += c.late;
    total.dead_lettered += c.dead_lettered;
    total.emitted += c.emitted;
    total.timers_fired += c.timers_fired;
    total.activations += c.activations;
    total.passivations += c.passivations;
}

/// What the reader thread hands the feed.
enum Chunk {
    Data(u64, Arc<[u8]>),
    End,
    Failed(Error),
}

/// How long the feed waits for input before it looks for barriers and
/// shutdown requests.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// Chunks read ahead.
const READ_AHEAD: usize = 2;

/// Reads `source` on a thread of its own, so that a source that blocks
/// (stdin with no input) never holds up barriers or shutdown. The thread
/// ends when the input does or the feed stops taking chunks (or, blocked in
/// a read, with the process).
fn read_ahead(mut source: Box<dyn Source>) -> Result<Receiver<Chunk>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
    std::thread::Builder::new()
        .name("weir-source".into())
        .spawn(move || {
            let mut buf = Vec::new();
            loop {
                let chunk = match source.next_chunk(&mut buf) {
                    Ok(Some(base)) => Chunk::Data(base, Arc::from(buf.as_slice())),
                    Ok(None) => Chunk::End,
                    Err(e) => Chunk::Failed(Error::Io {
                        what: format!("reading {}", source.describe()),
                        source: e,
                    }),
                };
                let last = !matches!(chunk, Chunk::Data(..));
                if tx.send(chunk).is_err() || last {
                    break;
                }
            }
        })
        .map_err(|e| Error::Io {
            what: "starting the source thread".into(),
            source: e,
        })?;
    Ok(rx)
}

/// The source loop: read chunks, decode lines, route records by key hash,
/// inject requested barriers between chunks. Runs on a blocking thread.
#[allow(clippy::too_many_arguments)]
fn feed<K, V, O>(
    source: Box<dyn Source>,
    start: u64,
    decoder: Arc<dyn Decode<K, V>>,
    actors: &[ActorRef<PartitionMsg<K, V>>],
    outlet: &SinkOutlet<O>,
    coordinator: Option<&Coordinator>,
    stop: &AtomicBool,
    credits: usize,
    runtime: tokio::runtime::Handle,
    metrics: &Metrics,
) -> Result<FeedEnd>
where
    K: KeyCodec + Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    let n = actors.len() as u32;
    let semaphores: Vec<Arc<Semaphore>> =
        (0..n).map(|_| Arc::new(Semaphore::new(credits))).collect();
    let chunks = read_ahead(source)?;
    let mut key_buf = Vec::with_capacity(64);
    let mut end = FeedEnd {
        lines: 0,
        decode_errors: 0,
        position: start,
        stopped: false,
    };
    let mut batches: Vec<Vec<Envelope<K, V>>> = (0..n).map(|_| Vec::new()).collect();
    let progress: Vec<Arc<PartitionMetrics>> = (0..n).map(|p| metrics.partition(p)).collect();
    loop {
        if outlet.has_failed() {
            break;
        }
        if stop.load(Ordering::SeqCst) {
            end.stopped = true;
            break;
        }
        let (base, data) = match chunks.recv_timeout(IDLE_CHECK) {
            Ok(Chunk::Data(base, data)) => (base, data),
            Ok(Chunk::End) => break,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Failed("the source thread stopped".into()));
            }
            Ok(Chunk::Failed(e)) => return Err(e),
            // No input for a while: barriers still go in, between chunks.
            Err(RecvTimeoutError::Timeout) => {
                inject_requested(coordinator, actors, outlet, end.position)?;
                continue;
            }
        };
        let mut dead = Vec::new();
        let mut start = 0usize;
        while start < data.len() {
            let line_end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            let mut content_end = line_end;
            if content_end > start && data[content_end - 1] == b'\r' {
                content_end -= 1;
            }
            let line = &data[start..content_end];
            let position = base + start as u64;
            if !line.iter().all(u8::is_ascii_whitespace) {
                end.lines += 1;
                match decoder.decode(line) {
                    Ok(d) => {
                        key_buf.clear();
                        d.key.encode_key(&mut key_buf);
                        let p = partition_of(&key_buf, n) as usize;
                        batches[p].push(Envelope {
                            key: d.key,
                            timestamp: d.timestamp,
                            value: d.value,
                            position,
                            raw: start..content_end,
                        });
                    }
                    Err(reason) => {
                        end.decode_errors += 1;
                        dead.push(DeadLetter {
                            partition: None,
                            position: Some(position),
                            raw: line.to_vec(),
                            reason,
                        });
                    }
                }
            }
            start = line_end + 1;
        }
        end.position = base + data.len() as u64;
        metrics.input_read(end.position);
        if !dead.is_empty() {
            metrics.unrouted(dead.len() as u64);
            outlet.feed_dead_letters(dead);
        }
        for (p, records) in batches.iter_mut().enumerate() {
            if records.is_empty() {
                continue;
            }
            let permit = runtime
                .block_on(Arc::clone(&semaphores[p]).acquire_owned())
                .map_err(|_| Error::Actor("batch credits closed".into()))?;
            let count = records.len() as u64;
            let pm = &progress[p];
            pm.read(count, 0);
            pm.high_watermark.fetch_add(count as i64, Ordering::Relaxed);
            let done = BatchDone {
                metrics: metrics.clone(),
                partition: Arc::clone(pm),
                since: Instant::now(),
                advance: Advance::By(count as i64),
            };
            let batch = InputBatch {
                data: Arc::clone(&data),
                records: std::mem::take(records),
            };
            actors[p]
                .cast(PartitionMsg::Batch(batch, Some(Box::new((permit, done)))))
                .map_err(|e| Error::Actor(format!("partition {p} is gone: {e}")))?;
        }
        inject_requested(coordinator, actors, outlet, end.position)?;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::derived_job_id;

    #[test]
    fn derived_job_ids_name_the_input_and_tell_jobs_apart() {
        let file = derived_job_id("/data/in/events.cef", "cef::Alerts");
        assert!(file.starts_with("events-"), "{file}");
        let generated = derived_job_id("generator(events=10, keys=2, seed=1)", "cef::Alerts");
        assert!(generated.starts_with("generator-"), "{generated}");
        let other = derived_job_id("/data/in/events.cef", "cef::Other");
        assert_ne!(file, other, "another processor is another job");
        assert_ne!(file, derived_job_id("/data/out/events.cef", "cef::Alerts"));
        for id in [file, generated, other, derived_job_id("(", "p")] {
            weir_state::owner::validate_job_id(&id).expect("a valid job id");
        }
        assert_eq!(
            derived_job_id("/x/.hidden", "p").split('-').next(),
            Some("hidden")
        );
    }
}
