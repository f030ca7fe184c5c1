//! Kafka and files on either side of a job: the producer as a [`Sink`] for
//! jobs that read files (file → Kafka), and [`Outputs`], what a Kafka
//! worker writes to: its producer, or any pair of sinks (Kafka → file).
//!
//! What each pair guarantees:
//! - **file → file**: exactly-once outputs (aligned checkpoints record the
//!   files' lengths; a restart cuts them back before replaying).
//! - **file → Kafka**: at-least-once. A checkpoint completes only after the
//!   producer has every output emitted before its barrier acknowledged; a
//!   restart replays the input after the checkpoint and produces those
//!   outputs again.
//! - **Kafka → Kafka**: at-least-once, per partition (see
//!   [`super::worker`]).
//! - **Kafka → file**: at-least-once. A partition's checkpoint completes
//!   only after the output file is flushed and synced; a partition that
//!   resumes elsewhere or after a crash appends its replayed outputs again.
//!   Each worker writes its own file.

use std::borrow::Cow;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use weir_actors::DeadLetter;

use super::settings::RecordKey;
use super::sink::{DeadLetterRecord, KafkaSink};
use crate::lock;
use crate::sink::Sink;

/// What a Kafka worker writes outputs and dead letters to.
pub(crate) trait Outputs<K, T>: Send + Sync + 'static {
    /// Writes one partition's outputs, in order.
    fn outputs(&self, items: Vec<(K, T)>) -> Result<(), String>;
    /// Writes dead letters of records read from `input_topic`.
    fn dead_letters(&self, items: &[DeadLetter], input_topic: &str) -> Result<(), String>;
    /// Waits until everything written before the call is durable.
    fn commit(&self, timeout: Duration) -> Result<(), String>;
    /// Why outputs may have been lost, if they may.
    fn failure(&self) -> Option<String>;
}

/// The dead-letter record of `d`, read from `source`.
fn record<'a>(d: &'a DeadLetter, source: &'a str) -> DeadLetterRecord<'a> {
    DeadLetterRecord {
        raw: &d.raw,
        error: &d.reason,
        source_topic: source,
        source_partition: d.partition.map_or(-1, |p| p as i32),
        source_offset: d.position.map_or(-1, |o| o as i64),
    }
}

/// Serializes `out` as JSON into `buf` and produces it with `key`.
fn produce<T: Serialize>(
    sink: &KafkaSink,
    buf: &mut Vec<u8>,
    key: &[u8],
    out: &T,
) -> Result<(), String> {
    buf.clear();
    serde_json::to_writer(&mut *buf, out).map_err(|e| format!("output not encoded: {e}"))?;
    sink.send(key, buf).map_err(|e| e.to_string())
}

impl<K, T> Outputs<K, T> for KafkaSink
where
    K: RecordKey + Send + 'static,
    T: Serialize + Send + 'static,
{
    fn outputs(&self, items: Vec<(K, T)>) -> Result<(), String> {
        let mut value = Vec::with_capacity(256);
        items
            .iter()
            .try_for_each(|(key, out)| produce(self, &mut value, &key.record_key(), out))
    }

    fn dead_letters(&self, items: &[DeadLetter], input_topic: &str) -> Result<(), String> {
        items.iter().try_for_each(|d| {
            self.send_dead_letter(&record(d, input_topic))
                .map_err(|e| format!("dead letter not sent: {e}"))
        })
    }

    fn commit(&self, timeout: Duration) -> Result<(), String> {
        KafkaSink::commit(self, timeout).map_err(|e| e.to_string())
    }

    fn failure(&self) -> Option<String> {
        KafkaSink::failure(self)
    }
}

/// An output sink and, maybe, a dead-letter sink.
type Pair<T> = (Box<dyn Sink<T>>, Option<Box<dyn Sink<DeadLetter>>>);

/// A pair of sinks (for instance files) as a Kafka worker's outputs; the
/// key of each output is dropped, as the embedded sinks write values.
pub(crate) struct SinkPair<T> {
    sinks: Mutex<Pair<T>>,
    failure: Mutex<Option<String>>,
}

impl<T> SinkPair<T> {
    pub(crate) fn new(
        out: Box<dyn Sink<T>>,
        dead_letters: Option<Box<dyn Sink<DeadLetter>>>,
    ) -> Self {
        Self {
            sinks: Mutex::new((out, dead_letters)),
            failure: Mutex::new(None),
        }
    }

