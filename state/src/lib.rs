//! weir-state: where weir keeps state on disk.
//!
//! This crate knows nothing about actors or Kafka. It offers:
//! - [`codec`]: the order-preserving, self-delimiting key encoding used for
//!   every persistent key (start here: the byte layout is a format);
//! - [`layout`]: the one place that names persistent prefixes and versions;
//! - [`value`]: versioned serde + bincode 2 encoding of state values;
//! - [`env`]: the pod-wide memory budget (one block cache, one write-buffer
//!   manager shared by all partitions);
//! - [`store`]: the [`Store`] trait the runtime writes through, with a
//!   RocksDB implementation (one instance per partition) and an in-memory one
//!   used by tests and the `TestDriver`.
//!
//! Dependency direction: `weir-state` <- `weir-actors` <- `weir`.

pub mod codec;
pub mod env;
pub mod layout;
pub mod object;
pub mod owner;
pub mod snapshot;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod value;

pub use codec::{KeyCodec, KeyPart, KeyShape};
pub use env::{MemoryBudget, StateEnv, TtlFilter};
pub use object::ObjectStorage;
pub use snapshot::{LocalDirStore, Manifest, Prefixed, SnapshotStore};
pub use store::{MemStore, RocksStore, Space, Store, get_meta_i64};

/// Everything that can go wrong in the state layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB reported an error for a partition's instance.
    #[error("rocksdb error in partition {partition}: {source}")]
    Rocks {
        partition: u32,
        #[source]
        source: rocksdb::Error,
    },
    /// A persisted key did not decode: the bytes are corrupt or were written
    /// by an incompatible layout.
    #[error("cannot decode key: {0}")]
    KeyDecode(String),
    /// A persisted value carried a format version this build does not read.
    #[error("unsupported state format version {found} (this build reads {expected})")]
    Version { found: u8, expected: u8 },
    /// A persisted value failed to decode with bincode.
    #[error("cannot decode state value: {0}")]
    ValueDecode(String),
    /// A value failed to encode with bincode.
    #[error("cannot encode state value: {0}")]
    ValueEncode(String),
    /// A checkpoint manifest is missing, malformed, or names files that are
    /// missing or corrupt.
    #[error("checkpoint: {0}")]
    Manifest(String),
    /// Another owner took over this checkpoint area: this writer must stop
    /// writing there.
    #[error(
        "{area}: owner epoch {epoch} was superseded by epoch {by} (another worker took over); \
         not writing there any more"
    )]
    Fenced { area: String, epoch: u64, by: u64 },
    /// Filesystem trouble around the state directory.
    #[error("state directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
