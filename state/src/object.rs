//! [`ObjectStorage`]: a [`SnapshotStore`] on object storage (S3 and
//! S3-compatible servers) through the `object_store` crate.
//!
//! `s3://bucket/prefix` names the bucket and a key prefix. Credentials,
//! region and endpoint come from the usual `AWS_*` environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for an S3-compatible server, `AWS_ALLOW_HTTP=true` for
//! a plain-HTTP one). Object puts are atomic, so a manifest is either whole
//! or absent.
//!
//! Files stream both ways, so memory does not grow with file size. A file
//! larger than [`PART_SIZE`] goes up as a multipart upload: it is read from
//! disk in small chunks, at most [`PARTS_IN_FLIGHT`] parts are sent at once,
//! and the object becomes visible only when the upload completes (a failed
//! upload is aborted). Smaller files go up in one put. A download is written
//! to the local file chunk by chunk as it arrives.
//!
//! [`SnapshotStore::put_if_absent`] is a create-if-absent put
//! (`If-None-Match: *`). [`ObjectStorage::s3`] configures it explicitly
//! (`S3ConditionalPut::ETagMatch`, also `object_store` 0.14's default)
//! unless `AWS_CONDITIONAL_PUT` is set, in which case the variable wins;
//! `AWS_CONDITIONAL_PUT=disabled` makes `put_if_absent` an error. The
//! server must honour `If-None-Match` on PUT (AWS S3, MinIO and R2 do): one
//! that ignores the header overwrites the object and reports success, so
//! two writers could both be told they created it.
//!
//! The [`SnapshotStore`] interface is blocking (it runs on the upload
//! thread); this type drives the async client on a small runtime of its own.

use std::fs;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart};

use crate::snapshot::{SnapshotStore, io_err};
use crate::{Error, Result};

/// Size of one part of a multipart upload, and of the largest file sent in
/// a single put. S3 requires parts (all but the last) of at least 5 MiB.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts of one upload sent concurrently. An upload holds about
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes in memory at most.
pub const PARTS_IN_FLIGHT: usize = 2;

/// S3 allows at most 10,000 parts in one upload; a file too large for that
/// at [`PART_SIZE`] is sent in larger parts.
const MAX_PARTS: u64 = 10_000;

/// How much of a local file is read at a time, and the buffer in front of
/// a local file being downloaded into.
const IO_CHUNK: usize = 1024 * 1024;

