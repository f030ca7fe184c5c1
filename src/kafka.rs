//! Kafka output: an idempotent producer for a job's outputs and its
//! dead-letter topic.
//!
//! [`KafkaSink`] sends each output with the processor's key as the record
//! key, and dead letters with what went wrong in headers. [`KafkaSink::commit`]
//! waits until everything sent so far is acknowledged by the broker and
//! reports any record that failed: a checkpoint calls it before it
//! completes, so every output emitted before a barrier is durable in Kafka
//! before the input offsets that produced it are committed (at-least-once
//! output: a replay after a crash may send a record again).
//!
//! The consumer-group source is the next step (see docs/ARCHITECTURE.md).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::{Error, Result};

/// Header names on dead-letter records.
pub mod headers {
    /// Why the record was rejected.
    pub const ERROR: &str = "weir.error";
    /// The topic the record was read from.
    pub const SOURCE_TOPIC: &str = "weir.source.topic";
    /// Its partition there (decimal).
    pub const SOURCE_PARTITION: &str = "weir.source.partition";
    /// Its offset there (decimal).
    pub const SOURCE_OFFSET: &str = "weir.source.offset";
}

/// Counts failed deliveries, which the producer reports on its own thread.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

/// A record that could not be processed, as sent to the dead-letter topic.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterRecord<'a> {
    /// The raw input value.
    pub raw: &'a [u8],
    /// Why it was rejected.
    pub error: &'a str,
    pub source_topic: &'a str,
    pub source_partition: i32,
    pub source_offset: i64,
}

/// An idempotent producer writing outputs to one topic and dead letters to
/// another.
pub struct KafkaSink {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    dead_letter_topic: Option<String>,
    /// Failures already reported by `commit`.
    reported: AtomicU64,
}

impl KafkaSink {
    /// A sink producing to `topic` (and dead letters to `dead_letter_topic`)
    /// through `brokers` (`host:port,...`).
    pub fn new(brokers: &str, topic: &str, dead_letter_topic: Option<&str>) -> Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(Deliveries::default())
            .map_err(|e| Error::Kafka(format!("creating a producer for {brokers}: {e}")))?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            dead_letter_topic: dead_letter_topic.map(str::to_string),
            reported: AtomicU64::new(0),
        })
    }

    /// The output topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one output, keyed.
    pub fn send(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.enqueue(BaseRecord::to(&self.topic).key(key).payload(value))
    }

    /// Sends a dead letter, with the error and its source in headers. Without
    /// a dead-letter topic this is an error: dropping it would lose input.
    pub fn send_dead_letter(&self, d: &DeadLetterRecord<'_>) -> Result<()> {
        let topic = self.dead_letter_topic.as_deref().ok_or_else(|| {
            Error::Kafka(format!(
                "no dead-letter topic for a record rejected with: {}",
                d.error
            ))
        })?;
        let partition = d.source_partition.to_string();
        let offset = d.source_offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::ERROR,
                value: Some(d.error),
            })
            .insert(Header {
                key: headers::SOURCE_TOPIC,
                value: Some(d.source_topic),
            })
            .insert(Header {
                key: headers::SOURCE_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: headers::SOURCE_OFFSET,
                value: Some(&offset),
            });
        self.enqueue(
            BaseRecord::<(), [u8]>::to(topic)
                .payload(d.raw)
                .headers(headers),
        )
    }

    fn enqueue<K: rdkafka::message::ToBytes + ?Sized>(
        &self,
        mut record: BaseRecord<'_, K, [u8]>,
    ) -> Result<()> {
        // A full local queue is backpressure: wait for deliveries, retry.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    return Err(Error::Kafka(format!("producing to {}: {e}", self.topic)));
                }
            }
        }
    }

    /// Waits until every record sent so far is acknowledged. Fails if the
    /// timeout passes or a record failed since the last commit.
    pub fn commit(&self, timeout: Duration) -> Result<()> {
        self.producer
            .flush(timeout)
            .map_err(|e| Error::Kafka(format!("flushing the producer: {e}")))?;
        let ctx = self.producer.context();
        let failed = ctx.failed.load(Ordering::SeqCst);
        let reported = self.reported.swap(failed, Ordering::SeqCst);
        if failed > reported {
            let why = ctx
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(Error::Kafka(format!(
                "{} records were not delivered: {}",
                failed - reported,
                why.unwrap_or_default()
            )));
        }
        Ok(())
    }
}
