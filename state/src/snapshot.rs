//! Snapshot stores and checkpoint manifests.
//!
//! A checkpoint in a store is a set of files and, written last, its manifest
//! `checkpoints/<id>/MANIFEST.json`: a checkpoint without a manifest does not
//! exist. SST files are immutable, so they are stored once under
//! `shared/p<partition>/<name>-<crc32>-<size>.sst` and referenced by every
//! manifest that needs them (incremental upload); RocksDB's small metadata
//! files (`CURRENT`, `MANIFEST-*`, `OPTIONS-*`) go under the checkpoint's own
//! folder. Pruning keeps the newest `retain` checkpoints and deletes any
//! shared file no kept manifest references.
//!
//! [`SnapshotStore`] is the storage interface; [`LocalDirStore`] is the
//! local-directory implementation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Version of the manifest format written. Version 1 (no job id, no
/// epoch) is still read.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// Largest file a manifest may name (a RocksDB SST is far smaller).
pub const MAX_FILE_BYTES: u64 = 1 << 40;
/// Most files one partition's snapshot may name.
pub const MAX_FILES: usize = 100_000;

/// Where checkpoints are kept.
pub trait SnapshotStore: Send + Sync + 'static {
    /// A human-readable location (a path or URL).
    fn describe(&self) -> String;
    /// Stores the local file at `local` under `key` (atomically visible).
    fn put_file(&self, key: &str, local: &Path) -> Result<()>;
    /// Stores `data` under `key` (atomically visible).
    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<()>;
    /// The bytes under `key`, if any.
    fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Copies the object under `key` to the local file `local`.
    fn get_file(&self, key: &str, local: &Path) -> Result<()>;
    /// The size of the object under `key`, if it exists.
    fn size(&self, key: &str) -> Result<Option<u64>>;
    /// Every key starting with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes `key` (no error when absent).
    fn delete(&self, key: &str) -> Result<()>;
    /// Stores `data` under `key` only if no object is there yet: `true`
    /// when this call wrote it, `false` when the key already existed. Of
    /// two concurrent callers at most one gets `true` (object storage:
    /// create-if-absent; a directory: hard link, which fails on an
    /// existing name). Owner epochs are taken with it.
    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        let _ = (key, data);
        Err(Error::Manifest(format!(
            "{}: this store cannot write conditionally",
            self.describe()
        )))
    }
    /// Every key starting with `prefix`, with when it was last written.
    /// Pruning leaves objects younger than its grace period alone.
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        let _ = prefix;
        Err(Error::Manifest(format!(
            "{}: this store cannot tell when objects were written",
            self.describe()
        )))
    }
}

/// A store seen through a key prefix: every key is read and written under
/// `prefix` in `inner`, and listed without it. Gives each Kafka partition
/// its own checkpoint sequence in one shared store.
pub struct Prefixed {
    inner: std::sync::Arc<dyn SnapshotStore>,
    prefix: String,
}

impl Prefixed {
    /// `inner` under `prefix` (a `/` is added when missing).
    pub fn new(inner: std::sync::Arc<dyn SnapshotStore>, prefix: &str) -> Self {
        let mut prefix = prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { inner, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl SnapshotStore for Prefixed {
    fn describe(&self) -> String {
        format!("{} (under {})", self.inner.describe(), self.prefix)
    }
    fn put_file(&self, key: &str, local: &Path) -> Result<()> {
        self.inner.put_file(&self.key(key), local)
    }
    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<()> {
        self.inner.put_bytes(&self.key(key), data)
    }
    fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_bytes(&self.key(key))
    }
    fn get_file(&self, key: &str, local: &Path) -> Result<()> {
        self.inner.get_file(&self.key(key), local)
    }
    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.inner.size(&self.key(key))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .inner
            .list(&self.key(prefix))?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string))
            .collect())
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(&self.key(key))
    }
    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        self.inner.put_if_absent(&self.key(key), data)
    }
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        Ok(self
            .inner
            .list_modified(&self.key(prefix))?
            .into_iter()
            .filter_map(|(k, t)| k.strip_prefix(&self.prefix).map(|k| (k.to_string(), t)))
            .collect())
    }
}

