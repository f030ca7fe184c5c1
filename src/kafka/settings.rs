//! Where a Kafka job reads and writes, how it behaves in its group, and
//! how a processor's key becomes an output record's key.

use std::borrow::Cow;
use std::time::Duration;

use super::Properties;
use super::watch::OnOffsetReset;
use crate::{Error, Result};

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

/// How long a checkpoint waits, by default, for the broker to acknowledge
/// the outputs before it.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

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
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            max_batch: 2_000,
            max_buffered: 20_000,
            stall_after: Duration::from_secs(30),
            stall_timeout: Some(Duration::from_secs(300)),
            on_offset_reset: OnOffsetReset::Earliest,
        }
    }

    /// Checks the settings; the output topic only when outputs go to it.
    pub(crate) fn validate(&self, output_topic: bool) -> Result<()> {
        for (what, value) in [
            ("brokers", &self.brokers),
            ("input topic", &self.input_topic),
            ("output topic", &self.output_topic),
            ("group", &self.group),
        ] {
            if value.trim().is_empty() && (output_topic || what != "output topic") {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_are_the_plain_bytes_or_big_endian_integers() {
        assert_eq!(&*"10.0.0.1".to_string().record_key(), b"10.0.0.1");
        assert_eq!(&*7u32.record_key(), &[0, 0, 0, 7]);
        assert_eq!(&*(-1i64).record_key(), &[0xff; 8]);
    }

    #[test]
    fn settings_name_what_is_missing() {
        let mut k = KafkaSettings::new("h:9092", "in", "out", "g");
        k.validate(true).expect("valid");
        k.output_topic.clear();
        assert!(k.validate(true).is_err(), "the output topic is needed");
        k.validate(false).expect("not when outputs go to sinks");
        k.group = " ".into();
        let err = k.validate(false).unwrap_err().to_string();
        assert!(err.contains("group"), "{err}");
    }
}
