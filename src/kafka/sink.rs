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
//! Records are counted per *epoch*: [`KafkaSink::commit`] starts a new
//! epoch and waits only for the records of earlier ones, so a commit under
//! a steady stream of new outputs still ends (a plain producer flush would
//! wait for the queue to be empty).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::{Error, Result, lock};

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
    /// Present when the value was cut to fit the producer's message size:
    /// the raw input's full length in bytes (decimal).
    pub const TRUNCATED: &str = "weir.truncated";
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Room left in a dead letter for its headers and the record's framing.
const DEAD_LETTER_OVERHEAD: usize = 4096;

/// Longest `weir.error` header, in bytes (within the overhead above).
const MAX_ERROR_HEADER: usize = 2048;

/// Epoch slots: a commit waits for the few epochs before its own, and
/// every earlier one was drained by an earlier commit.
const EPOCH_SLOTS: usize = 16;

/// Tracks records in flight per epoch and failed deliveries, which the
/// producer reports on its own thread. A failure is sticky: once a record
/// was lost, every later commit fails, so no checkpoint can ever cover it.
struct Deliveries {
    epoch: AtomicU64,
    in_flight: [AtomicI64; EPOCH_SLOTS],
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The first client error that says the settings cannot work (TLS,
    /// login): see [`KafkaSink::settings_error`].
    settings_error: Mutex<Option<String>>,
    connect_watch: super::config::ConnectWatch,
}

impl Default for Deliveries {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            in_flight: std::array::from_fn(|_| AtomicI64::new(0)),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            settings_error: Mutex::new(None),
            connect_watch: super::config::ConnectWatch::default(),
        }
    }
}

