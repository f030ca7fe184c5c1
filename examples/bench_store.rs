//! Snapshot store benchmark: throughput and peak memory (RSS) of uploading
//! and restoring one partition's checkpoint files through an S3-compatible
//! object store, using only `weir_state`'s public API.
//!
//! ```text
//! python3 -m moto.server -H 127.0.0.1 -p 5123 &
//! export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
//!        AWS_ENDPOINT_URL=http://127.0.0.1:5123 AWS_ALLOW_HTTP=true
//! cargo run --release --example bench_store -- --url s3://bench/run --create-bucket
//! cargo run --release --example bench_store -- --url s3://bench/run2 --whole-files
//! ```
//! The store is configured as [`ObjectStorage::s3`] documents (`AWS_*`
//! variables). `--create-bucket` creates the bucket first with a plain
//! unsigned `PUT /<bucket>` to `AWS_ENDPOINT_URL`, which moto accepts.
//!
//! It writes `--files` SSTs (`000010.sst`, …) of pseudo-random bytes,
//! `--mib` MiB in all, plus a `CURRENT` file, uploads them with
//! `upload_partition`, saves the resulting file list, restores with
//! `restore_partition`, and deletes what it wrote (unless `--keep`; a
//! `--phase upload` run leaves it for `--phase restore`). One line per
//! phase; against moto on a busy 2-core machine, 1 GiB in 16 files:
//!
//! ```text
//! upload bytes=1073741840 secs=11.69 mib_per_sec=87.6 peak_rss_mib=31.4
//! restore bytes=1073741840 secs=2.18 mib_per_sec=469.1 peak_rss_mib=16.6
//! ```
//! `peak_rss_mib` is the process's high-water mark (`VmHWM`) during the
//! phase alone: it is reset before each phase through
//! `/proc/self/clear_refs`. Where that is not allowed the line says
//! `peak_rss=cumulative`; run `--phase upload` and `--phase restore` as two
//! processes then. `--whole-files` measures the earlier behaviour (each file
//! read whole into memory, each object downloaded whole) by sending files
//! through `put_bytes`/`get_bytes`.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use weir_state::snapshot::{self, PartitionSnapshot, UploadStats};
use weir_state::{ObjectStorage, SnapshotStore};

#[derive(Parser)]
struct Args {
    /// The store: `s3://bucket/prefix`; the prefix must hold no objects.
    #[arg(long)]
    url: String,
    /// Total size of the SST files, MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Number of SST files.
    #[arg(long, default_value_t = 16)]
    files: u64,
    /// What this run does: both phases, or one (a separate process per
    /// phase measures each from a fresh process).
    #[arg(long, value_enum, default_value_t = Phase::All)]
    phase: Phase,
    /// Where the files are written and restored (default: a temporary
    /// folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Create the bucket first (on moto or another server accepting an
    /// unsigned `PUT /<bucket>`).
    #[arg(long)]
    create_bucket: bool,
    /// Leave the objects in the store after the restore.
    #[arg(long)]
    keep: bool,
    /// Send files through `put_bytes`/`get_bytes` (whole files in memory),
    /// as the store did before it streamed.
    #[arg(long)]
    whole_files: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    All,
    Upload,
    Restore,
}

const MIB: u64 = 1024 * 1024;
const CHECKPOINT: u64 = 1;
const PARTITION: u32 = 0;
/// Where the upload phase leaves the uploaded files' list for the restore.
const SNAPSHOT_KEY: &str = "bench/partition.json";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.files == 0 || args.mib == 0 {
        bail!("--files and --mib must be at least 1");
    }
    if args.create_bucket {
        create_bucket(&args.url)?;
    }
    let s3 = ObjectStorage::s3(&args.url).with_context(|| format!("opening {}", args.url))?;
    let store: Box<dyn SnapshotStore> = if args.whole_files {
        Box::new(WholeFiles(s3))
    } else {
        Box::new(s3)
    };
    let tmp;
    let work = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("temporary folder")?;
            tmp.path().to_path_buf()
        }
    };
    let resets = reset_peak();

    if args.phase != Phase::Restore {
        let existing = store.list("")?.len();
        if existing > 0 {
            bail!(
                "{} already holds {existing} objects: use an empty prefix",
                args.url
            );
        }
        let chk = work.join("checkpoint");
        let total = write_files(&chk, args.mib * MIB, args.files)?;
        reset_peak();
        let start = Instant::now();
        let mut stats = UploadStats::default();
        let files = snapshot::upload_partition(
            store.as_ref(),
            CHECKPOINT,
            PARTITION,
            &chk,
            &mut HashMap::new(),
            &mut stats,
        )?;
        report("upload", stats.uploaded_bytes, start, resets)?;
        if stats.uploaded_bytes != total {
            bail!("uploaded {} bytes of {total}", stats.uploaded_bytes);
        }
        let part = PartitionSnapshot {
            partition: PARTITION,
            position: 0,
            watermark: 0,
            files,
        };
        // What a manifest would hold for this partition, for `--phase restore`.
        store.put_bytes(SNAPSHOT_KEY, &serde_json::to_vec(&part)?)?;
        fs::remove_dir_all(&chk).with_context(|| format!("removing {}", chk.display()))?;
    }

    if args.phase != Phase::Upload {
        let saved = store.get_bytes(SNAPSHOT_KEY)?.with_context(|| {
            format!("nothing uploaded to {}: run --phase upload first", args.url)
        })?;
        let part: PartitionSnapshot =
            serde_json::from_slice(&saved).context("reading the uploaded partition's files")?;
        let dest = work.join("restored");
        reset_peak();
        let start = Instant::now();
        let bytes = snapshot::restore_partition(store.as_ref(), &part, &dest)?;
        report("restore", bytes, start, resets)?;
        fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
        if !args.keep {
            for key in store.list("")? {
                store.delete(&key)?;
            }
        }
    }
    Ok(())
}

