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
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use serde::Serialize;
use weir_actors::runtime::{Outlet, PartitionMsg};
use weir_actors::{Clock, Counters, DeadLetter, Processor, SystemClock};
use weir_state::StateEnv;

use crate::checkpoint::{Coordinator, DEAD_LETTER_SINK, OUTPUT_SINK, Recovery, Status, recover};
use crate::outlet::SinkOutlet;
use crate::sink::Sink;
use crate::source::Source;
use crate::telemetry::{self, PartitionMetrics, Telemetry};
use crate::{Error, Result};

mod feed;

use crate::runtime::{
    check_layout, clear_local_checkpoints, derived_job_id, job_id, lock_state_dir, spawn_partition,
    watch_shutdown,
};
use feed::{feed, inject, inject_requested};

use crate::runtime::{CheckpointTrigger, Decode, Settings};

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
        let (actors, handles) = spawn_all(
            &processor,
            &env,
            &settings,
            &self.clock,
            &outlet,
            &local_dir,
            &progress,
        )
        .await?;

        let startup = started.elapsed();
        metrics.set_started();
        let (stop, watcher) = watch_shutdown(shutdown, "finishing in-flight work", &metrics);
        let ticker = coordinator.as_ref().map(|c| {
            let interval = settings.checkpoints.as_ref().and_then(|s| s.interval);
            spawn_ticker(Arc::clone(c), self.trigger.clone(), interval)
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
                final_checkpoint(c, &actors, &outlet, end.position).await?;
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

/// Asks `c` for a checkpoint every `interval` and whenever `trigger` is
/// pulled; the first one interval in, not at once.
fn spawn_ticker(
    c: Arc<Coordinator>,
    trigger: CheckpointTrigger,
    interval: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = interval.map(|d| {
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
}

/// The last checkpoint of a run, at input `position`: a barrier requested
/// but not injected before the feed ended goes in first. Returns early if
/// the outlet failed (the run fails with its reason).
async fn final_checkpoint<K, V, O>(
    c: &Coordinator,
    actors: &[ActorRef<PartitionMsg<K, V>>],
    outlet: &SinkOutlet<O>,
    position: u64,
) -> Result<()>
where
    K: Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    inject_requested(Some(c), actors, outlet, position)?;
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
    inject(actors, outlet, id, position)?;
    c.wait(id).await?;
    Ok(())
}

/// Every partition's actor: returns their refs and join handles.
type Spawned<K, V> = (
    Vec<ActorRef<PartitionMsg<K, V>>>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Starts every partition's actor over its RocksDB instance.
async fn spawn_all<P: Processor>(
    processor: &Arc<P>,
    env: &StateEnv,
    settings: &Settings,
    clock: &Arc<dyn Clock>,
    outlet: &Arc<SinkOutlet<P::Out>>,
    local_dir: &std::path::Path,
    progress: &[Arc<PartitionMetrics>],
) -> Result<Spawned<P::Key, P::In>> {
    let n = settings.partitions;
    let mut actors = Vec::with_capacity(n as usize);
    let mut handles = Vec::with_capacity(n as usize);
    for p in 0..n {
        let (actor, handle) = spawn_partition(
            processor,
            env,
            settings,
            p,
            clock,
            outlet.clone() as Arc<dyn Outlet<P::Key, P::Out>>,
            local_dir,
            &progress[p as usize],
        )
        .await?;
        actors.push(actor);
        handles.push(handle);
    }
    Ok((actors, handles))
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
