//! The aligned run of a job over a [`Source`]: a feed thread, one actor per
//! partition, and checkpoints that cover every partition at one input
//! position together with the sinks' lengths.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use serde::Serialize;
use weir_actors::runtime::{Outlet, PartitionMsg};
use weir_actors::{Clock, Counters, DeadLetter, Processor};
use weir_state::StateEnv;

use super::feed::{feed, inject, inject_requested};
use super::{JobParts, Report};
use crate::checkpoint::{Coordinator, DEAD_LETTER_SINK, OUTPUT_SINK, Recovery, recover};
use crate::outlet::SinkOutlet;
use crate::runtime::{
    CheckpointTrigger, Decode, Settings, check_layout, clear_local_checkpoints, derived_job_id,
    job_id, lock_state_dir, spawn_partition, watch_shutdown,
};
use crate::sink::Sink;
use crate::source::Source;
use crate::telemetry::{self, Metrics, PartitionMetrics};
use crate::{Error, Result};

/// How the feed thread ended.
pub(super) struct FeedEnd {
    pub lines: u64,
    pub decode_errors: u64,
    /// Input position after the last routed chunk.
    pub position: u64,
    /// Stopped by a shutdown request rather than by the end of input.
    pub stopped: bool,
}

impl FeedEnd {
    /// Counts a line at `position` that reaches no partition (it does not
    /// decode, or is too large) and returns its dead letter.
    pub(super) fn reject(&mut self, position: u64, raw: Vec<u8>, reason: String) -> DeadLetter {
        self.decode_errors += 1;
        DeadLetter {
            partition: None,
            position: Some(position),
            raw,
            reason,
        }
    }
}

/// The state directory of a run, opened and locked.
struct Opened {
    env: StateEnv,
    job_id: String,
    /// Each partition's metrics.
    progress: Vec<Arc<PartitionMetrics>>,
    /// Held for the run.
    _lock: std::fs::File,
    _job: telemetry::JobGuard,
}

/// What recovery restored, and the checkpoint machinery of the run.
struct Restored<O> {
    recovery: Recovery,
    local_dir: PathBuf,
    coordinator: Option<Arc<Coordinator>>,
    uploader: Option<std::thread::JoinHandle<()>>,
    outlet: Arc<SinkOutlet<O>>,
}

