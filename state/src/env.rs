//! The pod-wide state environment: one memory budget for all partitions.
//!
//! Every partition owns its own RocksDB instance (so a partition moves
//! between pods as one unit), but all instances of a process share one block
//! cache and one write-buffer manager whose memtable memory is charged to
//! that cache. The whole state layer therefore stays within
//! [`MemoryBudget::bytes`], however many partitions a pod holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager,
};

use crate::layout::STATE_PREFIX;
use crate::store::RocksStore;
use crate::value::split_state;
use crate::{Error, Result};

/// Drops state values older than a time to live when RocksDB compacts
/// them: no timer per key, and no read of the value beyond its header.
#[derive(Debug, Clone)]
pub struct TtlFilter {
    /// How long a value lives after it was written.
    pub after_ms: i64,
    /// "Now" in the time-to-live's domain (processing time or the
    /// watermark), kept current by the partition; `i64::MIN` until it is
    /// known, so nothing expires before.
    pub now: Arc<AtomicI64>,
}

impl TtlFilter {
    /// Whether the record `key` → `value` is a state value past its time.
    pub fn expired(&self, key: &[u8], value: &[u8]) -> bool {
        key.first() == Some(&STATE_PREFIX)
            && split_state(value)
                .ok()
                .and_then(|s| s.written_at)
                .is_some_and(|at| {
                    // `i64::MIN`: written when the time was not known.
                    at != i64::MIN
                        && at.saturating_add(self.after_ms) < self.now.load(Ordering::Relaxed)
                })
    }
}

/// How much memory RocksDB may use in this process, all partitions together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Block cache plus memtables, in bytes.
    pub bytes: usize,
}

impl Default for MemoryBudget {
    /// 64 MiB: enough for the examples, small enough for a laptop.
    fn default() -> Self {
        Self { bytes: 64 << 20 }
    }
}

/// Shared RocksDB resources and the root directory of partition instances.
/// Clones share the cache and memtable budget.
#[derive(Clone)]
pub struct StateEnv {
    root: PathBuf,
    cache: Cache,
    write_buffers: WriteBufferManager,
    budget: MemoryBudget,
}

impl StateEnv {
    /// Creates the environment rooted at `root` (created when missing).
    pub fn new(root: impl AsRef<Path>, budget: MemoryBudget) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|source| Error::Io {
            path: root.display().to_string(),
            source,
        })?;
        let cache = Cache::new_lru_cache(budget.bytes);
        // A quarter of the budget for memtables, charged to the same cache.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            budget.bytes / 4,
            false,
            cache.clone(),
        );
        Ok(Self {
            root,
            cache,
            write_buffers,
            budget,
        })
    }

    /// The directory holding partition `partition`'s instance.
    pub fn partition_dir(&self, partition: u32) -> PathBuf {
        self.root.join(format!("partition-{partition:05}"))
    }

    /// The budget this environment was created with.
    pub fn budget(&self) -> MemoryBudget {
        self.budget
    }

    /// Bytes currently held by the shared block cache (memtables included).
    pub fn cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    /// Bytes currently held by memtables.
    pub fn memtable_usage(&self) -> usize {
        self.write_buffers.get_usage()
    }

    fn options(&self) -> Options {
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(&self.cache);
        block.set_bloom_filter(10.0, false);
        block.set_cache_index_and_filter_blocks(true);
        block.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Partitioned index and filters: a table's index and filter are
        // cut into 4 KiB blocks that the shared cache keeps like data
        // blocks, under a small top level pinned there. A table's filter
        // in one block outgrows a cache shard (1 MiB of the default 64 MiB
        // budget) at about 800,000 keys, and a block larger than its shard
        // is never kept: every read of a key not in memory then read the
        // whole filter from the file again and verified its checksum (78 %
        // of the CPU time of a run over millions of churning keys, which
        // ran 3 times faster with partitions; BENCHMARKS.md).
        block.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        block.set_partition_filters(true);
        block.set_metadata_block_size(4096);
        block.set_pin_top_level_index_and_filter(true);

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&block);
        opts.set_write_buffer_manager(&self.write_buffers);
        opts.set_write_buffer_size((self.budget.bytes / 8).clamp(1 << 20, 64 << 20));
        opts.set_max_write_buffer_number(3);
        // Checkpoints flush memtables, so level 0 fills faster than usual.
        // Compacting it later keeps incremental checkpoints small: every
        // compaction rewrites (and so re-uploads) the files it merges.
        opts.set_level_zero_file_num_compaction_trigger(8);
        opts.set_level_zero_slowdown_writes_trigger(24);
        opts.set_level_zero_stop_writes_trigger(40);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Zstd);
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(2);
        opts
    }

    /// Deletes partition `partition`'s instance, if any.
    pub fn reset_partition(&self, partition: u32) -> Result<()> {
        let path = self.partition_dir(partition);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Opens (creating when missing) the instance of `partition`.
    pub fn open_partition(&self, partition: u32) -> Result<RocksStore> {
        self.open_partition_with_ttl(partition, None)
    }

    /// Like [`open_partition`](Self::open_partition), dropping expired
    /// state values during compaction when `ttl` is given.
    pub fn open_partition_with_ttl(
        &self,
        partition: u32,
        ttl: Option<TtlFilter>,
    ) -> Result<RocksStore> {
        let path = self.partition_dir(partition);
        let mut options = self.options();
        if let Some(ttl) = ttl {
            options.set_compaction_filter("weir-state-ttl", move |_level, key, value| {
                if ttl.expired(key, value) {
                    rocksdb::CompactionDecision::Remove
                } else {
                    rocksdb::CompactionDecision::Keep
                }
            });
        }
        let db = rocksdb::DB::open(&options, &path)
            .map_err(|source| Error::Rocks { partition, source })?;
        Ok(RocksStore::new(db, partition))
    }
}

impl std::fmt::Debug for StateEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateEnv")
            .field("root", &self.root)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod ttl_tests {
    use super::*;
    use crate::store::{Space, Store};
    use crate::value::encode_state;

    #[test]
    fn compaction_drops_state_past_its_time_to_live_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = StateEnv::new(dir.path(), MemoryBudget { bytes: 8 << 20 }).expect("env");
        let now = Arc::new(AtomicI64::new(i64::MIN));
        let ttl = TtlFilter {
            after_ms: 1_000,
            now: Arc::clone(&now),
        };
        let mut store = env.open_partition_with_ttl(0, Some(ttl)).expect("opens");
        let mut v = Vec::new();
        for (key, written) in [
            (&b"old"[..], Some(1_000)),
            (b"new", Some(4_500)),
            (b"forever", None),
        ] {
            encode_state(&7u64, 1, written, &mut v).expect("encodes");
            store.put(Space::State, key, &v).expect("put");
        }
        store.put(Space::Meta, b"old", b"meta").expect("put");
        let compact = |store: &RocksStore| {
            store.db().flush().expect("flush");
            store.db().compact_range(None::<&[u8]>, None::<&[u8]>);
        };
        // Before the partition says what time it is, nothing expires.
        compact(&store);
        assert!(store.get(Space::State, b"old").expect("get").is_some());
        now.store(5_000, Ordering::Relaxed);
        compact(&store);
        assert_eq!(
            store.get(Space::State, b"old").expect("get"),
            None,
            "expired"
        );
        assert!(store.get(Space::State, b"new").expect("get").is_some());
        assert!(store.get(Space::State, b"forever").expect("get").is_some());
        assert!(
            store.get(Space::Meta, b"old").expect("get").is_some(),
            "not state"
        );
    }
}
