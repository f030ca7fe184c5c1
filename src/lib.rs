//! weir: durable, stateful stream processing with keyed actors.
//!
//! You write a [`Processor`]: per-key code with per-key state and timers.
//! weir routes every record to the virtual actor of its key, keeps each
//! key's state in RocksDB (one instance per partition, one memory budget for
//! all), and fires durable timers in event time and processing time.
//!
//! # Map
//! ```text
//! user API     Processor, Context, TestDriver, timers (re-exported from weir-actors)
//!              run::App        a processor + one call = a job binary (flags, modes, signals)
//!              decode          JSON and CEF decoders
//! shared       runtime         settings, the decoder trait, the state directory, starting
//!                              a partition's actor, shutdown: what both kinds of job use
//! jobs         job::Job        one builder: any source, any sink; the checkpoint mode
//!                              follows from the source (aligned, or per partition)
//! files        source, sink    files, stdin; JSON lines, dead-letter files
//!              job (aligned)   feed thread -> partitions -> outlet -> sinks
//!              outlet (private) barrier alignment of the sinks
//! Kafka        kafka::KafkaSource  a job's input as one worker of a consumer group
//!              kafka::group    the worker's decisions as a sans-IO state machine
//!              kafka::worker   the shell performing them (restores, actors, commits)
//!              kafka::output   Kafka and files on either side of a job
//! checkpoints  checkpoint      coordinator, upload, restore, owner epochs, pruning
//!              weir-state      RocksDB per partition, snapshot stores, manifests
//! operations   telemetry       metrics, logs, OTLP, /metrics /healthz /readyz
//!              bin/weir        the `weir checkpoints` CLI
//! ```
//! A record's path: source → decoder → partition (hash of the key) →
//! partition actor (key actor, state, timers) → outlet → sink. A
//! checkpoint's path: barrier → each partition writes its state and a
//! local RocksDB checkpoint → sinks made durable (files fsynced, Kafka
//! acknowledged) → files uploaded → manifest written → (Kafka) offset
//! committed. `docs/ARCHITECTURE.md` draws both.
//!
//! # Guarantees
//! - **Per-key order**: the calls for one key never overlap and follow the
//!   input order of its records.
//! - **No silent loss**: a record that does not decode, fails permanently,
//!   exhausts its retries or arrives late (with the default late hook) goes
//!   to the dead-letter sink with its raw input, partition, offset and
//!   reason; late records are also counted.
//! - **Bounded memory**: live keys are capped (least recently used keys are
//!   passivated, their state written to RocksDB), RocksDB stays within one
//!   memory budget, and the source waits for batch credits.
//! - **Durable timers**: timers are stored in RocksDB as they are set;
//!   setting a name again replaces the timer, so replays never double one.
//! - **Windows close**: event-time timers fire when the watermark passes
//!   them, when an idle partition's watermark follows processing time, and
//!   at the end of a finite input.
//!
//! - **Crash recovery** (with checkpoints on): aligned barriers snapshot
//!   every partition's state, timers, watermark and input position together
//!   with the lengths of the file sinks; a run killed at any moment resumes
//!   from its last complete checkpoint, input is replayed from there, and
//!   file outputs are cut back so each output appears exactly once. See
//!   [`checkpoint`].

pub mod cef;
pub mod checkpoint;
pub mod decode;
pub mod job;
pub mod kafka;
mod outlet;
pub mod partitioner;
pub mod run;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod telemetry;

pub use cef::GeneratorSource;
pub use checkpoint::{CheckpointSettings, open_store};
pub use job::{Job, Report};
pub use runtime::{CheckpointTrigger, Decode, Decoded, Settings};
pub use sink::{DeadLetterFile, Discard, JsonLines, Sink};
pub use source::{LineSource, Source};
pub use telemetry::{Metrics, Telemetry, TelemetryArgs};
pub use weir_actors::{
    Clock, Context, CoreConfig, Counters, DeadLetter, ManualClock, OnPanic, ProcessError,
    Processor, StateTtl, SystemClock, TestDriver, TimeDomain, Timer, TimerName, decode_state,
};
pub use weir_state::{KeyCodec, MemoryBudget};

/// Everything that can stop a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job's settings are inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Reading input or writing output failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The state layer failed (opening RocksDB, for instance).
    #[error(transparent)]
    State(#[from] weir_state::Error),
    /// A partition could not start.
    #[error("partition {partition}: {source}")]
    Partition {
        partition: u32,
        #[source]
        source: weir_actors::Error,
    },
    /// An actor could not be spawned or reached.
    #[error("actor error: {0}")]
    Actor(String),
    /// Kafka failed: a client could not be created, or records were not
    /// delivered.
    #[error("kafka: {0}")]
    Kafka(String),
    /// A partition or sink failed while the job ran.
    #[error("job failed: {0}")]
    Failed(String),
}

/// Locks `m`, taking over a lock poisoned by a panic elsewhere (the data
/// it guards stays consistent: every holder only makes whole updates).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