/// A file of a partition's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the RocksDB directory.
    pub name: String,
    /// Its key in the store.
    pub key: String,
    pub size: u64,
    pub crc32: u32,
}

/// One partition in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    pub partition: u32,
    /// Input position (next byte / offset to read) at the barrier.
    pub position: u64,
    /// Watermark at the barrier.
    pub watermark: i64,
    pub files: Vec<FileEntry>,
}

/// A complete checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The job that wrote it (absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The owner epoch it was written in (0 in format 1).
    #[serde(default)]
    pub epoch: u64,
    pub checkpoint_id: u64,
    /// When it completed, ms since the epoch.
    pub created_at_ms: i64,
    /// Lengths of exactly-once file outputs, by sink name.
    pub sinks: BTreeMap<String, u64>,
    pub partitions: Vec<PartitionSnapshot>,
}

impl Manifest {
    /// Total bytes of the files this checkpoint references.
    pub fn total_bytes(&self) -> u64 {
        self.partitions
            .iter()
            .flat_map(|p| &p.files)
            .map(|f| f.size)
            .sum()
    }

    /// Decodes a manifest, checking its format version.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let v: Version = serde_json::from_slice(bytes)
            .map_err(|e| Error::Manifest(format!("not a manifest: {e}")))?;
        if !(1..=MANIFEST_FORMAT_VERSION).contains(&v.format_version) {
            return Err(Error::Manifest(format!(
                "manifest format version {} (this build reads {MANIFEST_FORMAT_VERSION})",
                v.format_version
            )));
        }
        let m: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::Manifest(format!("bad manifest: {e}")))?;
        m.check()?;
        Ok(m)
    }

    /// Checks every name and size before anything is written from it: a
    /// file name is one plain path segment, a key lies in this area's
    /// layout for its partition, sizes are within limits. A manifest that
    /// fails is a damaged checkpoint.
    pub fn check(&self) -> Result<()> {
        for part in &self.partitions {
            if part.files.len() > MAX_FILES {
                return Err(Error::Manifest(format!(
                    "partition {} names {} files (at most {MAX_FILES})",
                    part.partition,
                    part.files.len()
                )));
            }
            let own = format!(
                "{}p{}/",
                checkpoint_prefix(self.checkpoint_id),
                part.partition
            );
            let shared = format!("shared/p{}/", part.partition);
            for f in &part.files {
                let bad = |why: &str| {
                    Err(Error::Manifest(format!(
                        "partition {} names file {:?} at {:?}: {why}",
                        part.partition, f.name, f.key
                    )))
                };
                if !is_plain_name(&f.name) {
                    return bad("not a plain file name");
                }
                let Some(rest) = f
                    .key
                    .strip_prefix(&own)
                    .or_else(|| f.key.strip_prefix(&shared))
                else {
                    return bad(
                        "outside the checkpoint's own folder and the partition's shared one",
                    );
                };
                if !is_plain_name(rest) {
                    return bad("not a plain key");
                }
                if f.size > MAX_FILE_BYTES {
                    return bad("larger than any checkpoint file may be");
                }
            }
        }
        Ok(())
    }

    /// Encodes the manifest as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serializes")
    }
}

/// Whether `name` is one path segment that names a file here and nowhere
/// else: not empty, not `.` or `..`, only ASCII letters, digits, `.`, `_`
/// and `-` (every name RocksDB and weir write).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `key` is a relative store key of plain segments.
pub fn is_safe_key(key: &str) -> bool {
    key.split('/').all(is_plain_name)
}

/// The store key of checkpoint `id`'s manifest.
pub fn manifest_key(id: u64) -> String {
    format!("checkpoints/{id:020}/MANIFEST.json")
}

fn checkpoint_prefix(id: u64) -> String {
    format!("checkpoints/{id:020}/")
}

