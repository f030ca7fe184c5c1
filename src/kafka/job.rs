//! [`KafkaSource`]: a job's input as one worker of a consumer group, and
//! that job's run: clients, threads, the end of the run (see
//! [`super::worker`] for the protocol).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use weir_actors::Processor;
use weir_state::StateEnv;

use super::consumer::{GroupContext, poll_loop};
use super::lag::LagHandle;
use super::output::{Outputs, SinkPair};
use super::settings::{KafkaSettings, RecordKey};
use super::sink::{KafkaSink, reserve};
use super::upload::{KafkaOutlet, Live, Uploader, upload_loop};
use super::worker::{Parts, Worker};
use crate::checkpoint::CheckpointSettings;
use crate::job::query::{Actors, Owners, Serving};
use crate::job::{GroupSource, Input, IntoInput, JobParts, Report, Shutdown, Sinks};
use crate::outlet::Failure;
use crate::partitioner::partition_of;
use crate::runtime::{
    check_layout, clear_local_checkpoints, job_id, lock_state_dir, watch_shutdown,
};
use crate::telemetry::{self, JobGuard, Metrics};
use crate::{Error, Result, lock};

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

/// The input of a job run by one worker of a consumer group: the input
/// topic's partitions are assigned to the group's workers, and each
/// partition is checkpointed on its own and moves with its state. Give it
/// to [`crate::Job::source`]; outputs go to the output topic of its
/// settings unless the job has sinks (a Kafka → file job).
pub struct KafkaSource {
    kafka: KafkaSettings,
    lag: LagHandle,
}

impl KafkaSource {
    /// Reads `kafka.input_topic` as a member of `kafka.group`.
    pub fn new(kafka: KafkaSettings) -> Self {
        Self {
            kafka,
            lag: LagHandle::default(),
        }
    }

    /// A handle that reads the consumer lag while the job runs.
    pub fn lag_handle(&self) -> LagHandle {
        self.lag.clone()
    }
}

impl<P: Processor> IntoInput<P> for KafkaSource
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    fn into_input(self) -> Input<P> {
        Input::group(self)
    }
}

impl<P: Processor> GroupSource<P> for KafkaSource
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    fn run(
        self: Box<Self>,
        parts: JobParts<P>,
        sinks: Option<Sinks<P::Out>>,
        shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = Result<Report>> + Send>> {
        Box::pin(run(parts, *self, sinks, shutdown))
    }
}

/// Runs until `shutdown` completes (or the job fails): then takes a final
/// checkpoint of every owned partition, commits their offsets and leaves
/// the group.
async fn run<P: Processor>(
    parts: JobParts<P>,
    source: KafkaSource,
    sinks: Option<Sinks<P::Out>>,
    shutdown: Shutdown,
) -> Result<Report>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    let started = Instant::now();
    let (metrics, _admin) = telemetry::for_job(parts.telemetry.as_ref()).await?;
    let kafka = source.kafka;
    kafka.validate(sinks.is_none())?;
    let checkpoints = parts.settings.checkpoints.clone().ok_or_else(|| {
        Error::Config(
            "a Kafka job needs a checkpoint store (its state must follow its partitions)".into(),
        )
    })?;
    let config = consumer_config(&kafka)?;
    let (out, producer) = outputs::<P>(&kafka, sinks)?;
    let (stop, watcher) = watch_shutdown(
        shutdown,
        "final checkpoints, then leaving the group",
        &metrics,
    );
    let member = Member {
        parts,
        kafka,
        lag: source.lag,
        checkpoints,
        metrics,
        started,
    };
    let result = tokio::task::spawn_blocking(move || member.run(config, out, producer, &stop))
        .await
        .map_err(|e| Error::Actor(format!("poll thread failed: {e}")))?;
    watcher.abort();
    let mut kafka = result?;
    kafka.elapsed = started.elapsed();
    Ok(Report {
        records: kafka.records,
        decode_errors: kafka.decode_errors,
        elapsed: started.elapsed(),
        stopped: true,
        kafka: Some(kafka),
        ..Report::default()
    })
}

