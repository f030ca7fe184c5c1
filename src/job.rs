//! The job: one builder for every source and sink.
//!
//! [`Job`] wires a source, a [`Decode`] function that turns a line or a
//! record into a keyed, timestamped record, a [`Processor`], a [`Sink`] for
//! its outputs and one for dead letters. Records are routed to partitions
//! by a hash of their key ([`crate::partitioner`]); each partition is a
//! ractor actor owning one RocksDB instance.
//!
//! The checkpoint mode follows from the source:
//!
//! - **Aligned** ([`Source`]: files, stdin, the generator). One feed thread
//!   reads and decodes, sends batches (one per partition per chunk) to the
//!   partition actors and injects barriers between chunks; a checkpoint
//!   covers every partition at one input position, together with the
//!   lengths of the sinks. File sinks are cut back to it on restart, so
//!   file → file is exactly-once; a sink that cannot rewind (Kafka) makes
//!   it at-least-once.
//! - **Per partition, dynamic assignment** ([`crate::kafka::KafkaSource`]).
//!   The consumer group assigns partitions to workers; each partition has
//!   its own checkpoints and moves with them. Outputs go to the output
//!   topic, or to the job's sinks when it has some (at-least-once either
//!   way).
//!
//! Each partition grants a few batch credits; the source waits for one
//! before sending, so memory stays bounded when processing is slower than
//! reading.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use weir_actors::{Clock, Counters, DeadLetter, Processor, SystemClock};

use crate::checkpoint::{Recovery, Status};
use crate::kafka::KafkaReport;
use crate::runtime::{CheckpointTrigger, Decode, Settings};
use crate::sink::Sink;
use crate::source::Source;
use crate::telemetry::Telemetry;
use crate::{Error, Result};

mod aligned;
mod feed;
pub(crate) mod query;

/// What a finished job did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Records read: lines (blank lines excluded) or Kafka records.
    pub records: u64,
    /// Records that did not decode (dead-lettered).
    pub decode_errors: u64,
    /// Partition counters, summed (aligned jobs).
    pub totals: Counters,
    /// Each partition's counters (aligned jobs).
    pub partitions: Vec<Counters>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The run was stopped (shutdown signal) before its input ended; its
    /// last checkpoint lets the next run resume. A Kafka job always ends
    /// this way.
    pub stopped: bool,
    /// What recovery restored at start (aligned jobs).
    pub recovery: Recovery,
    /// From start until every partition was restored, opened and running
    /// (aligned jobs).
    pub startup: Duration,
    /// Checkpoints taken (aligned jobs).
    pub checkpoints: Status,
    /// What the worker did in its consumer group (Kafka jobs).
    pub kafka: Option<KafkaReport>,
}

impl Report {
    /// Records dead-lettered, decode errors included.
    pub fn dead_lettered(&self) -> u64 {
        self.decode_errors + self.totals.dead_lettered
    }

