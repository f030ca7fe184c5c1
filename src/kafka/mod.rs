//! Kafka: a consumer-group job ([`KafkaJob`]) and its sink ([`KafkaSink`]).
//!
//! Each partition of the input topic is a weir partition: one actor, one
//! RocksDB instance, and its own sequence of checkpoints in the shared
//! snapshot store (under `<topic>/p<N>/`). Partitions are spread over the
//! worker processes of one consumer group (cooperative-sticky assignor);
//! when one moves, its last owner takes a final checkpoint and its new owner
//! restores it and seeks to its offset. See [`worker`] for the protocol.

pub mod config;
pub mod sink;
pub mod watch;
pub mod worker;

pub use config::Properties;
pub use sink::{DeadLetterRecord, KafkaSink, headers};
pub use watch::OnOffsetReset;
pub use worker::{KafkaJob, KafkaReport, KafkaSettings, Lag, LagHandle, RecordKey};