/// Where a worker's outputs go: its sinks, or the output topic (then the
/// producer is returned too).
type Out<P> = (
    Arc<dyn Outputs<<P as Processor>::Key, <P as Processor>::Out>>,
    Option<Arc<KafkaSink>>,
);

fn outputs<P: Processor>(kafka: &KafkaSettings, sinks: Option<Sinks<P::Out>>) -> Result<Out<P>>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    Ok(match sinks {
        Some((sink, dead_letters)) => (Arc::new(SinkPair::new(sink, dead_letters)), None),
        None => {
            let producer_config: Vec<(String, String)> =
                kafka.properties.for_producer().cloned().collect();
            let sink = Arc::new(KafkaSink::with_config(
                &kafka.brokers,
                &kafka.output_topic,
                kafka.dead_letter_topic.as_deref(),
                &producer_config,
            )?);
            (Arc::clone(&sink) as _, Some(sink))
        }
    })
}

/// One member of the consumer group, before it joins.
struct Member<P: Processor> {
    parts: JobParts<P>,
    kafka: KafkaSettings,
    lag: LagHandle,
    checkpoints: CheckpointSettings,
    metrics: Metrics,
    started: Instant,
}

impl<P: Processor> Member<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    /// On the poll thread: joins the group, polls until `stop` is set or
    /// the job fails, then releases every partition and leaves.
    fn run(
        mut self,
        config: ClientConfig,
        out: Arc<dyn Outputs<P::Key, P::Out>>,
        producer: Option<Arc<KafkaSink>>,
        stop: &AtomicBool,
    ) -> Result<KafkaReport> {
        let kafka = &self.kafka.clone();
        let consumer: BaseConsumer<GroupContext<P>> = config
            .create_with_context(GroupContext {
                worker: Mutex::new(None),
                topic: kafka.input_topic.clone(),
                lag: self.lag.clone(),
            })
            .map_err(|e| {
                Error::Kafka(format!(
                    "creating a consumer for {}: {}",
                    kafka.brokers,
                    super::config::client_error(&e)
                ))
            })?;
        let metadata = first_metadata(&consumer, producer.as_deref(), kafka)?;
        let partitions = input_partitions(&metadata, kafka)?;
        let interval = self.checkpoints.interval;
        let trigger = self.parts.trigger.clone();
        let outlet = Arc::new(KafkaOutlet {
            out,
            input_topic: kafka.input_topic.clone(),
            failure: Failure::default(),
        });
        // Queries reach the partitions this worker owns; a key's partition
        // is the one Kafka's partitioner gives its record key.
        let actors: Actors<P::Key, P::In> = Arc::default();
        let _serving = Serving::start::<P>(
            self.parts.query.take(),
            self.parts.telemetry.as_ref(),
            Owners {
                actors: Arc::clone(&actors),
                partitions,
                route: |key, n| partition_of(&key.record_key(), n),
            },
        );
        let (worker, uploader, _guards) = self.worker(partitions, &outlet, actors)?;
        *lock(&consumer.context().worker) = Some(worker);
        let topic = &outlet.input_topic;
        consumer
            .subscribe(&[topic])
            .map_err(|e| Error::Kafka(format!("subscribing to {topic}: {e}")))?;
        tracing::info!(%topic, group = %kafka.group, partitions, "joined the group");

        let outcome = poll_loop(&consumer, stop, interval, &trigger);
        // Final checkpoints of everything still owned, then leave.
        let (report, fatal) = {
            let mut guard = lock(&consumer.context().worker);
            let w = guard.as_mut().expect("worker set above");
            let lost = outcome.is_err() || w.group.failure().is_some();
            w.release_all(&consumer, lost);
            let fatal = w.group.failure().map(str::to_string);
            let report = w.group.report.clone();
            *guard = None;
            (report, fatal)
        };
        consumer.unsubscribe();
        // The worker (and with it the upload channel) is gone: the upload
        // thread ends.
        drop(consumer);
        let _ = uploader.join();
        outcome?;
        if let Some(f) = fatal.or_else(|| outlet.failure()) {
            return Err(Error::Failed(f));
        }
        Ok(report)
    }

    /// Opens the state directory for a topic of `partitions` partitions
    /// and starts the upload thread: returns the worker, the upload
    /// thread and what must be held while it runs.
    fn worker(
        self,
        partitions: u32,
        outlet: &Arc<KafkaOutlet<P::Key, P::Out>>,
        actors: Actors<P::Key, P::In>,
    ) -> Result<(Worker<P>, std::thread::JoinHandle<()>, Held)> {
        let Self {
            parts,
            kafka,
            lag,
            checkpoints,
            metrics,
            started,
        } = self;
        let mut settings = parts.settings;
        settings.partitions = partitions;
        settings.validate()?;
        let env = StateEnv::new(&settings.state_dir, settings.memory)?;
        let state_lock = lock_state_dir(&settings)?;
        // A job is its group unless told otherwise.
        let job_id = job_id(&settings, || kafka.group.clone())?;
        check_layout(&settings, &format!("kafka:{}", kafka.input_topic), &job_id)?;
        let local_dir = clear_local_checkpoints(&settings)?;
        let job = metrics.job_started(&env, checkpoints.interval);

        let (uploads_tx, uploads_rx) = mpsc::channel();
        let (inbox_tx, inbox_rx) = mpsc::channel();
        let live: Live = Arc::default();
        let uploader = Uploader {
            outlet: Arc::clone(outlet),
            live: Arc::clone(&live),
            root: Arc::clone(&checkpoints.store),
            topic: kafka.input_topic.clone(),
            delivery_timeout: kafka.delivery_timeout,
            metrics: metrics.clone(),
        };
        let done = inbox_tx.clone();
        let uploader = std::thread::Builder::new()
            .name("weir-upload".into())
            .spawn(move || upload_loop(uploader, uploads_rx, done))
            .map_err(|e| Error::Io {
                what: "starting the upload thread".into(),
                source: e,
            })?;
        let worker = Worker::new(
            Parts {
                settings,
                kafka,
                env,
                processor: Arc::new(parts.processor),
                clock: parts.clock,
                decoder: parts.decoder,
                outlet: Arc::clone(outlet),
                store: checkpoints.store,
                job_id,
                local_dir,
                lag,
                metrics,
                live,
                actors,
                inbox: inbox_tx,
                uploads: uploads_tx,
                joined: started,
            },
            inbox_rx,
        );
        Ok((worker, uploader, (state_lock, job)))
    }
}