impl Deliveries {
    /// Counts a record about to be sent; returns its epoch.
    fn enter(&self) -> usize {
        loop {
            let e = self.epoch.load(Ordering::SeqCst);
            let slot = &self.in_flight[e as usize % EPOCH_SLOTS];
            slot.fetch_add(1, Ordering::SeqCst);
            // A commit that started a new epoch meanwhile may already have
            // looked at this slot: count the record in the new epoch.
            if self.epoch.load(Ordering::SeqCst) == e {
                return e as usize;
            }
            slot.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The record of epoch `e` is no longer in flight.
    fn leave(&self, e: usize) {
        self.in_flight[e % EPOCH_SLOTS].fetch_sub(1, Ordering::SeqCst);
    }

    /// The settings cannot work: the first reason is kept.
    fn settings_failed(&self, why: String) {
        lock(&self.settings_error).get_or_insert(why);
    }

    /// A record was lost: every later commit fails.
    fn lost(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        *lock(&self.last_error) = Some(why);
    }

    /// Starts a new epoch and waits until no record of an older one is in
    /// flight. Returns false on timeout.
    fn drain(&self, timeout: Duration, mut wait: impl FnMut()) -> bool {
        let old = self.epoch.fetch_add(1, Ordering::SeqCst) as usize;
        let deadline = Instant::now() + timeout;
        let older = (old + 1).saturating_sub(EPOCH_SLOTS - 1)..=old;
        loop {
            if older
                .clone()
                .all(|e| self.in_flight[e % EPOCH_SLOTS].load(Ordering::SeqCst) <= 0)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            wait();
        }
    }
}

impl ClientContext for Deliveries {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::error!(%error, %reason, "Kafka producer error");
        if super::config::is_settings_error(&error, reason) {
            self.settings_failed(format!("{error}: {reason}"));
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "{fac} {message}"),
            L::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
        if let Some(why) = self.connect_watch.observe(fac, message) {
            self.settings_failed(why);
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        if let Err((e, _)) = result {
            self.lost(e.to_string());
        }
        self.leave(epoch);
    }
}

/// Sets properties the guarantees rest on, refusing a different value set
/// by the user (an idempotent producer, manual offset commits, ...).
pub(crate) fn reserve(config: &mut ClientConfig, reserved: &[(&str, &str)]) -> Result<()> {
    for (key, value) in reserved {
        if let Some(theirs) = config.get(key)
            && theirs != *value
        {
            return Err(Error::Config(format!(
                "Kafka property {key}={theirs} is not allowed: weir needs {key}={value}"
            )));
        }
        config.set(*key, *value);
    }
    Ok(())
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
    /// The largest dead-letter value the producer accepts: a longer raw
    /// input is cut to it (a dead letter must never stop the job).
    dead_letter_max: usize,
}

impl KafkaSink {
    /// A sink producing to `topic` (and dead letters to `dead_letter_topic`)
    /// through `brokers` (`host:port,...`).
    pub fn new(brokers: &str, topic: &str, dead_letter_topic: Option<&str>) -> Result<Self> {
        Self::with_config(brokers, topic, dead_letter_topic, &[])
    }

    /// Like [`new`](Self::new), with further librdkafka properties (applied
    /// last; properties of other client kinds are ignored).
    pub fn with_config(
        brokers: &str,
        topic: &str,
        dead_letter_topic: Option<&str>,
        client: &[(String, String)],
    ) -> Result<Self> {
        let mut config = ClientConfig::new();
        config.set("linger.ms", "5");
        // Outputs and dead letters are text that compresses well; lz4 is
        // the codec known for the least CPU per byte (not yet measured on
        // weir's outputs). Users may override.
        config.set("compression.type", "lz4");
        for (k, v) in client {
            config.set(k, v);
        }
        reserve(
            &mut config,
            &[
                ("bootstrap.servers", brokers),
                ("enable.idempotence", "true"),
                ("acks", "all"),
            ],
        )?;
        let producer = config
            .create_with_context(Deliveries::default())
            .map_err(|e| {
                Error::Kafka(format!(
                    "creating a producer for {brokers}: {}",
                    super::config::client_error(&e)
                ))
            })?;
        let message_max = config
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        Ok(Self {
            producer,
            topic: topic.to_string(),
            dead_letter_topic: dead_letter_topic.map(str::to_string),
            dead_letter_max: message_max.saturating_sub(DEAD_LETTER_OVERHEAD).max(1),
        })
    }

    /// The output topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one output, keyed.
    pub fn send(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.enqueue(
            BaseRecord::with_opaque_to(&self.topic, 0)
                .key(key)
                .payload(value),
        )
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
        let full = d.raw.len().to_string();
        let cut = d.raw.len() > self.dead_letter_max;
        let raw = &d.raw[..d.raw.len().min(self.dead_letter_max)];
        // The reason may carry user text (a panic message, a key): bounded
        // too, so the headers stay within the room left for them.
        let mut end = d.error.len().min(MAX_ERROR_HEADER);
        while !d.error.is_char_boundary(end) {
            end -= 1;
        }
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::ERROR,
                value: Some(&d.error[..end]),
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
        if cut {
            headers = headers.insert(Header {
                key: headers::TRUNCATED,
                value: Some(&full),
            });
        }
        self.enqueue(
            BaseRecord::<(), [u8], usize>::with_opaque_to(topic, 0)
                .payload(raw)
                .headers(headers),
        )
    }

    fn enqueue<K: rdkafka::message::ToBytes + ?Sized>(
        &self,
        record: BaseRecord<'_, K, [u8], usize>,
    ) -> Result<()> {
        let deliveries = self.producer.context();
        let epoch = deliveries.enter();
        let mut record = record.delivery_opaque(epoch);
        // A full local queue is backpressure: wait for deliveries, retry
        // for as long as librdkafka itself would try to deliver a record.
        let deadline = Instant::now() + Duration::from_secs(300);
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
                    deliveries.leave(epoch);
                    let why = format!("producing to {}: {e}", self.topic);
                    deliveries.lost(why.clone());
                    return Err(Error::Kafka(why));
                }
            }
        }
    }

    /// Waits until every record sent before this call is acknowledged
    /// (records sent meanwhile are not waited for). Fails if the timeout
    /// passes or any record was ever lost: failures are sticky, so a
    /// checkpoint can never complete past a lost output.
    pub fn commit(&self, timeout: Duration) -> Result<()> {
        let ctx = self.producer.context();
        if !ctx.drain(timeout, || self.producer.poll(Duration::from_millis(1))) {
            // Records of that epoch may still be in flight when a later
            // commit looks: that one must not pass either.
            ctx.lost(format!(
                "records to {} were not acknowledged within {timeout:?}",
                self.topic
            ));
        }
        self.failure().map_or(Ok(()), |why| Err(Error::Kafka(why)))
    }

    /// The first client error that said the connection settings cannot
    /// work (a CA that does not verify the broker, a failed login,
    /// plaintext spoken to a TLS listener), with librdkafka's reason.
    pub fn settings_error(&self) -> Option<String> {
        lock(&self.producer.context().settings_error).clone()
    }

    /// Why records were lost, if any ever were.
    pub fn failure(&self) -> Option<String> {
        let ctx = self.producer.context();
        let failed = ctx.failed.load(Ordering::SeqCst);
        (failed > 0).then(|| {
            let why = lock(&ctx.last_error).clone().unwrap_or_default();
            format!("{failed} records were not delivered: {why}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_commit_waits_for_earlier_records_only() {
        let d = Arc::new(Deliveries::default());
        let a = d.enter();
        let b = d.enter();
        let waiter = {
            let d = Arc::clone(&d);
            std::thread::spawn(move || {
                d.drain(Duration::from_secs(10), || {
                    std::thread::sleep(Duration::from_millis(1))
                })
            })
        };
        // Wait until the commit has started its epoch, then send more.
        while d.epoch.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let later = d.enter();
        assert_ne!(
            later, a,
            "a record sent after the commit began is in a new epoch"
        );
        d.leave(a);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "one earlier record still in flight");
        d.leave(b);
        assert!(
            waiter.join().expect("waiter"),
            "drained although `later` is in flight"
        );
        assert!(
            !d.drain(Duration::from_millis(20), || {}),
            "`later` is still in flight"
        );
        d.leave(later);
        assert!(d.drain(Duration::from_millis(20), || {}));
    }

    #[test]
    fn safety_properties_cannot_be_overridden() {
        let mut config = ClientConfig::new();
        config.set("enable.idempotence", "false");
        let err = reserve(&mut config, &[("enable.idempotence", "true")]).unwrap_err();
        assert!(
            err.to_string().contains("enable.idempotence=false"),
            "{err}"
        );
        let mut config = ClientConfig::new();
        config.set("acks", "all");
        reserve(
            &mut config,
            &[("acks", "all"), ("bootstrap.servers", "h:1")],
        )
        .expect("same value");
        assert_eq!(config.get("bootstrap.servers"), Some("h:1"));
    }
}