/// Runs `parts` over `source` until it ends or `shutdown` completes.
pub(super) async fn run<P: Processor>(
    parts: JobParts<P>,
    mut source: Box<dyn Source>,
    sink: Box<dyn Sink<P::Out>>,
    dlq: Box<dyn Sink<DeadLetter>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Report>
where
    P::Out: Serialize,
{
    let mut settings = parts.settings;
    settings.validate()?;
    // A partition's watermark never follows the wall clock here: with it,
    // records still to be read could turn late while the feed is busy with
    // other partitions, and results would depend on speed. Windows close
    // with event time and at the end of the input.
    settings.idle_watermark = None;
    let started = Instant::now();
    let (metrics, _admin) = telemetry::for_job(parts.telemetry.as_ref()).await?;
    let opened = open::<P>(&settings, &*source, &metrics)?;
    let restored = restore(&settings, &opened, &metrics, sink, dlq)?;
    let position = restored.recovery.position();
    source.seek(position).map_err(|e| Error::Io {
        what: format!("seeking {} to position {position}", source.describe()),
        source: e,
    })?;
    let processor = Arc::new(parts.processor);
    let (actors, handles) = spawn_all(
        &processor,
        &opened.env,
        &settings,
        &parts.clock,
        &restored.outlet,
        &restored.local_dir,
        &opened.progress,
    )
    .await?;

    let _serving = super::query::Serving::start::<P>(
        parts.query,
        parts.telemetry.as_ref(),
        super::query::Owners::fixed(&actors),
    );
    let startup = started.elapsed();
    metrics.set_started();
    let (stop, watcher) = watch_shutdown(shutdown, "finishing in-flight work", &metrics);
    let ticker = restored.coordinator.as_ref().map(|c| {
        let interval = settings.checkpoints.as_ref().and_then(|s| s.interval);
        spawn_ticker(Arc::clone(c), parts.trigger.clone(), interval)
    });
    let fed = spawn_feed(
        source,
        position,
        parts.decoder,
        &actors,
        &restored,
        &stop,
        settings.batch_credits,
        settings.max_record_bytes,
        &metrics,
    )
    .await;
    if let Some(t) = ticker {
        // Abort and wait: a request the ticker was making completes (or
        // never starts) before the final checkpoint logic below.
        t.abort();
        let _ = t.await;
    }

    let mut report = Report {
        recovery: restored.recovery.clone(),
        startup,
        ..Report::default()
    };
    let outcome = finish(fed, &actors, &restored, &mut report).await;
    watcher.abort();
    // Finished or stopping: not ready any more.
    metrics.set_shutting_down();
    for actor in &actors {
        actor.stop(None);
    }
    for handle in handles {
        let _ = handle.await;
    }
    close(restored, &mut report, outcome).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Checks and locks the state directory and names the job.
fn open<P: Processor>(
    settings: &Settings,
    source: &dyn Source,
    metrics: &Metrics,
) -> Result<Opened> {
    let n = settings.partitions;
    let env = StateEnv::new(&settings.state_dir, settings.memory)?;
    let lock = lock_state_dir(settings)?;
    let job_id = job_id(settings, || {
        // The same file however its path is spelled.
        let input = source.describe();
        let input = std::fs::canonicalize(&input).map_or(input, |p| p.display().to_string());
        derived_job_id(&input, std::any::type_name::<P>())
    })?;
    check_layout(settings, &n.to_string(), &job_id)?;
    let interval = settings.checkpoints.as_ref().and_then(|c| c.interval);
    let job = metrics.job_started(&env, interval);
    let progress = (0..n)
        .map(|p| {
            let pm = metrics.set_owned(p, Some(env.partition_dir(p)));
            pm.count_from_zero(settings.checkpoints.is_some());
            pm
        })
        .collect();
    Ok(Opened {
        env,
        job_id,
        progress,
        _lock: lock,
        _job: job,
    })
}

/// Restores the newest usable checkpoint (or starts empty), starts the
/// checkpoint coordinator and rewinds the sinks to the checkpoint.
fn restore<O: Serialize + Send + 'static>(
    settings: &Settings,
    opened: &Opened,
    metrics: &Metrics,
    sink: Box<dyn Sink<O>>,
    dlq: Box<dyn Sink<DeadLetter>>,
) -> Result<Restored<O>> {
    let n = settings.partitions;
    let (recovery, area) = match &settings.checkpoints {
        Some(c) => {
            let (area, owner, recovery) = recover(c, &opened.job_id, &opened.env, n, metrics)?;
            (recovery, Some((area, owner)))
        }
        None => {
            for p in 0..n {
                opened.env.reset_partition(p)?;
            }
            (Recovery::default(), None)
        }
    };
    let local_dir = clear_local_checkpoints(settings)?;
    let (coordinator, uploader) = match area {
        Some((area, owner)) => {
            let (coordinator, handle) = Coordinator::start(n, owner, area, metrics)?;
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
    Ok(Restored {
        recovery,
        local_dir,
        coordinator,
        uploader,
        outlet,
    })
}

/// Reads, decodes and routes `source` from `position` on a blocking thread
/// until it ends or `stop` is set.
#[allow(clippy::too_many_arguments)]
async fn spawn_feed<K, V, O>(
    source: Box<dyn Source>,
    position: u64,
    decoder: Arc<dyn Decode<K, V>>,
    actors: &[ActorRef<PartitionMsg<K, V>>],
    restored: &Restored<O>,
    stop: &Arc<AtomicBool>,
    credits: usize,
    max_record: usize,
    metrics: &Metrics,
) -> Result<FeedEnd>
where
    K: weir_state::KeyCodec + Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    let actors = actors.to_vec();
    let outlet = Arc::clone(&restored.outlet);
    let coordinator = restored.coordinator.clone();
    let stop = Arc::clone(stop);
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
            max_record,
            runtime,
            &metrics,
        )
    })
    .await
    .map_err(|e| Error::Actor(format!("source thread failed: {e}")))?
}

/// After the feed: closes every window if the input ended, then takes the
/// final checkpoint. Returns early if the outlet failed (the run fails with
/// its reason).
async fn finish<K, V, O>(
    fed: Result<FeedEnd>,
    actors: &[ActorRef<PartitionMsg<K, V>>],
    restored: &Restored<O>,
    report: &mut Report,
) -> Result<()>
where
    K: Send + 'static,
    V: Send + 'static,
    O: Send + 'static,
{
    let end = fed?;
    report.records = end.lines;
    report.decode_errors = end.decode_errors;
    report.stopped = end.stopped;
    if restored.outlet.has_failed() {
        return Ok(());
    }
    if !end.stopped {
        finish_all(actors, report).await?;
    }
    if let Some(c) = &restored.coordinator {
        final_checkpoint(c, actors, &restored.outlet, end.position).await?;
    }
    Ok(())
}

/// Once the actors stopped: cuts outputs after the final checkpoint of a
/// stopped run, closes the coordinator, and commits the sinks unless the
/// run failed.
async fn close<O: Send + 'static>(
    restored: Restored<O>,
    report: &mut Report,
    outcome: Result<()>,
) -> Result<()> {
    let Restored {
        coordinator,
        uploader,
        outlet,
        ..
    } = restored;
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
    })
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
    local_dir: &Path,
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

/// Closes every partition's windows (the input ended) and sums their
/// counters into `report`.
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
    total.future += c.future;
    total.dead_lettered += c.dead_lettered;
    total.emitted += c.emitted;
    total.timers_fired += c.timers_fired;
    total.activations += c.activations;
    total.passivations += c.passivations;
}
