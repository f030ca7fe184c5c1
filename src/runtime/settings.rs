//! What every job is configured with, whatever its source and sink: the
//! settings, the decoder of input records, and the checkpoint trigger.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use weir_actors::CoreConfig;
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
    /// processing time.
    pub idle_watermark: Option<Duration>,
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
