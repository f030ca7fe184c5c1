//! weir-actors: the Processor API and the keyed actors that run it.
//!
//! What a user sees is at the crate root: [`Processor`] and [`Context`]
//! (what users write), [`TestDriver`] (how they test it), the timer types,
//! [`ProcessError`], the clocks, and [`CoreConfig`]/[`Counters`]/
//! [`DeadLetter`] (how a partition is configured and what it reports).
//!
//! The runtime that `weir` drives is in [`runtime`]: the partition core,
//! its actor, batches, barriers and checkpoints. It is public for `weir`
//! and not meant for jobs. Inside:
//! - `core`: `PartitionCore`, one partition's virtual key actors, timer
//!   queue and watermark, over a `weir_state::Store` (sans-IO: no threads);
//! - `partition`: `PartitionActor`, the ractor actor that owns a partition
//!   and drives its core;
//! - `timers`, `watermark`, `barrier`, `clock`: small sans-IO types with
//!   their own tests.
//!
//! This crate knows nothing about Kafka or files; `weir` wires sources and
//! sinks to partitions.
//!
//! # Runtime semantics
//! - Each key is a virtual actor: activated by its first record or timer,
//!   passivated when idle or when the partition's live-actor cap is reached.
//!   Its calls never overlap and follow input order.
//! - A partition handles one message at a time; partitions run in parallel
//!   on the tokio runtime.
//! - Event-time timers fire when the watermark reaches them (before the
//!   record that moved the watermark is processed); processing-time timers
//!   fire on the partition's tick, with or without input.

#[doc(hidden)]
pub use fail as __fail;

/// A place in the checkpoint protocol where tests crash the process (built
/// with the `failpoints` feature and configured through the `FAILPOINTS`
/// environment variable, e.g. `FAILPOINTS=sink-before-commit=2*off->return`):
/// the process aborts there, as if killed. Without the feature it is
/// nothing.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        $crate::__fail::fail_point!($name, |_| {
            eprintln!("failpoint {}: aborting the process", $name);
            std::process::abort()
        })
    };
}

mod barrier;
mod clock;
mod context;
mod core;
mod partition;
mod processor;
mod stats;
mod testing;
mod timers;
mod watermark;

pub use clock::{Clock, ManualClock, SystemClock};
pub use context::Context;
pub use core::{CoreConfig, Counters, DeadLetter, OnPanic};

/// Decodes the bytes [`Processor::migrate_state`] is given as the old
/// state type `T`.
pub fn decode_state<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    weir_state::value::decode_body(bytes).map_err(|e| e.to_string())
}
pub use processor::{Key, ProcessError, Processor, StateTtl};
pub use testing::TestDriver;
pub use timers::{TimeDomain, Timer, TimerName};

/// The partition runtime `weir` drives: not part of the API a job uses.
pub mod runtime {
    pub use crate::barrier::{AlignError, Aligner, Alignment};
    pub use crate::core::{
        DEFAULT_MAX_TIMER_CHAIN, Envelope, InputBatch, PartitionCheckpoint, PartitionCore,
        panic_message,
    };
    pub use crate::partition::{
        BatchGuard, Outlet, PartitionActor, PartitionArgs, PartitionMsg, PartitionState,
    };
    pub use crate::stats::PartitionStats;
    pub use crate::timers::{Change, Due, TimerQueue};
    pub use crate::watermark::Watermark;
}

/// Everything that can go wrong in a partition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state layer failed.
    #[error(transparent)]
    Store(#[from] weir_state::Error),
    /// A key's stored state did not decode.
    #[error("partition {partition}: state of key {key} does not decode: {source}")]
    State {
        partition: u32,
        key: String,
        #[source]
        source: weir_state::Error,
    },
    /// A key's stored state has a version the processor cannot read: newer
    /// than its code, or older with no migration.
    #[error(
        "partition {partition}: state of key {key} is version {found}; {processor} is at version {current}: {why}"
    )]
    StateVersion {
        partition: u32,
        key: String,
        processor: &'static str,
        found: u32,
        current: u32,
        why: String,
    },
    /// User code panicked: the partition stops, and the job with it.
    #[error(
        "{processor}::{call} panicked on key {key} in partition {partition}{}: {message}",
        position.map(|p| format!(" at position {p}")).unwrap_or_default()
    )]
    Panicked {
        /// The processor's type.
        processor: &'static str,
        /// `process`, `on_timer` or `on_late`.
        call: &'static str,
        partition: u32,
        /// The key, as `Debug` shows it.
        key: String,
        /// The record's input position (`None` for a timer).
        position: Option<u64>,
        message: String,
    },
    /// The runtime itself panicked while handling a partition's message.
    #[error("partition {partition}: internal error: {message}")]
    Internal { partition: u32, message: String },
}
