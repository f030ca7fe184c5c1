//! The pod-wide state environment: one memory budget for all partitions.
//!
//! Every partition owns its own RocksDB instance (so a partition moves
//! between pods as one unit), but all instances of a process share one block
//! cache and one write-buffer manager whose memtable memory is charged to
//! that cache. The whole state layer therefore stays within
//! [`MemoryBudget::bytes`], however many partitions a pod holds.

use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager};

use crate::store::RocksStore;
use crate::{Error, Result};

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
        let path = self.partition_dir(partition);
        let db = rocksdb::DB::open(&self.options(), &path)
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