/// Held while the worker runs: the state directory's lock and the job's
/// metrics registration.
type Held = (std::fs::File, JobGuard);

/// The input topic's metadata, asked for in short attempts for up to 30 s.
/// The producer connects with the same settings; a client error it saw
/// that says they cannot work (TLS, login) ends the wait at once with that
/// error, instead of a silent retry. (The consumer reports such errors
/// only as codes, without librdkafka's reason.)
fn first_metadata<P: Processor>(
    consumer: &BaseConsumer<GroupContext<P>>,
    producer: Option<&KafkaSink>,
    kafka: &KafkaSettings,
) -> Result<rdkafka::metadata::Metadata>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = consumer.fetch_metadata(Some(&kafka.input_topic), Duration::from_secs(1));
        if let Some(why) = producer.and_then(KafkaSink::settings_error) {
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

/// The consumer's configuration: weir's defaults, the user's properties,
/// then the properties the guarantees rest on (which cannot be changed).
fn consumer_config(kafka: &KafkaSettings) -> Result<ClientConfig> {
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
    Ok(config)
}

/// How many partitions the input topic has (it must exist).
fn input_partitions(metadata: &rdkafka::metadata::Metadata, kafka: &KafkaSettings) -> Result<u32> {
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
    Ok(partitions as u32)
}