/// Ids of the checkpoints that have a manifest, oldest first.
pub fn list_checkpoints(store: &dyn SnapshotStore) -> Result<Vec<u64>> {
    let mut ids: Vec<u64> = store
        .list("checkpoints/")?
        .iter()
        .filter_map(|k| {
            let rest = k.strip_prefix("checkpoints/")?;
            let (id, file) = rest.split_once('/')?;
            (file == "MANIFEST.json").then(|| id.parse().ok()).flatten()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Reads checkpoint `id`'s manifest.
pub fn load_manifest(store: &dyn SnapshotStore, id: u64) -> Result<Manifest> {
    let bytes = store
        .get_bytes(&manifest_key(id))?
        .ok_or_else(|| Error::Manifest(format!("checkpoint {id} has no manifest")))?;
    Manifest::decode(&bytes)
}

/// CRC-32 and size of a local file.
pub fn checksum_file(path: &Path) -> Result<(u32, u64)> {
    let mut f = fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((h.finalize(), size))
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What an upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Bytes copied to the store.
    pub uploaded_bytes: u64,
    /// Bytes referenced from earlier checkpoints instead of copied.
    pub reused_bytes: u64,
    pub files: u64,
}

/// Uploads one partition's local RocksDB checkpoint directory.
/// `known` caches checksums of SSTs seen before (they never change).
pub fn upload_partition(
    store: &dyn SnapshotStore,
    checkpoint_id: u64,
    partition: u32,
    dir: &Path,
    known: &mut HashMap<(u32, String, u64), u32>,
    stats: &mut UploadStats,
) -> Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| io_err(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let size = entry.metadata().map_err(|e| io_err(&path, e))?.len();
        stats.files += 1;
        if let Some(stem) = name.strip_suffix(".sst") {
            let crc = match known.get(&(partition, name.clone(), size)) {
                Some(&crc) => crc,
                None => checksum_file(&path)?.0,
            };
            let key = format!("shared/p{partition}/{stem}-{crc:08x}-{size}.sst");
            if store.size(&key)? == Some(size) {
                stats.reused_bytes += size;
            } else {
                store.put_file(&key, &path)?;
                stats.uploaded_bytes += size;
            }
            known.insert((partition, name.clone(), size), crc);
            files.push(FileEntry {
                name,
                key,
                size,
                crc32: crc,
            });
        } else {
            let (crc, size) = checksum_file(&path)?;
            let key = format!("{}p{partition}/{name}", checkpoint_prefix(checkpoint_id));
            store.put_file(&key, &path)?;
            stats.uploaded_bytes += size;
            files.push(FileEntry {
                name,
                key,
                size,
                crc32: crc,
            });
        }
    }
    Ok(files)
}

/// Downloads a partition's files into `dest` (replaced), verifying sizes and
/// checksums.
pub fn restore_partition(
    store: &dyn SnapshotStore,
    part: &PartitionSnapshot,
    dest: &Path,
) -> Result<u64> {
    restore_partition_with(store, part, dest, &mut |_| {})
}

/// [`restore_partition`], telling `progress` the size of each file once it
/// is in and verified.
pub fn restore_partition_with(
    store: &dyn SnapshotStore,
    part: &PartitionSnapshot,
    dest: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    // Nothing is written from a name that could point elsewhere.
    if let Some(f) = part
        .files
        .iter()
        .find(|f| !is_plain_name(&f.name) || !is_safe_key(&f.key) || f.size > MAX_FILE_BYTES)
    {
        return Err(Error::Manifest(format!(
            "partition {} names file {:?} at {:?} ({} bytes): refusing to restore it",
            part.partition, f.name, f.key, f.size
        )));
    }
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(|e| io_err(dest, e))?;
    }
    fs::create_dir_all(dest).map_err(|e| io_err(dest, e))?;
    let mut bytes = 0;
    for f in &part.files {
        // An object of another size is damage, found before downloading it.
        match store.size(&f.key)? {
            Some(size) if size == f.size => {}
            found => {
                return Err(Error::Manifest(format!(
                    "{} of partition {}: expected {} bytes, the store has {}",
                    f.key,
                    part.partition,
                    f.size,
                    found.map_or("nothing".to_string(), |s| format!("{s} bytes"))
                )));
            }
        }
        let local = dest.join(&f.name);
        store.get_file(&f.key, &local)?;
        let (crc, size) = checksum_file(&local)?;
        if size != f.size || crc != f.crc32 {
            return Err(Error::Manifest(format!(
                "{} of partition {}: expected {} bytes with crc32 {:08x}, found {} bytes with crc32 {:08x}",
                f.key, part.partition, f.size, f.crc32, size, crc
            )));
        }
        bytes += size;
        progress(size);
    }
    Ok(bytes)
}

/// Checks that every file of `manifest` exists in the store with its size.
pub fn verify_present(store: &dyn SnapshotStore, manifest: &Manifest) -> Result<()> {
    for f in manifest.partitions.iter().flat_map(|p| &p.files) {
        match store.size(&f.key)? {
            Some(s) if s == f.size => {}
            Some(s) => {
                return Err(Error::Manifest(format!(
                    "{} has {s} bytes, expected {}",
                    f.key, f.size
                )));
            }
            None => return Err(Error::Manifest(format!("{} is missing", f.key))),
        }
    }
    Ok(())
}

/// The outcome of [`choose_checkpoint`].
#[derive(Debug)]
pub struct Choice<T> {
    /// The checkpoint to use and what its check produced.
    pub chosen: Option<(u64, T)>,
    /// Newer checkpoints skipped, with reasons.
    pub skipped: Vec<(u64, String)>,
}

/// The recovery decision: tries checkpoints `ids` (oldest first) newest
/// first with `check`, and chooses the first that passes.
pub fn choose_checkpoint<T, E: std::fmt::Display>(
    ids: &[u64],
    mut check: impl FnMut(u64) -> std::result::Result<T, E>,
) -> Choice<T> {
    let mut skipped = Vec::new();
    for &id in ids.iter().rev() {
        match check(id) {
            Ok(v) => {
                return Choice {
                    chosen: Some((id, v)),
                    skipped,
                };
            }
            Err(e) => skipped.push((id, e.to_string())),
        }
    }
    Choice {
        chosen: None,
        skipped,
    }
}

/// What [`prune`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Newest eligible checkpoints kept (at least 1).
    pub retain: usize,
    /// Unreferenced objects younger than this (when pruning began) stay.
    pub grace: std::time::Duration,
    /// The pruning owner's epoch: nothing is deleted once it is superseded.
    pub epoch: u64,
}