/// Snapshots in an object store.
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for ObjectStorage {
    fn drop(&mut self) {
        // The store may be dropped inside an async context, where a runtime
        // must not block on its own shutdown.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// An object store error, naming the store, the operation and the key.
fn store_err(url: &str, what: &str, key: &str, e: object_store::Error) -> Error {
    Error::Manifest(format!("object store {url}: {what} {key}: {e}"))
}

/// The part size for a multipart upload of `len` bytes: [`PART_SIZE`], or
/// larger (a whole number of MiB) when that would need over [`MAX_PARTS`].
fn part_size(len: u64) -> usize {
    const MIB: u64 = 1024 * 1024;
    let needed = len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    usize::try_from(needed).map_or(usize::MAX, |n| n.max(PART_SIZE))
}

impl ObjectStorage {
    /// Opens `s3://bucket[/prefix]`, configured from `AWS_*` variables.
    /// Conditional puts use `If-None-Match` unless `AWS_CONDITIONAL_PUT`
    /// says otherwise (see the module docs).
    pub fn s3(url: &str) -> Result<Self> {
        Self::s3_with_options(url, &[])
    }

    /// [`ObjectStorage::s3`], with `options` applied over the `AWS_*`
    /// variables: pairs of a name `object_store` accepts for its S3
    /// configuration (the variable's name in any case, such as
    /// `AWS_ENDPOINT_URL` or `aws_allow_http`) and a value. Lets a caller
    /// (a test, a command-line flag) configure a store without changing the
    /// process environment.
    pub fn s3_with_options(url: &str, options: &[(&str, &str)]) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Manifest(format!("{url}: expected an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Manifest(format!("{url}: no bucket name")));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        // `from_env` reads AWS_CONDITIONAL_PUT; only without it do we choose.
        let mut conditional_put_chosen = std::env::var_os("AWS_CONDITIONAL_PUT").is_some();
        for (name, value) in options {
            let key: AmazonS3ConfigKey = name.to_ascii_lowercase().parse().map_err(|e| {
                Error::Manifest(format!("{url}: option {name}: not an S3 setting: {e}"))
            })?;
            conditional_put_chosen |= key == AmazonS3ConfigKey::ConditionalPut;
            builder = builder.with_config(key, *value);
        }
        if !conditional_put_chosen {
            builder = builder.with_conditional_put(S3ConditionalPut::ETagMatch);
        }
        let store = builder
            .build()
            .map_err(|e| store_err(url, "configuring", "the client", e))?;
        Self::new(Arc::new(store), prefix, url)
    }

    /// Snapshots in `store` under `prefix`; `url` names the store in
    /// messages.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weir-object-store")
            .enable_all()
            .build()
            .map_err(|e| io_err(Path::new(url), e))?;
        Ok(Self {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            url: url.to_string(),
            runtime: Some(runtime),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(&self, what: &str, key: &str, e: object_store::Error) -> Error {
        store_err(&self.url, what, key, e)
    }

    /// Stores `payload` under `key` in one put.
    fn put_payload(&self, key: &str, payload: PutPayload) -> Result<()> {
        let path = self.path(key);
        self.block_on(self.store.put(&path, payload))
            .map(|_| ())
            .map_err(|e| self.err("writing", key, e))
    }

    /// Runs `f` on this store's runtime, from sync or async callers alike.
    /// `f` itself runs on the calling thread (or a helper thread), so it
    /// may do blocking file I/O; only the tasks it spawns (upload parts)
    /// run on the runtime's worker.
    fn block_on<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        let runtime = self.runtime.as_ref().expect("present until dropped");
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking inside a runtime is not allowed: use a helper thread.
            std::thread::scope(|s| {
                s.spawn(|| runtime.block_on(f))
                    .join()
                    .expect("the object store call does not panic")
            })
        } else {
            runtime.block_on(f)
        }
    }

    /// Uploads the `len` bytes of `file` (at `local`) to `key` in parts.
    async fn upload_in_parts(
        &self,
        key: &str,
        local: &Path,
        file: fs::File,
        len: u64,
    ) -> Result<()> {
        let path = self.path(key);
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.err("starting the upload of", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size(len));
        match self.send_parts(key, local, file, &mut writer).await {
            Ok(()) => writer
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| self.err("completing the upload of", key, e)),
            Err(e) => {
                // Parts already sent would otherwise linger (and be billed)
                // until a bucket lifecycle rule removes them.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, store = %self.url, error = %abort, "aborting a failed upload failed");
                }
                Err(e)
            }
        }
    }

    /// Feeds `file` to `writer`, waiting for a free slot before each chunk
    /// so that at most [`PARTS_IN_FLIGHT`] parts are in flight.
    async fn send_parts(
        &self,
        key: &str,
        local: &Path,
        mut file: fs::File,
        writer: &mut WriteMultipart,
    ) -> Result<()> {
        let mut buf = vec![0u8; IO_CHUNK];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(local, e)),
            };
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| self.err("uploading a part of", key, e))?;
            // A chunk is smaller than a part, so it starts at most one part.
            writer.write(&buf[..n]);
        }
    }

    /// Streams the object `key` into the already created `file`.
    async fn download(&self, key: &str, local: &Path, file: fs::File) -> Result<()> {
        let path = self.path(key);
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Manifest(format!(
                    "{key} is missing from {}",
                    self.url
                )));
            }
            Err(e) => return Err(self.err("reading", key, e)),
        };
        let mut out = std::io::BufWriter::with_capacity(IO_CHUNK, file);
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks
            .try_next()
            .await
            .map_err(|e| self.err("reading", key, e))?
        {
            out.write_all(&chunk).map_err(|e| io_err(local, e))?;
        }
        out.flush().map_err(|e| io_err(local, e))
    }

    /// Every object whose key starts with `prefix`, with its key (without
    /// this store's prefix), sorted by key.
    fn list_meta(&self, prefix: &str) -> Result<Vec<(String, ObjectMeta)>> {
        // List the folder holding `prefix`, then filter by the full prefix.
        let folder = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let base = if folder.is_empty() {
            (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
        } else {
            Some(self.path(folder))
        };
        let metas: Vec<ObjectMeta> = self
            .block_on(self.store.list(base.as_ref()).try_collect())
            .map_err(|e| self.err("listing", prefix, e))?;
        // Compare in the store's own encoding of the prefix (it escapes
        // some characters and drops empty segments).
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", ObjectPath::from(self.prefix.as_str()).as_ref())
        };
        let mut found: Vec<(String, ObjectMeta)> = metas
            .into_iter()
            .filter_map(|m| {
                let key = m
                    .location
                    .as_ref()
                    .strip_prefix(strip.as_str())?
                    .to_string();
                key.starts_with(prefix).then_some((key, m))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

impl SnapshotStore for ObjectStorage {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn put_file(&self, key: &str, local: &Path) -> Result<()> {
        let mut file = fs::File::open(local).map_err(|e| io_err(local, e))?;
        let len = file.metadata().map_err(|e| io_err(local, e))?.len();
        if len > PART_SIZE as u64 {
            return self.block_on(self.upload_in_parts(key, local, file, len));
        }
        // At most one part: one put, without a second copy in memory.
        let mut data = Vec::with_capacity(len as usize);
        file.read_to_end(&mut data).map_err(|e| io_err(local, e))?;
        self.put_payload(key, PutPayload::from(data))
    }

    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<()> {
        self.put_payload(key, PutPayload::from(data.to_vec()))
    }

    fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key);
        self.block_on(async {
            match self.store.get(&path).await {
                Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.err("reading", key, e))
    }

    fn get_file(&self, key: &str, local: &Path) -> Result<()> {
        let file = fs::File::create(local).map_err(|e| io_err(local, e))?;
        let result = self.block_on(self.download(key, local, file));
        if result.is_err() {
            // Leave no partial file behind; failing to remove it is harmless.
            let _ = fs::remove_file(local);
        }
        result
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key);
        match self.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("checking", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .list_meta(prefix)?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match self.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", key, e)),
        }
    }

    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        let path = self.path(key);
        let payload = PutPayload::from(data.to_vec());
        match self.block_on(self.store.put_opts(&path, payload, PutMode::Create.into())) {
            Ok(_) => Ok(true),
            // S3 answers 412 for an existing key; object_store reports
            // AlreadyExists, but take Precondition too from any backend.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e @ object_store::Error::NotImplemented { .. }) => Err(Error::Manifest(format!(
                "object store {}: creating {key} only if absent: {e} \
                 (for S3, unset AWS_CONDITIONAL_PUT or set it to `etag`)",
                self.url
            ))),
            Err(e) => Err(self.err("creating", key, e)),
        }
    }

    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, SystemTime)>> {
        Ok(self
            .list_meta(prefix)?
            .into_iter()
            .map(|(key, m)| (key, SystemTime::from(m.last_modified)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn in_memory(prefix: &str) -> ObjectStorage {
        ObjectStorage::new(
            Arc::new(object_store::memory::InMemory::new()),
            prefix,
            "memory://",
        )
        .expect("store")
    }

    #[test]
    fn the_store_contract_over_an_in_memory_object_store() {
        let store = in_memory("jobs/a");
        store
            .put_bytes("checkpoints/1/MANIFEST.json", b"{}")
            .expect("put");
        store.put_bytes("shared/p0/x.sst", b"abc").expect("put");
        assert_eq!(
            store.get_bytes("shared/p0/x.sst").expect("get"),
            Some(b"abc".to_vec())
        );
        assert_eq!(store.get_bytes("nope").expect("get"), None);
        assert_eq!(store.size("shared/p0/x.sst").expect("size"), Some(3));
        assert_eq!(store.size("nope").expect("size"), None);
        assert_eq!(
            store.list("checkpoints/").expect("list"),
            vec!["checkpoints/1/MANIFEST.json"]
        );
        assert_eq!(
            store.list("shared/p0/").expect("list"),
            vec!["shared/p0/x.sst"]
        );
        store.delete("shared/p0/x.sst").expect("delete");
        store
            .delete("shared/p0/x.sst")
            .expect("deleting twice is fine");
        assert!(store.list("shared/").expect("list").is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"file").expect("write");
        store.put_file("k", &f).expect("put file");
        store
            .get_file("k", &dir.path().join("g"))
            .expect("get file");
        assert_eq!(std::fs::read(dir.path().join("g")).expect("read"), b"file");
        // A prefix the store escapes or normalises still lists its keys.
        let odd = in_memory("team~x//a#b");
        odd.put_bytes("checkpoints/7/MANIFEST.json", b"{}")
            .expect("put");
        assert_eq!(
            odd.list("checkpoints/").expect("list"),
            vec!["checkpoints/7/MANIFEST.json"]
        );
        assert!(ObjectStorage::s3("s3://").is_err());
        assert!(ObjectStorage::s3("file:///x").is_err());
        let err = ObjectStorage::s3_with_options("s3://b", &[("AWS_NO_SUCH_THING", "1")])
            .err()
            .expect("an unknown option is refused");
        assert!(err.to_string().contains("AWS_NO_SUCH_THING"), "{err}");
    }

    #[test]
    fn put_if_absent_creates_once() {
        let store = in_memory("jobs/a");
        assert!(store.put_if_absent("owner/1", b"first").expect("create"));
        assert!(!store.put_if_absent("owner/1", b"second").expect("exists"));
        assert_eq!(
            store.get_bytes("owner/1").expect("get"),
            Some(b"first".to_vec()),
            "the losing call wrote nothing"
        );
        assert!(store.put_if_absent("owner/2", b"").expect("create"));
    }

    #[test]
    fn list_modified_lists_like_list_with_times() {
        let store = in_memory("team~x//a#b");
        let before = SystemTime::now();
        for key in [
            "shared/p0/b.sst",
            "shared/p0/a.sst",
            "shared/p1/c.sst",
            "other",
        ] {
            store.put_bytes(key, b"x").expect("put");
        }
        let listed = store.list_modified("shared/p0/").expect("list");
        let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["shared/p0/a.sst", "shared/p0/b.sst"]);
        assert_eq!(keys, store.list("shared/p0/").expect("list"));
        for (key, at) in &listed {
            // Object stores keep times to the second or millisecond.
            let after_start = at.duration_since(before - Duration::from_secs(1)).is_ok();
            let near = SystemTime::now()
                .duration_since(*at)
                .is_ok_and(|d| d < Duration::from_secs(60));
            assert!(after_start && near, "{key} written at {at:?}");
        }
        assert!(store.list_modified("none/").expect("list").is_empty());
    }

    #[test]
    fn large_files_round_trip_in_parts() {
        let store = in_memory("jobs/a");
        let dir = tempfile::tempdir().expect("tempdir");
        // Empty, exactly one part (a single put), just over one part, and
        // ~40 MiB with a short last part.
        for (i, len) in [0, PART_SIZE, PART_SIZE + 1, 40 * 1024 * 1024 + 12_345]
            .into_iter()
            .enumerate()
        {
            let data = crate::testing::noise(len, i as u64 + 7);
            let local = dir.path().join(format!("in-{i}"));
            std::fs::write(&local, &data).expect("write");
            let key = format!("shared/p0/{i}.sst");
            store.put_file(&key, &local).expect("put file");
            assert_eq!(store.size(&key).expect("size"), Some(len as u64));
            let back = dir.path().join(format!("out-{i}"));
            store.get_file(&key, &back).expect("get file");
            assert!(
                std::fs::read(&back).expect("read") == data,
                "{len} bytes came back different"
            );
        }
    }

    #[test]
    fn missing_objects_and_files_are_named_in_errors() {
        let store = in_memory("jobs/a");
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("out");
        let err = store.get_file("shared/p0/gone.sst", &local).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("shared/p0/gone.sst") && msg.contains("memory://"),
            "{msg}"
        );
        assert!(!local.exists(), "no partial file is left");
        let err = store.put_file("k", &dir.path().join("absent")).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn part_sizes_respect_the_part_limit() {
        assert_eq!(part_size(0), PART_SIZE);
        assert_eq!(part_size(40 << 20), PART_SIZE);
        assert_eq!(part_size(MAX_PARTS * PART_SIZE as u64), PART_SIZE);
        let huge = 200u64 << 30;
        let part = part_size(huge) as u64;
        assert!(part > PART_SIZE as u64 && part.is_multiple_of(1 << 20));
        assert!(huge.div_ceil(part) <= MAX_PARTS);
    }
}