    /// Keeps the first error: a sink that failed may have lost outputs.
    fn check(&self, r: io::Result<()>, what: &str) -> Result<(), String> {
        r.map_err(|e| {
            let why = format!("{what}: {e}");
            lock(&self.failure).get_or_insert(why.clone());
            why
        })
    }
}

impl<K, T> Outputs<K, T> for SinkPair<T>
where
    K: Send + 'static,
    T: Send + 'static,
{
    fn outputs(&self, items: Vec<(K, T)>) -> Result<(), String> {
        let values: Vec<T> = items.into_iter().map(|(_, t)| t).collect();
        let r = lock(&self.sinks).0.write(&values);
        self.check(r, "output sink failed")
    }

    fn dead_letters(&self, items: &[DeadLetter], _input_topic: &str) -> Result<(), String> {
        let mut sinks = lock(&self.sinks);
        let Some(dlq) = sinks.1.as_mut() else {
            return Err(format!(
                "no dead-letter sink for a record rejected with: {}",
                items.first().map_or("", |d| d.reason.as_str())
            ));
        };
        let r = dlq.write(items);
        drop(sinks);
        self.check(r, "dead-letter sink failed")
    }

    fn commit(&self, _timeout: Duration) -> Result<(), String> {
        let mut sinks = lock(&self.sinks);
        let r = sinks.0.commit().and_then(|_| match sinks.1.as_mut() {
            Some(dlq) => dlq.commit().map(|_| ()),
            None => Ok(()),
        });
        drop(sinks);
        self.check(r, "committing the sinks")?;
        <Self as Outputs<K, T>>::failure(self).map_or(Ok(()), Err)
    }

    fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }
}

/// The record key of an output.
pub(crate) type KeyOf<T> = Box<dyn Fn(&T) -> Cow<'_, [u8]> + Send>;

/// A job's outputs as Kafka records (JSON values, keyed by `key`): the
/// output side of a file → Kafka job. A checkpoint's commit waits until
/// the broker acknowledged every output written before it; outputs
/// cannot be taken back, so a restart produces the replayed ones again
/// (at-least-once).
pub struct KafkaOutput<T> {
    sink: Arc<KafkaSink>,
    key: KeyOf<T>,
    timeout: Duration,
    buf: Vec<u8>,
}

impl<T> KafkaOutput<T> {
    /// Outputs to `sink`'s topic, each keyed by `key` (for instance the
    /// field the output topic is partitioned by); a commit waits up to
    /// `timeout` for acknowledgements.
    pub fn new(
        sink: Arc<KafkaSink>,
        key: impl Fn(&T) -> Cow<'_, [u8]> + Send + 'static,
        timeout: Duration,
    ) -> Self {
        Self {
            sink,
            key: Box::new(key),
            timeout,
            buf: Vec::with_capacity(256),
        }
    }
}

/// An [`io::Error`] for a Kafka failure.
fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl<T: Serialize + Send + 'static> Sink<T> for KafkaOutput<T> {
    fn write(&mut self, items: &[T]) -> io::Result<()> {
        for item in items {
            let key = (self.key)(item);
            produce(&self.sink, &mut self.buf, &key, item).map_err(io_error)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> io::Result<Option<u64>> {
        self.sink.commit(self.timeout).map_err(io_error)?;
        Ok(None)
    }
}

/// Dead letters to a [`KafkaSink`]'s dead-letter topic, with `source` (the
/// input's name) as their source topic and the byte position of the line
/// as their offset: the dead-letter side of a file → Kafka job.
pub struct KafkaDeadLetters {
    sink: Arc<KafkaSink>,
    source: String,
    timeout: Duration,
}

impl KafkaDeadLetters {
    pub fn new(sink: Arc<KafkaSink>, source: &str, timeout: Duration) -> Self {
        Self {
            sink,
            source: source.to_string(),
            timeout,
        }
    }
}

impl Sink<DeadLetter> for KafkaDeadLetters {
    fn write(&mut self, items: &[DeadLetter]) -> io::Result<()> {
        items.iter().try_for_each(|d| {
            self.sink
                .send_dead_letter(&record(d, &self.source))
                .map_err(io_error)
        })
    }

    fn commit(&mut self) -> io::Result<Option<u64>> {
        self.sink.commit(self.timeout).map_err(io_error)?;
        Ok(None)
    }
}