/// Deletes all but the newest `retain` eligible checkpoints (see
/// [`crate::owner::eligibility`]) and every manifest no restore may take,
/// then every object no kept checkpoint references and older than the
/// grace period. Returns the number of objects deleted.
pub fn prune(store: &dyn SnapshotStore, keep: Retention) -> Result<usize> {
    let began = std::time::SystemTime::now();
    let old_enough =
        |t: std::time::SystemTime| t.checked_add(keep.grace).is_some_and(|t| t < began);
    crate::owner::check_owner(store, keep.epoch)?;
    let ids = list_checkpoints(store)?;
    let epochs = crate::owner::load_epochs(store)?;
    let split = crate::owner::eligibility(&ids, &epochs);
    let kept: BTreeSet<u64> = split
        .eligible
        .iter()
        .rev()
        .take(keep.retain.max(1))
        .copied()
        .collect();
    let mut referenced = BTreeSet::new();
    for &id in &kept {
        let m = load_manifest(store, id)?;
        referenced.extend(
            m.partitions
                .into_iter()
                .flat_map(|p| p.files)
                .map(|f| f.key),
        );
    }
    if kept.is_empty() {
        return Ok(0);
    }
    let mut deleted = 0;
    // Manifests first, so a crash midway never leaves a manifest whose files
    // are gone.
    for &id in &ids {
        if !kept.contains(&id) {
            crate::owner::check_owner(store, keep.epoch)?;
            store.delete(&manifest_key(id))?;
            deleted += 1;
        }
    }
    let mut objects = store.list_modified("checkpoints/")?;
    objects.extend(store.list_modified("shared/")?);
    crate::owner::check_owner(store, keep.epoch)?;
    for (key, written) in objects {
        let in_kept = key
            .strip_prefix("checkpoints/")
            .and_then(|r| r.split_once('/'))
            .and_then(|(id, _)| id.parse::<u64>().ok())
            .is_some_and(|id| kept.contains(&id));
        if !in_kept && !referenced.contains(&key) && old_enough(written) {
            store.delete(&key)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// A snapshot store in a local (or mounted shared) directory.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// A store rooted at `root` (created when missing). Temporary files
    /// left by uploads of processes that are gone are removed.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
        let store = Self { root };
        store.sweep_abandoned()?;
        Ok(store)
    }

    /// Deletes `*.tmp-<pid>` files whose process no longer runs.
    fn sweep_abandoned(&self) -> Result<()> {
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for entry in rd.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.rsplit_once(".tmp-").map(|(_, pid)| pid.to_string()) else {
                    continue;
                };
                let alive = pid
                    .parse::<u32>()
                    .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if !alive {
                    fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
                }
            }
        }
        Ok(())
    }

    /// The file of `key`: refused unless the key is relative and made of
    /// plain segments, so no key reaches outside the root.
    fn path(&self, key: &str) -> Result<PathBuf> {
        if is_safe_key(key) {
            Ok(self.root.join(key))
        } else {
            Err(Error::Manifest(format!(
                "{}: refusing key {key:?} (not a relative path of plain names)",
                self.root.display()
            )))
        }
    }

    fn tmp_path(&self, target: &Path) -> PathBuf {
        let mut name = target
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(format!(".tmp-{}", std::process::id()));
        target.with_file_name(name)
    }

    fn publish(&self, tmp: &Path, target: &Path) -> Result<()> {
        fs::rename(tmp, target).map_err(|e| io_err(target, e))?;
        self.sync_parent(target);
        Ok(())
    }

    fn sync_parent(&self, target: &Path) {
        if let Some(parent) = target.parent()
            && let Ok(d) = fs::File::open(parent)
        {
            let _ = d.sync_all();
        }
    }

    /// Writes `data` durably to the temporary file beside `target`.
    fn write_tmp(&self, target: &Path, data: &[u8]) -> Result<PathBuf> {
        self.ensure_parent(target)?;
        let tmp = self.tmp_path(target);
        let mut f = fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(|e| io_err(&tmp, e))?;
        Ok(tmp)
    }

    fn ensure_parent(&self, target: &Path) -> Result<()> {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        Ok(())
    }
}

