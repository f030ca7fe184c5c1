//! The [`Store`] trait and its two implementations.
//!
//! The runtime reads and writes a partition's state through [`Store`]. Keys
//! are grouped by [`Space`]; a store keeps each space ordered by key bytes.
//! [`RocksStore`] is the production store (one RocksDB instance per
//! partition); [`MemStore`] keeps the same contract in a `BTreeMap` for the
//! `TestDriver` and unit tests.
//!
//! Writes skip RocksDB's write-ahead log: durability comes from checkpoints,
//! which flush and snapshot the instance, never from the WAL.

use std::collections::BTreeMap;

use rocksdb::{DB, IteratorMode, ReadOptions, WriteOptions};

use crate::layout::{META_PREFIX, STATE_PREFIX, TIMER_PREFIX};
use crate::{Error, Result};

/// The keyspaces of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// Per-key state values.
    State,
    /// Timers, ordered by domain then time.
    Timers,
    /// Partition metadata.
    Meta,
}

impl Space {
    fn prefix(self) -> u8 {
        match self {
            Space::State => STATE_PREFIX,
            Space::Timers => TIMER_PREFIX,
            Space::Meta => META_PREFIX,
        }
    }
}

/// A callback that sees one entry (key without the space prefix, value).
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// A partition's durable key-value state.
pub trait Store: Send + 'static {
    /// The value under `key` in `space`, if any.
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Sets `key` to `value`.
    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) -> Result<()>;
    /// Removes `key` (no error when absent).
    fn delete(&mut self, space: Space, key: &[u8]) -> Result<()>;
    /// Calls `f` for every entry of `space` in key order.
    fn for_each(&mut self, space: Space, f: &mut Visitor<'_>) -> Result<()>;
    /// Makes everything written so far durable on local disk.
    fn flush(&mut self) -> Result<()>;
    /// Writes a consistent copy of the whole store to the new directory
    /// `dir` (a RocksDB checkpoint: hard links to immutable files plus a
    /// flush of what is in memory).
    fn checkpoint_to(&mut self, dir: &std::path::Path) -> Result<()>;
}

/// Reads the 8-byte big-endian metadata value `key` (positions,
/// watermarks) from `store`.
pub fn get_meta_i64(store: &mut (impl Store + ?Sized), key: &[u8]) -> Result<Option<i64>> {
    match store.get(Space::Meta, key)? {
        Some(b) => {
            let bytes: [u8; 8] = b.as_slice().try_into().map_err(|_| {
                Error::KeyDecode(format!(
                    "meta {} is {} bytes, not 8",
                    String::from_utf8_lossy(key),
                    b.len()
                ))
            })?;
            Ok(Some(i64::from_be_bytes(bytes)))
        }
        None => Ok(None),
    }
}

/// One RocksDB instance holding one partition.
pub struct RocksStore {
    db: DB,
    partition: u32,
    write: WriteOptions,
    key_buf: Vec<u8>,
}

impl RocksStore {
    pub(crate) fn new(db: DB, partition: u32) -> Self {
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Self {
            db,
            partition,
            write,
            key_buf: Vec::with_capacity(64),
        }
    }

    /// The partition this instance holds.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The underlying database, for checkpoints and metrics.
    pub fn db(&self) -> &DB {
        &self.db
    }

    fn full_key(&mut self, space: Space, key: &[u8]) -> &[u8] {
        self.key_buf.clear();
        self.key_buf.push(space.prefix());
        self.key_buf.extend_from_slice(key);
        &self.key_buf
    }

    fn err(&self, source: rocksdb::Error) -> Error {
        Error::Rocks {
            partition: self.partition,
            source,
        }
    }
}

impl Store for RocksStore {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let full = self.full_key(space, key).to_vec();
        self.db.get(&full).map_err(|e| self.err(e))
    }

    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) -> Result<()> {
        self.full_key(space, key);
        self.db
            .put_opt(&self.key_buf, value, &self.write)
            .map_err(|source| Error::Rocks {
                partition: self.partition,
                source,
            })
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> Result<()> {
        self.full_key(space, key);
        self.db
            .delete_opt(&self.key_buf, &self.write)
            .map_err(|source| Error::Rocks {
                partition: self.partition,
                source,
            })
    }

    fn for_each(&mut self, space: Space, f: &mut Visitor<'_>) -> Result<()> {
        let prefix = space.prefix();
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(vec![prefix]);
        read.set_iterate_upper_bound(vec![prefix + 1]);
        for item in self.db.iterator_opt(IteratorMode::Start, read) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            f(&k[1..], &v)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))
    }

    fn checkpoint_to(&mut self, dir: &std::path::Path) -> Result<()> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    path: dir.display().to_string(),
                    source,
                });
            }
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| self.err(e))
    }
}

/// An in-memory store with the same contract as [`RocksStore`].
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    data: BTreeMap<(Space, Vec<u8>), Vec<u8>>,
}

impl MemStore {
    /// Number of entries in `space`.
    pub fn len(&self, space: Space) -> usize {
        self.data.keys().filter(|(s, _)| *s == space).count()
    }
}

impl Store for MemStore {
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.data.get(&(space, key.to_vec())).cloned())
    }

    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) -> Result<()> {
        self.data.insert((space, key.to_vec()), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, space: Space, key: &[u8]) -> Result<()> {
        self.data.remove(&(space, key.to_vec()));
        Ok(())
    }

    fn for_each(&mut self, space: Space, f: &mut Visitor<'_>) -> Result<()> {
        for ((_, k), v) in self
            .data
            .range((space, Vec::new())..)
            .take_while(|((s, _), _)| *s == space)
        {
            f(k, v)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn checkpoint_to(&mut self, dir: &std::path::Path) -> Result<()> {
        Err(Error::Io {
            path: dir.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "an in-memory store has no checkpoints",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryBudget, StateEnv};

    fn exercise(store: &mut dyn Store) {
        store.put(Space::State, b"b", b"2").expect("put");
        store.put(Space::State, b"a", b"1").expect("put");
        store.put(Space::Timers, b"a", b"t").expect("put");
        assert_eq!(
            store.get(Space::State, b"a").expect("get"),
            Some(b"1".to_vec())
        );
        assert_eq!(store.get(Space::Meta, b"a").expect("get"), None);
        store.delete(Space::State, b"b").expect("delete");
        store.put(Space::State, b"c", b"3").expect("put");
        let mut seen = Vec::new();
        store
            .for_each(Space::State, &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .expect("scan");
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        store.flush().expect("flush");
    }

    #[test]
    fn mem_store_contract() {
        exercise(&mut MemStore::default());
    }

    #[test]
    fn rocks_store_contract_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = StateEnv::new(dir.path(), MemoryBudget::default()).expect("env");
        {
            let mut store = env.open_partition(3).expect("open");
            exercise(&mut store);
        }
        let mut store = env.open_partition(3).expect("reopen");
        assert_eq!(
            store.get(Space::State, b"c").expect("get"),
            Some(b"3".to_vec())
        );
        assert_eq!(
            store.get(Space::Timers, b"a").expect("get"),
            Some(b"t".to_vec())
        );
    }
}