/// Writes `count` SSTs of `total` bytes in all and a `CURRENT` file into
/// `dir`, 1 MiB at a time. Returns the bytes written.
fn write_files(dir: &Path, total: u64, count: u64) -> anyhow::Result<u64> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; MIB as usize];
    let mut written = 0;
    for i in 0..count {
        let size = total / count + u64::from(i < total % count);
        let path = dir.join(format!("{:06}.sst", 10 + i));
        let mut f = fs::File::create(&path).with_context(|| format!("{}", path.display()))?;
        let mut left = size;
        while left > 0 {
            weir_state::testing::fill_noise(&mut buf, &mut x);
            let n = left.min(MIB) as usize;
            f.write_all(&buf[..n])
                .with_context(|| format!("{}", path.display()))?;
            left -= n as u64;
        }
        written += size;
    }
    let current = b"MANIFEST-000005\n";
    fs::write(dir.join("CURRENT"), current).context("writing CURRENT")?;
    Ok(written + current.len() as u64)
}

/// One result line.
fn report(phase: &str, bytes: u64, start: Instant, resets: bool) -> anyhow::Result<()> {
    let secs = start.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM")? as f64 / 1024.0;
    let scope = if resets { "" } else { " peak_rss=cumulative" };
    println!(
        "{phase} bytes={bytes} secs={secs:.2} mib_per_sec={:.1} peak_rss_mib={peak:.1}{scope}",
        bytes as f64 / MIB as f64 / secs
    );
    Ok(())
}

/// Resets the process's peak RSS to its current RSS; `false` where the
/// kernel does not allow it.
fn reset_peak() -> bool {
    fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

/// Creates the bucket of `url` with an unsigned `PUT /<bucket>` to
/// `AWS_ENDPOINT_URL` (plain HTTP). An existing bucket is fine.
fn create_bucket(url: &str) -> anyhow::Result<()> {
    let bucket = url
        .strip_prefix("s3://")
        .and_then(|r| r.split('/').next())
        .filter(|b| !b.is_empty())
        .with_context(|| format!("{url}: expected s3://bucket/prefix"))?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .context("--create-bucket needs AWS_ENDPOINT_URL (http://host:port)")?;
    let host = endpoint
        .strip_prefix("http://")
        .map(|h| h.trim_end_matches('/'))
        .with_context(|| format!("AWS_ENDPOINT_URL={endpoint}: --create-bucket needs http://"))?;
    let mut s = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let status = reply.lines().next().unwrap_or_default();
    if !(status.contains(" 200") || status.contains(" 409")) {
        bail!("creating bucket {bucket} at {endpoint}: {status}");
    }
    Ok(())
}

/// A store that moves whole files through memory, as `ObjectStorage` did
/// before it streamed: the baseline for `--whole-files`.
struct WholeFiles(ObjectStorage);

impl SnapshotStore for WholeFiles {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn put_file(&self, key: &str, local: &Path) -> weir_state::Result<()> {
        let data = fs::read(local).map_err(|source| weir_state::Error::Io {
            path: local.display().to_string(),
            source,
        })?;
        self.0.put_bytes(key, &data)
    }
    fn put_bytes(&self, key: &str, data: &[u8]) -> weir_state::Result<()> {
        self.0.put_bytes(key, data)
    }
    fn get_bytes(&self, key: &str) -> weir_state::Result<Option<Vec<u8>>> {
        self.0.get_bytes(key)
    }
    fn get_file(&self, key: &str, local: &Path) -> weir_state::Result<()> {
        let data = self.0.get_bytes(key)?.ok_or_else(|| {
            weir_state::Error::Manifest(format!("{key} is missing from {}", self.describe()))
        })?;
        fs::write(local, data).map_err(|source| weir_state::Error::Io {
            path: local.display().to_string(),
            source,
        })
    }
    fn size(&self, key: &str) -> weir_state::Result<Option<u64>> {
        self.0.size(key)
    }
    fn list(&self, prefix: &str) -> weir_state::Result<Vec<String>> {
        self.0.list(prefix)
    }
    fn delete(&self, key: &str) -> weir_state::Result<()> {
        self.0.delete(key)
    }
}