impl SnapshotStore for LocalDirStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn put_file(&self, key: &str, local: &Path) -> Result<()> {
        let target = self.path(key)?;
        self.ensure_parent(&target)?;
        let tmp = self.tmp_path(&target);
        let _ = fs::remove_file(&tmp);
        // SSTs never change once written, so on the same filesystem a hard
        // link is a safe, free copy; other files are copied.
        let linked =
            local.extension().is_some_and(|e| e == "sst") && fs::hard_link(local, &tmp).is_ok();
        if !linked {
            fs::copy(local, &tmp).map_err(|e| io_err(local, e))?;
        }
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err(&tmp, e))?;
        self.publish(&tmp, &target)
    }

    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<()> {
        let target = self.path(key)?;
        let tmp = self.write_tmp(&target, data)?;
        self.publish(&tmp, &target)
    }

    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        let target = self.path(key)?;
        let tmp = self.write_tmp(&target, data)?;
        // A hard link fails on an existing name: of two writers one wins,
        // and the file appears whole.
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.sync_parent(&target);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(&target, e)),
        }
    }

    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        for key in self.list(prefix)? {
            let path = self.path(&key)?;
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, e)),
            };
            // A hard-linked SST keeps RocksDB's write time; linking it
            // changed the inode, so the later of the two is when it came in.
            let changed = std::time::UNIX_EPOCH
                + std::time::Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
            let modified = meta.modified().map_err(|e| io_err(&path, e))?;
            out.push((key, modified.max(changed)));
        }
        Ok(out)
    }

    fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    fn get_file(&self, key: &str, local: &Path) -> Result<()> {
        let path = self.path(key)?;
        fs::copy(&path, local).map_err(|e| io_err(&path, e))?;
        Ok(())
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        // Only the folder the prefix names can hold matching keys.
        let start = match prefix.rsplit_once('/') {
            Some((dir, _)) => self.path(dir)?,
            None => self.root.clone(),
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| io_err(&dir, e))?;
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    let temporary = key.rsplit('/').next().is_some_and(|n| n.contains(".tmp-"));
                    if key.starts_with(prefix) && !temporary && is_safe_key(&key) {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                // Tidy an emptied checkpoint folder; failure is harmless.
                if let Some(parent) = path.parent() {
                    let _ = fs::remove_dir(parent);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: u64, keys: &[&str]) -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            job_id: Some("j".into()),
            epoch: crate::owner::epoch_of(id),
            checkpoint_id: id,
            created_at_ms: 1,
            sinks: BTreeMap::from([("output".to_string(), 10)]),
            partitions: vec![PartitionSnapshot {
                partition: 0,
                position: 100,
                watermark: -5,
                files: keys
                    .iter()
                    .map(|k| FileEntry {
                        name: k.rsplit('/').next().unwrap_or(k).to_string(),
                        key: k.to_string(),
                        size: 1,
                        crc32: 0,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn manifest_roundtrip_and_version_check() {
        let m = manifest(3, &["shared/p0/a.sst"]);
        assert_eq!(Manifest::decode(&m.encode()).expect("decodes"), m);
        let mut v: serde_json::Value = serde_json::from_slice(&m.encode()).expect("json");
        v["format_version"] = 99.into();
        let err = Manifest::decode(&serde_json::to_vec(&v).expect("json")).unwrap_err();
        assert!(err.to_string().contains("format version 99"), "{err}");
        assert!(Manifest::decode(b"{").is_err());
        // Format 1 (no job id, no epoch) is still read.
        v["format_version"] = 1.into();
        v.as_object_mut().expect("object").remove("job_id");
        v.as_object_mut().expect("object").remove("epoch");
        let old = Manifest::decode(&serde_json::to_vec(&v).expect("json")).expect("format 1");
        assert_eq!((old.job_id, old.epoch), (None, 0));
        assert_eq!(
            manifest_key(3),
            manifest_key(3),
            "checkpoints/00000000000000000003/MANIFEST.json"
        );
    }

    #[test]
    fn recovery_decision_takes_the_newest_that_passes() {
        let c = choose_checkpoint(&[1, 2, 3], |id| {
            if id == 3 {
                Err("files missing")
            } else {
                Ok(id * 10)
            }
        });
        assert_eq!(c.chosen, Some((2, 20)));
        assert_eq!(c.skipped, vec![(3, "files missing".to_string())]);
        let c = choose_checkpoint(&[1, 2], |_| Err::<(), _>("bad"));
        assert!(c.chosen.is_none());
        assert_eq!(c.skipped.len(), 2);
        assert!(
            choose_checkpoint(&[], |_| Ok::<_, String>(()))
                .chosen
                .is_none()
        );
    }

    #[test]
    fn retention_keeps_referenced_files_and_in_progress_checkpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path()).expect("store");
        for key in [
            "shared/p0/a.sst",
            "shared/p0/b.sst",
            "shared/p0/c.sst",
            "checkpoints/00000000000000000004/p0/CURRENT",
        ] {
            store.put_bytes(key, b"x").expect("put");
        }
        for (id, files) in [
            (1, vec!["shared/p0/a.sst"]),
            (2, vec!["shared/p0/a.sst", "shared/p0/b.sst"]),
            (3, vec!["shared/p0/b.sst", "shared/p0/c.sst"]),
        ] {
            store
                .put_bytes(&manifest_key(id), &manifest(id, &files).encode())
                .expect("manifest");
        }
        assert_eq!(list_checkpoints(&store).expect("list"), vec![1, 2, 3]);
        let keep = |retain, grace| Retention {
            retain,
            grace: std::time::Duration::from_secs(grace),
            epoch: 0,
        };
        prune(&store, keep(2, 600)).expect("prune");
        assert_eq!(list_checkpoints(&store).expect("list"), vec![2, 3]);
        assert_eq!(
            store.size("shared/p0/a.sst").expect("size"),
            Some(1),
            "kept: checkpoint 2 uses it"
        );
        prune(&store, keep(1, 600)).expect("prune");
        assert_eq!(list_checkpoints(&store).expect("list"), vec![3]);
        assert_eq!(
            store.size("shared/p0/a.sst").expect("size"),
            Some(1),
            "unreferenced but younger than the grace period"
        );
        assert_eq!(
            store
                .size("checkpoints/00000000000000000004/p0/CURRENT")
                .expect("size"),
            Some(1),
            "a checkpoint without a manifest may be in progress"
        );
        prune(&store, keep(1, 0)).expect("prune");
        assert_eq!(
            store.size("shared/p0/a.sst").expect("size"),
            None,
            "no kept checkpoint uses it"
        );
        assert_eq!(store.size("shared/p0/b.sst").expect("size"), Some(1));
        assert_eq!(
            store
                .size("checkpoints/00000000000000000004/p0/CURRENT")
                .expect("size"),
            None
        );
        // A superseded owner deletes nothing.
        crate::owner::take(&store, "j", "a", 0).expect("epoch 1");
        crate::owner::take(&store, "j", "b", 0).expect("epoch 2");
        let mut stale = keep(1, 0);
        stale.epoch = 1;
        assert!(matches!(prune(&store, stale), Err(Error::Fenced { .. })));
        assert_eq!(list_checkpoints(&store).expect("list"), vec![3]);
        verify_present(
            &store,
            &manifest(3, &["shared/p0/b.sst", "shared/p0/c.sst"]),
        )
        .expect("present");
        assert!(verify_present(&store, &manifest(3, &["shared/p0/a.sst"])).is_err());
    }

    #[test]
    fn temporary_files_of_dead_uploads_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("shared").join("p0");
        fs::create_dir_all(&shared).expect("mkdir");
        // No process has pid 4294967295; ours is alive.
        fs::write(shared.join("a.sst.tmp-4294967295"), b"x").expect("write");
        let own = format!("b.sst.tmp-{}", std::process::id());
        fs::write(shared.join(&own), b"x").expect("write");
        fs::write(shared.join("c.sst"), b"x").expect("write");
        LocalDirStore::new(dir.path()).expect("store");
        assert!(!shared.join("a.sst.tmp-4294967295").exists());
        assert!(
            shared.join(&own).exists(),
            "a live process's upload is left alone"
        );
        assert!(shared.join("c.sst").exists());
    }

    #[test]
    fn prefixed_stores_keep_separate_checkpoint_sequences() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root: std::sync::Arc<dyn SnapshotStore> =
            std::sync::Arc::new(LocalDirStore::new(dir.path()).expect("store"));
        let a = Prefixed::new(root.clone(), "alerts/p0");
        let b = Prefixed::new(root.clone(), "alerts/p1/");
        a.put_bytes(&manifest_key(1), &manifest(1, &[]).encode())
            .expect("put");
        a.put_bytes(&manifest_key(2), &manifest(2, &[]).encode())
            .expect("put");
        b.put_bytes(&manifest_key(7), &manifest(7, &[]).encode())
            .expect("put");
        assert_eq!(list_checkpoints(&a).expect("list"), vec![1, 2]);
        assert_eq!(list_checkpoints(&b).expect("list"), vec![7]);
        assert_eq!(
            root.list("alerts/p1/").expect("list"),
            vec![format!("alerts/p1/{}", manifest_key(7))]
        );
        let keep = Retention {
            retain: 1,
            grace: std::time::Duration::ZERO,
            epoch: 0,
        };
        prune(&a, keep).expect("prune");
        assert_eq!(list_checkpoints(&a).expect("list"), vec![2]);
        assert_eq!(list_checkpoints(&b).expect("list"), vec![7], "untouched");
    }

    #[test]
    fn uploads_are_incremental_and_restores_verify_checksums() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path().join("store")).expect("store");
        let local = dir.path().join("chk");
        fs::create_dir_all(&local).expect("mkdir");
        fs::write(local.join("000007.sst"), vec![7u8; 4096]).expect("write");
        fs::write(local.join("CURRENT"), b"MANIFEST-000001\n").expect("write");
        let mut known = HashMap::new();
        let mut first = UploadStats::default();
        let files = upload_partition(&store, 1, 0, &local, &mut known, &mut first).expect("upload");
        assert_eq!(first.uploaded_bytes, 4096 + 16);
        let mut second = UploadStats::default();
        let again = upload_partition(&store, 2, 0, &local, &mut HashMap::new(), &mut second)
            .expect("upload");
        assert_eq!(
            second.reused_bytes, 4096,
            "the SST is referenced, not copied"
        );
        assert_eq!(second.uploaded_bytes, 16);
        assert_eq!(files[0].key, again[0].key);

        let part = PartitionSnapshot {
            partition: 0,
            position: 0,
            watermark: 0,
            files: again,
        };
        let dest = dir.path().join("restored");
        assert_eq!(
            restore_partition(&store, &part, &dest).expect("restore"),
            4096 + 16
        );
        assert_eq!(
            fs::read(dest.join("000007.sst")).expect("read"),
            vec![7u8; 4096]
        );

        // Corrupt the stored SST: restore must notice.
        let stored = dir.path().join("store").join(&part.files[0].key);
        fs::write(&stored, vec![8u8; 4096]).expect("corrupt");
        let err = restore_partition(&store, &part, &dest).unwrap_err();
        assert!(err.to_string().contains("crc32"), "{err}");
    }

    #[test]
    fn hostile_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path().join("store")).expect("store");
        let canary = dir.path().join("canary");
        fs::write(&canary, b"untouched").expect("canary");
        for key in [
            "../canary",
            "/etc/passwd",
            "a//b",
            "./x",
            "shared/../../canary",
        ] {
            assert!(store.put_bytes(key, b"x").is_err(), "{key}");
            assert!(store.get_bytes(key).is_err(), "{key}");
            assert!(store.list(&format!("{key}/")).is_err(), "{key}");
        }
        store.put_bytes("shared/p0/x.sst", b"evil").expect("put");
        let evil = |name: &str, key: &str| PartitionSnapshot {
            partition: 0,
            position: 0,
            watermark: 0,
            files: vec![FileEntry {
                name: name.into(),
                key: key.into(),
                size: 4,
                crc32: crc32fast::hash(b"evil"),
            }],
        };
        let dest = dir.path().join("state").join("p0");
        for part in [
            evil("../../canary", "shared/p0/x.sst"),
            evil("/tmp/canary", "shared/p0/x.sst"),
            evil("x.sst", "shared/p0/../../../canary"),
        ] {
            let err = restore_partition(&store, &part, &dest).unwrap_err();
            assert!(err.to_string().contains("refusing"), "{err}");
            let mut m = manifest(1, &[]);
            m.partitions = vec![part];
            assert!(Manifest::decode(&m.encode()).is_err(), "a damaged manifest");
        }
        assert_eq!(fs::read(&canary).expect("canary"), b"untouched");
        // Keys of another partition or another checkpoint are refused too.
        let mut m = manifest(1, &["shared/p1/x.sst"]);
        assert!(m.check().is_err());
        m = manifest(1, &["checkpoints/00000000000000000002/p0/CURRENT"]);
        assert!(m.check().is_err());
        m = manifest(2, &["checkpoints/00000000000000000002/p0/CURRENT"]);
        m.check().expect("its own folder");
    }
}
