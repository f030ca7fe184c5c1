//! Kafka: a job's input as a member of a consumer group ([`KafkaSource`],
//! given to [`crate::Job::source`]) and the producer ([`KafkaSink`]).
//!
//! Each partition of the input topic is a weir partition: one actor, one
//! RocksDB instance, and its own sequence of checkpoints in the shared
//! snapshot store (under `jobs/<job>/<topic>/p<N>/`). Partitions are spread
//! over the worker processes of one consumer group (cooperative-sticky
//! assignor); when one moves, its last owner takes a final checkpoint and
//! its new owner restores it and seeks to its offset.
//!
//! ## Map
//! - [`settings`]: [`KafkaSettings`] and [`RecordKey`];
//! - `job`: [`KafkaSource`] and the run of a job over it: clients,
//!   threads, the end of the run;
//! - `group`: the worker's decisions as a state machine without I/O
//!   (assign, revoke, records, credits, barriers, checkpoint outcomes,
//!   commits, backpressure, fencing), with a property test;
//! - `worker`: the shell that performs those decisions (restores,
//!   actors, pauses, commits) and watches inputs; the protocol is described
//!   there;
//! - `consumer`: rebalance callbacks, statistics and the poll loop;
//! - `output`: where outputs go: the producer, or sinks (Kafka → file),
//!   and the producer as a sink for file jobs (file → Kafka), with what
//!   each pair of source and sink guarantees;
//! - `upload`: the outlet of an assignment and the upload thread;
//! - `lag`: per-partition progress ([`Lag`], [`LagHandle`]);
//! - [`watch`]: stalls and skipped offsets; [`sink`]: the producer;
//!   [`config`]: librdkafka properties.

pub mod config;
mod consumer;
mod group;
mod job;
mod lag;
pub(crate) mod output;
pub mod settings;
pub mod sink;
mod upload;
pub mod watch;
mod worker;

pub use config::Properties;
pub use job::{KafkaReport, KafkaSource};
pub use lag::{Lag, LagHandle};
pub use output::{KafkaDeadLetters, KafkaOutput};
pub use settings::{KafkaSettings, RecordKey};
pub use sink::{DeadLetterRecord, KafkaSink, headers};
pub(crate) use upload::{partition_area, partition_store};
pub use watch::OnOffsetReset;
