//! What every job is configured with, whatever its source and sink: the
//! settings, the decoder of input records, and the checkpoint trigger.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use weir_actors::{CoreConfig, OnPanic};
use weir_state::MemoryBudget;

use crate::checkpoint::CheckpointSettings;
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

/// Event times a job accepts, in ms since the epoch: from 1970 to the end
/// of the year 9999. A record outside is dead-lettered where it is decoded
/// (reason `timestamp_out_of_range`), so no time arithmetic downstream
/// comes near the ends of `i64`.
pub const EVENT_TIME_RANGE: std::ops::RangeInclusive<i64> = 0..=253_402_300_799_999;

/// Decodes `bytes` with `decoder`, then checks its event time is in
/// [`EVENT_TIME_RANGE`]: what every connector calls, whatever the decoder.
pub(crate) fn decode_checked<K: 'static, V: 'static>(
    decoder: &dyn Decode<K, V>,
    bytes: &[u8],
) -> std::result::Result<Decoded<K, V>, String> {
    // A decoder that panics on hostile input dead-letters that input
    // rather than taking the feed or the poll thread down with it.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode(bytes)));
    let d = match decoded {
        Ok(d) => d?,
        Err(panic) => {
            let message = weir_actors::runtime::panic_message(&*panic);
            return Err(format!("decoder_panic: the decoder panicked: {message}"));
        }
    };
    match d.timestamp {
        Some(ts) if !EVENT_TIME_RANGE.contains(&ts) => Err(format!(
            "timestamp_out_of_range: event time {ts} ms is not between 1970 and the year 9999"
        )),
        _ => Ok(d),
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
    /// processing time. Kafka input only: with a [`crate::Source`] (files,
    /// stdin, the generator) windows close with event time and at the end
    /// of the input, so a replay gives the same results at any speed.
    pub idle_watermark: Option<Duration>,
    /// A record whose event time is more than this ahead of the processing
    /// clock is dead-lettered (reason `future_timestamp`) and does not move
    /// the watermark (`None`: no bound).
    pub max_future: Option<Duration>,
    /// Longest record accepted, in bytes: a longer line or Kafka record is
    /// dead-lettered (reason `too_large`) with its first
    /// [`TOO_LARGE_PREFIX`] bytes, and a file job never buffers more than
    /// this plus a read of one line.
    pub max_record_bytes: usize,
    /// What a panic in `process`, `on_timer` or `on_late` does: stop the
    /// job, naming the processor, call, key, partition and position (the
    /// default), or roll the key back, dead-letter the input and go on.
    pub on_panic: OnPanic,
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

/// Default of [`Settings::max_record_bytes`]: 1 MiB, Kafka's default
/// message size.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// Bytes of a too large record kept in its dead letter.
pub const TOO_LARGE_PREFIX: usize = 4096;

/// The dead letter of a record of `len` bytes that is longer than the
/// bound: its reason, and the first [`TOO_LARGE_PREFIX`] bytes of `raw`.
pub(crate) fn too_large(raw: &[u8], len: u64, max: usize) -> (Vec<u8>, String) {
    (
        raw[..raw.len().min(TOO_LARGE_PREFIX)].to_vec(),
        format!(
            "too_large: {len} bytes, more than the bound of {max} (the first {TOO_LARGE_PREFIX} are kept)"
        ),
    )
}

/// Default of [`Settings::max_future`]: an hour, well beyond the clock skew
/// of devices that keep time, short enough that a bad clock or a crafted
/// timestamp cannot hold windows shut for long.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(3600);

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
            max_future: Some(DEFAULT_MAX_FUTURE),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            on_panic: OnPanic::Stop,
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
        if self.max_record_bytes == 0 {
            return Err(Error::Config("max record bytes must be at least 1".into()));
        }
        if self.batch_credits == 0 {
            return Err(Error::Config("batch credits must be at least 1".into()));
        }
        if self.max_timer_chain == 0 {
            return Err(Error::Config("max timer chain must be at least 1".into()));
        }
        Ok(())
    }

    pub(crate) fn core_config(&self, partition: u32) -> CoreConfig {
        let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
        CoreConfig {
            partition,
            live_actor_cap: (self.live_actor_cap / self.partitions as usize).max(1),
            idle_passivation_ms: self.idle_passivation.map(ms),
            out_of_orderness_ms: Some(ms(self.max_out_of_orderness)),
            idle_watermark_ms: self.idle_watermark.map(ms),
            max_future_ms: self.max_future.map(ms),
            on_panic: self.on_panic,
            ttl_clock: None,
            max_attempts: self.max_attempts,
            retry_backoff: self.retry_backoff,
            max_timer_chain: self.max_timer_chain,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: i64) -> impl Decode<String, ()> {
        move |line: &[u8]| -> std::result::Result<Decoded<String, ()>, String> {
            if line == b"boom" {
                panic!("a decoder bug");
            }
            Ok(Decoded {
                key: "k".into(),
                timestamp: Some(ts),
                value: (),
            })
        }
    }

    #[test]
    fn event_times_outside_the_range_and_decoder_panics_are_reasons() {
        let ok = |ts: i64| decode_checked(&at(ts), b"x").map(|d| d.timestamp);
        assert_eq!(ok(0), Ok(Some(0)));
        assert_eq!(ok(253_402_300_799_999), Ok(Some(253_402_300_799_999)));
        for bad in [-1, i64::MIN, 253_402_300_800_000, i64::MAX] {
            let why = ok(bad).expect_err("out of range");
            assert!(why.starts_with("timestamp_out_of_range"), "{bad}: {why}");
        }
        let why = decode_checked(&at(5), b"boom").expect_err("a panic is a reason");
        assert!(
            why.starts_with("decoder_panic") && why.contains("a decoder bug"),
            "{why}"
        );
    }
}
