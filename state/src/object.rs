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
//! The [`SnapshotStore`] interface is blocking (it runs on the upload
//! thread); this type drives the async client on a small runtime of its own.

use std::fs;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::snapshot::{SnapshotStore, io_err};
use crate::{Error, Result};

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

fn store_err(what: &str, key: &str, e: object_store::Error) -> Error {
    Error::Manifest(format!("object store: {what} {key}: {e}"))
}

impl ObjectStorage {
    /// Opens `s3://bucket[/prefix]`, configured from `AWS_*` variables.
    pub fn s3(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Manifest(format!("{url}: expected an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Manifest(format!("{url}: no bucket name")));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| store_err("configuring", url, e))?;
        Self::new(Arc::new(store), prefix, url)
    }

    /// Snapshots in `store` under `prefix`.
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

    /// Runs `f` on this store's runtime, from sync or async callers alike.
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
}

impl SnapshotStore for ObjectStorage {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn put_file(&self, key: &str, local: &Path) -> Result<()> {
        let data = fs::read(local).map_err(|e| io_err(local, e))?;
        self.put_bytes(key, &data)
    }

    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key);
        let payload = PutPayload::from(data.to_vec());
        self.block_on(self.store.put(&path, payload))
            .map(|_| ())
            .map_err(|e| store_err("writing", key, e))
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
        .map_err(|e| store_err("reading", key, e))
    }

    fn get_file(&self, key: &str, local: &Path) -> Result<()> {
        let data = self
            .get_bytes(key)?
            .ok_or_else(|| Error::Manifest(format!("{} is missing from {}", key, self.url)))?;
        fs::write(local, data).map_err(|e| io_err(local, e))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key);
        match self.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err("checking", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
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
        let metas: Vec<_> = self
            .block_on(self.store.list(base.as_ref()).try_collect())
            .map_err(|e| store_err("listing", prefix, e))?;
        // Compare in the store's own encoding of the prefix (it escapes
        // some characters and drops empty segments).
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", ObjectPath::from(self.prefix.as_str()).as_ref())
        };
        let mut keys: Vec<String> = metas
            .into_iter()
            .filter_map(|m| {
                m.location
                    .as_ref()
                    .strip_prefix(strip.as_str())
                    .map(str::to_string)
            })
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match self.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err("deleting", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_contract_over_an_in_memory_object_store() {
        let store = ObjectStorage::new(
            Arc::new(object_store::memory::InMemory::new()),
            "jobs/a",
            "memory://",
        )
        .expect("store");
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
        let odd = ObjectStorage::new(
            Arc::new(object_store::memory::InMemory::new()),
            "team~x//a#b",
            "memory://",
        )
        .expect("store");
        odd.put_bytes("checkpoints/7/MANIFEST.json", b"{}")
            .expect("put");
        assert_eq!(
            odd.list("checkpoints/").expect("list"),
            vec!["checkpoints/7/MANIFEST.json"]
        );
        assert!(ObjectStorage::s3("s3://").is_err());
        assert!(ObjectStorage::s3("file:///x").is_err());
    }
}