    /// Records per second.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Where a job reads: a [`Source`] (files, stdin, the generator) or a
/// [`crate::kafka::KafkaSource`]. Made by [`IntoInput`].
pub struct Input<P: Processor>(Kind<P>);

enum Kind<P: Processor> {
    Aligned(Box<dyn Source>),
    Group(Box<dyn GroupSource<P>>),
}

/// What [`Job::source`] takes: any [`Source`], or a Kafka source.
pub trait IntoInput<P: Processor> {
    fn into_input(self) -> Input<P>;
}

impl<P: Processor, S: Source> IntoInput<P> for S {
    fn into_input(self) -> Input<P> {
        Input(Kind::Aligned(Box::new(self)))
    }
}

impl<P: Processor> Input<P> {
    pub(crate) fn group(source: impl GroupSource<P>) -> Self {
        Input(Kind::Group(Box::new(source)))
    }
}

/// Completes when the job should stop.
pub(crate) type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A job's outputs and dead letters, when it was given sinks.
pub(crate) type Sinks<T> = (Box<dyn Sink<T>>, Option<Box<dyn Sink<DeadLetter>>>);

/// A source whose partitions are assigned while the job runs (a consumer
/// group): it runs the job itself, checkpointing each partition on its own.
pub(crate) trait GroupSource<P: Processor>: Send + 'static {
    fn run(
        self: Box<Self>,
        parts: JobParts<P>,
        sinks: Option<Sinks<P::Out>>,
        shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = Result<Report>> + Send>>;
}

/// What every job has, whatever its source and sinks.
pub(crate) struct JobParts<P: Processor> {
    pub processor: P,
    pub settings: Settings,
    pub decoder: Arc<dyn Decode<P::Key, P::In>>,
    pub clock: Arc<dyn Clock>,
    pub trigger: CheckpointTrigger,
    pub telemetry: Option<Telemetry>,
    /// Serve state queries under this processor name (aligned jobs).
    pub query: Option<(String, query::ParseKey<P::Key>)>,
}

/// A runnable job. Build it with [`Job::new`] and the setters, then
/// [`run`](Job::run) it.
pub struct Job<P: Processor> {
    processor: P,
    settings: Settings,
    input: Option<Input<P>>,
    decoder: Option<Arc<dyn Decode<P::Key, P::In>>>,
    sink: Option<Box<dyn Sink<P::Out>>>,
    dead_letters: Option<Box<dyn Sink<DeadLetter>>>,
    clock: Arc<dyn Clock>,
    trigger: CheckpointTrigger,
    telemetry: Option<Telemetry>,
    query: Option<(String, query::ParseKey<P::Key>)>,
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
            input: None,
            decoder: None,
            sink: None,
            dead_letters: None,
            clock: Arc::new(SystemClock),
            trigger: CheckpointTrigger::default(),
            telemetry: None,
            query: None,
        }
    }

    /// Answers `GET /state/<processor>/<key>` on the admin server (see
    /// [`Job::telemetry`]) with the key's current state as JSON, read
    /// through the partition that owns it: read-only, off unless asked
    /// for. A Kafka worker answers for the partitions it owns; a key of
    /// another partition gets a 404 that names the partition (Kafka's
    /// partitioner over the key's record key), so a caller can ask its
    /// owner.
    pub fn serve_state(mut self, processor: impl Into<String>) -> Self
    where
        P::Key: std::str::FromStr,
    {
        self.query = Some((processor.into(), query::parse_key::<P::Key>));
        self
    }

    /// Reports metrics to `telemetry` and serves its admin endpoints while
    /// the job runs.
    pub fn telemetry(mut self, telemetry: &Telemetry) -> Self {
        self.telemetry = Some(telemetry.clone());
        self
    }

    /// Replaces all settings. (A Kafka job takes `partitions` from its
    /// topic and needs checkpoints.)
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Reads from `source`: a [`Source`] of lines, or a
    /// [`crate::kafka::KafkaSource`].
    pub fn source(mut self, source: impl IntoInput<P>) -> Self {
        self.input = Some(source.into_input());
        self
    }

    /// Decodes each line or record with `decoder`.
    pub fn decoder(mut self, decoder: impl Decode<P::Key, P::In>) -> Self {
        self.decoder = Some(Arc::new(decoder));
        self
    }

    /// Writes outputs to `sink`. Required with a [`Source`]; with a Kafka
    /// source, outputs go to its output topic unless a sink is given.
    pub fn sink(mut self, sink: impl Sink<P::Out>) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Writes dead letters to `sink`. Required with a [`Source`]; with a
    /// Kafka source and a sink, a record that does not decode stops the
    /// job unless dead letters have a sink too.
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
    /// and commits the sinks. (A Kafka source never ends: use
    /// [`run_until`](Job::run_until).)
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
        let input = self
            .input
            .ok_or_else(|| Error::Config("the job has no source".into()))?;
        let parts = JobParts {
            processor: self.processor,
            settings: self.settings,
            decoder: self
                .decoder
                .ok_or_else(|| Error::Config("the job has no decoder".into()))?,
            clock: self.clock,
            trigger: self.trigger,
            telemetry: self.telemetry,
            query: self.query,
        };
        match input.0 {
            Kind::Aligned(source) => {
                let sink = self
                    .sink
                    .ok_or_else(|| Error::Config("the job has no sink".into()))?;
                let dlq = self
                    .dead_letters
                    .ok_or_else(|| Error::Config("the job has no dead-letter sink".into()))?;
                aligned::run(parts, source, sink, dlq, shutdown).await
            }
            Kind::Group(source) => {
                let sinks = match (self.sink, self.dead_letters) {
                    (Some(sink), dlq) => Some((sink, dlq)),
                    (None, None) => None,
                    (None, Some(_)) => {
                        return Err(Error::Config(
                            "dead letters have a sink but outputs do not".into(),
                        ));
                    }
                };
                source.run(parts, sinks, Box::pin(shutdown)).await
            }
        }
    }
}
