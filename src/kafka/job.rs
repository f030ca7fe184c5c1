//! [`KafkaJob`]: a job over a Kafka topic, run by one worker of a
//! consumer group (see [`super::worker`] for the protocol).

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use weir_actors::{Clock, DeadLetter, Processor, SystemClock};
use weir_state::StateEnv;

use super::consumer::{GroupContext, poll_loop};
use super::lag::LagHandle;
use super::output::{Outputs, SinkPair};
use super::settings::{KafkaSettings, RecordKey};
use super::sink::{KafkaSink, reserve};
use super::upload::{KafkaOutlet, Live, Uploader, upload_loop};
use super::worker::{Parts, Worker};
use crate::outlet::Failure;
use crate::runtime::{
    CheckpointTrigger, Decode, Settings, check_layout, clear_local_checkpoints, job_id,
    lock_state_dir, watch_shutdown,
};
use crate::sink::Sink;
use crate::telemetry::{self, Telemetry};
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
    /// Sinks instead of the output and dead-letter topics.
    sinks: Option<SinkPair<P::Out>>,
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
            sinks: None,
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

    /// Writes outputs to `sink` (a file, say) instead of the output topic:
    /// a Kafka → file job. A partition's checkpoint completes only once
    /// the sink committed everything before its barrier; outputs of
    /// records read again after a restart or a move are written again
    /// (at-least-once). Dead letters go to `dead_letters` (without one, a
    /// record that does not decode stops the job).
    pub fn sinks(
        mut self,
        sink: impl Sink<P::Out>,
        dead_letters: Option<Box<dyn Sink<DeadLetter>>>,
    ) -> Self {
        self.sinks = Some(SinkPair::new(Box::new(sink), dead_letters));
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
        kafka.validate(self.sinks.is_none())?;
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

        let config = consumer_config(&kafka)?;
        let (out, producer): (Arc<dyn Outputs<P::Key, P::Out>>, _) = match self.sinks {
            Some(sinks) => (Arc::new(sinks), None),
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
        };

        let (stop, watcher) = watch_shutdown(
            shutdown,
            "final checkpoints, then leaving the group",
            &metrics,
        );
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
            let metadata = first_metadata(&consumer, producer.as_deref(), &kafka)?;
            let partitions = input_partitions(&metadata, &kafka)?;
            settings.partitions = partitions;
            settings.validate()?;
            let env = StateEnv::new(&settings.state_dir, settings.memory)?;
            let _lock = lock_state_dir(&settings)?;
            // A job is its group unless told otherwise.
            let job_id = job_id(&settings, || kafka.group.clone())?;
            check_layout(&settings, &format!("kafka:{}", kafka.input_topic), &job_id)?;
            let local_dir = clear_local_checkpoints(&settings)?;
            let _job = metrics.job_started(&env, interval);

            let (uploads_tx, uploads_rx) = mpsc::channel();
            let (inbox_tx, inbox_rx) = mpsc::channel();
            let outlet = Arc::new(KafkaOutlet {
                out,
                input_topic: kafka.input_topic.clone(),
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
                let done = inbox_tx.clone();
                std::thread::Builder::new()
                    .name("weir-upload".into())
                    .spawn(move || upload_loop(u, uploads_rx, done))
                    .map_err(|e| Error::Io {
                        what: "starting the upload thread".into(),
                        source: e,
                    })?
            };
            *lock(&consumer.context().worker) = Some(Worker::new(
                Parts {
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
                lag,
                metrics: metrics.clone(),
                live,
                inbox: inbox_tx,
                uploads: uploads_tx,
                joined: started,
            },
                inbox_rx,
            ));
            consumer
                .subscribe(&[&kafka.input_topic])
                .map_err(|e| Error::Kafka(format!("subscribing to {}: {e}", kafka.input_topic)))?;
            tracing::info!(topic = %kafka.input_topic, group = %kafka.group, partitions, "joined the group");

            let outcome = poll_loop(&consumer, &stop, interval, &trigger);
            // Final checkpoints of everything still owned, then leave.
            let report = {
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
            // The worker (and with it the upload channel) is gone: the
            // upload thread ends.
            drop(consumer);
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
