//! Re-sharding: a job's checkpoint at N partitions becomes one at M.
//!
//! Every key's state and timers move to the partition its key hashes to
//! under M, with the hash the job routes by: in file mode murmur2 of the
//! key's encoding (what the feed routes by), in Kafka mode murmur2 of the
//! record key (what Kafka's default partitioner uses, so a key's state
//! lands where the grown topic now sends its records). The job's code is
//! not needed: the key's shape, recorded beside the state at each
//! checkpoint ([`weir_state::KeyShape`]), splits a timer's key from its
//! name and gives the record key.
//!
//! Positions: in file mode every partition keeps the one input position;
//! in Kafka mode the old partitions keep their offsets and the new ones
//! start from their beginning. Each new partition's watermark (and largest
//! event time seen) is the smallest of the partitions its keys come from,
//! and of itself where it existed: no record is judged late that was not
//! late before, and no timer fires earlier than it would have.
//!
//! The result is an ordinary checkpoint, written under a new owner epoch
//! of each area it touches (which also fences a job still running on the
//! old checkpoint): the next run restores and verifies it as any other.
//! Nothing is deleted; retention prunes the old checkpoints later. Running
//! it twice, or again after an interruption, converges: the same keys move
//! to the same places with the same values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_actors::runtime::PartitionCheckpoint;
use weir_state::layout::{META_KEY_SHAPE, META_MAX_SEEN, META_POSITION, META_WATERMARK};
use weir_state::snapshot::restore_partition;
use weir_state::{
    KeyShape, Manifest, MemoryBudget, RocksStore, SnapshotStore, Space, StateEnv, Store,
    get_meta_i64, owner,
};

use super::{CheckpointSettings, Owner, Ready, job_area, newest_usable, skipped_reasons, upload};
use crate::kafka::{partition_area, partition_store};
use crate::partitioner::partition_of;
use crate::telemetry::Metrics;
use crate::{Error, Result};

/// The most partitions a checkpoint is re-sharded to.
pub const MAX_PARTITIONS: u32 = 4096;

/// What to re-shard.
#[derive(Debug, Clone)]
pub struct Reshard {
    /// The job: its folder under `jobs/` in the store. `None`: the store's
    /// only job.
    pub job: Option<String>,
    /// In Kafka mode, the input topic (`None`: the job's only one).
    pub topic: Option<String>,
    /// The partition count to end with.
    pub to: u32,
    /// A local folder for the state while it moves (emptied first, removed
    /// afterwards).
    pub work_dir: PathBuf,
}

/// How a job checkpoints, as found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One area for the whole job, one input position.
    File,
    /// One area per partition of `topic`.
    Kafka { topic: String },
}

/// What a re-shard did.
#[derive(Debug, Clone)]
pub struct Resharded {
    pub job: String,
    pub layout: Layout,
    pub from: u32,
    pub to: u32,
    /// Keys with state.
    pub keys: u64,
    /// Of those, keys now in another partition.
    pub moved: u64,
    pub timers: u64,
    /// The checkpoints written: area (within the store) and id.
    pub written: Vec<(String, u64)>,
    /// Bytes of the checkpoints read.
    pub read_bytes: u64,
    pub elapsed: Duration,
}

/// One old partition, restored.
struct Old {
    store: RocksStore,
    position: u64,
    watermark: Option<i64>,
    max_seen: Option<i64>,
    /// Sink lengths of its checkpoint (file mode: the job's).
    sinks: BTreeMap<String, u64>,
}

/// Re-shards the newest usable checkpoint of `plan.job` in `root` to
/// `plan.to` partitions and writes the result as the job's newest
/// checkpoint. The job must not be running (a running one is fenced: its
/// later checkpoints are never restored).
pub fn reshard(root: &Arc<dyn SnapshotStore>, plan: &Reshard) -> Result<Resharded> {
    let started = Instant::now();
    if plan.to == 0 || plan.to > MAX_PARTITIONS {
        return Err(Error::Config(format!(
            "cannot re-shard to {} partitions: 1 to {MAX_PARTITIONS}",
            plan.to
        )));
    }
    let job = match &plan.job {
        Some(job) => job.clone(),
        None => only_job(root.as_ref())?,
    };
    owner::validate_job_id(&job)?;
    let (layout, kafka_parts) = find_layout(root.as_ref(), &job, plan.topic.as_deref())?;
    let _ = std::fs::remove_dir_all(&plan.work_dir);
    let budget = MemoryBudget { bytes: 256 << 20 };
    let old_env = StateEnv::new(plan.work_dir.join("old"), budget)?;
    let new_env = StateEnv::new(plan.work_dir.join("new"), budget)?;
    let settings = CheckpointSettings::new(Arc::clone(root));
    let outcome = match &layout {
        Layout::File => {
            let area = job_area(root, &job);
            let owner = Owner::take(&area, &job, &settings)?;
            let (mut olds, read_bytes) = restore_file_job(&area, &job, &old_env)?;
            let mut moved = Moved::new(plan.to);
            move_all(&mut olds, &new_env, plan.to, &layout, &mut moved)?;
            let from = olds.len() as u32;
            // One input: every partition resumes at the same position, and
            // a key's records may reach any partition.
            let every: BTreeSet<u32> = (0..from).collect();
            let position = olds.iter().map(|o| o.position).min().unwrap_or(0);
            let mut parts = Vec::new();
            for (p, store) in moved.stores.iter_mut().enumerate() {
                let watermark = finish_partition(store, &olds, &every, position)?;
                parts.push(snapshot(
                    store,
                    p as u32,
                    owner.first_id(),
                    position,
                    watermark,
                    &plan.work_dir,
                )?);
            }
            let sinks = olds.first().map(|o| o.sinks.clone()).unwrap_or_default();
            write(&area, &owner, parts, sinks)?;
            Outcome {
                from,
                moved,
                written: vec![(owner::job_prefix(&job), owner.first_id())],
                read_bytes,
            }
        }
        Layout::Kafka { topic } => {
            let from = kafka_parts;
            if plan.to < from {
                return Err(Error::Config(format!(
                    "topic {topic} of job {job} has {from} partitions: a Kafka topic's partitions \
                     can only grow, so its checkpoints cannot be re-sharded to {}",
                    plan.to
                )));
            }
            // Every area is taken before anything is read or written.
            let areas: Vec<_> = (0..plan.to)
                .map(|p| {
                    let area = partition_store(root, &job, topic, p as i32);
                    let owner = Owner::take(&area, &job, &settings)?;
                    Ok((area, owner))
                })
                .collect::<Result<_>>()?;
            let mut olds = Vec::new();
            let mut read_bytes = 0;
            for (p, (area, _)) in areas.iter().enumerate().take(from as usize) {
                let (old, bytes) = restore_kafka_partition(area, &job, p as u32, &old_env)?;
                olds.push(old);
                read_bytes += bytes;
            }
            let mut moved = Moved::new(plan.to);
            move_all(&mut olds, &new_env, plan.to, &layout, &mut moved)?;
            let mut written = Vec::new();
            // New partitions first: an interrupted run leaves the old
            // partitions' checkpoints as they were, and a second run
            // converges.
            let order = (from..plan.to).chain(0..from);
            for p in order {
                let (area, owner) = &areas[p as usize];
                let store = &mut moved.stores[p as usize];
                let mut sources = moved.sources[p as usize].clone();
                // An old partition keeps its offset and goes on with its
                // own records; a new one is read from its beginning.
                let position = match olds.get(p as usize) {
                    Some(old) => {
                        sources.insert(p);
                        old.position
                    }
                    None => 0,
                };
                let watermark = finish_partition(store, &olds, &sources, position)?;
                let part = snapshot(
                    store,
                    p,
                    owner.first_id(),
                    position,
                    watermark,
                    &plan.work_dir,
                )?;
                let sinks = olds
                    .get(p as usize)
                    .map(|o| o.sinks.clone())
                    .unwrap_or_default();
                write(area, owner, vec![part], sinks)?;
                written.push((
                    format!(
                        "{}/{}",
                        owner::job_prefix(&job),
                        partition_area(topic, p as i32)
                    ),
                    owner.first_id(),
                ));
            }
            Outcome {
                from,
                moved,
                written,
                read_bytes,
            }
        }
    };
    let _ = std::fs::remove_dir_all(&plan.work_dir);
    let Outcome {
        from,
        moved,
        written,
        read_bytes,
    } = outcome;
    Ok(Resharded {
        job,
        layout,
        from,
        to: plan.to,
        keys: moved.keys,
        moved: moved.moved,
        timers: moved.timers,
        written,
        read_bytes,
        elapsed: started.elapsed(),
    })
}

struct Outcome {
    from: u32,
    moved: Moved,
    written: Vec<(String, u64)>,
    read_bytes: u64,
}

/// The new partitions as keys move in.
struct Moved {
    stores: Vec<RocksStore>,
    /// For each new partition, the old ones its keys came from.
    sources: Vec<BTreeSet<u32>>,
    keys: u64,
    moved: u64,
    timers: u64,
}

impl Moved {
    fn new(to: u32) -> Self {
        Self {
            stores: Vec::with_capacity(to as usize),
            sources: vec![BTreeSet::new(); to as usize],
            keys: 0,
            moved: 0,
            timers: 0,
        }
    }
}

/// The only job in `root`.
fn only_job(root: &dyn SnapshotStore) -> Result<String> {
    let jobs: BTreeSet<String> = root
        .list("jobs/")?
        .iter()
        .filter_map(|k| {
            k.strip_prefix("jobs/")?
                .split('/')
                .next()
                .map(str::to_string)
        })
        .collect();
    match jobs.len() {
        1 => Ok(jobs.into_iter().next().expect("one job")),
        0 => Err(Error::Config(format!(
            "{} holds no job's checkpoints",
            root.describe()
        ))),
        _ => Err(Error::Config(format!(
            "{} holds the checkpoints of several jobs ({}): name one with --job",
            root.describe(),
            jobs.into_iter().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Whether `job` checkpoints in file mode or per partition of a topic (and
/// then how many partitions have checkpoints).
fn find_layout(root: &dyn SnapshotStore, job: &str, topic: Option<&str>) -> Result<(Layout, u32)> {
    let prefix = format!("{}/", owner::job_prefix(job));
    let keys = root.list(&prefix)?;
    let mut file = false;
    let mut topics: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for key in &keys {
        let rest = &key[prefix.len()..];
        if rest.starts_with("checkpoints/") {
            file = true;
            continue;
        }
        let mut segments = rest.split('/');
        if let (Some(t), Some(p), Some("checkpoints")) =
            (segments.next(), segments.next(), segments.next())
            && let Some(n) = p.strip_prefix('p').and_then(|n| n.parse::<u32>().ok())
        {
            topics.entry(t.to_string()).or_default().insert(n);
        }
    }
    if file {
        return Ok((Layout::File, 0));
    }
    let (topic, parts) = match (topic, topics.len()) {
        (Some(t), _) => match topics.remove(t) {
            Some(parts) => (t.to_string(), parts),
            None => {
                return Err(Error::Config(format!(
                    "job {job} has no checkpoints for topic {t} in {}",
                    root.describe()
                )));
            }
        },
        (None, 1) => topics.pop_first().expect("one topic"),
        (None, 0) => {
            return Err(Error::Config(format!(
                "job {job} has no checkpoints in {}",
                root.describe()
            )));
        }
        (None, _) => {
            return Err(Error::Config(format!(
                "job {job} has checkpoints for several topics ({}): name one with --topic",
                topics.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let from = parts.len() as u32;
    if parts.iter().copied().ne(0..from) {
        return Err(Error::Config(format!(
            "topic {topic} of job {job} has checkpoints for partitions {parts:?}, not 0 to {}",
            from.saturating_sub(1)
        )));
    }
    Ok((Layout::Kafka { topic }, from))
}

/// Restores the newest usable checkpoint of `area` (holding exactly
/// `expected` partitions, when given) into `env`: its id, manifest and
/// size.
fn restore_into(
    area: &dyn SnapshotStore,
    job: &str,
    expected: Option<&[u32]>,
    env: &StateEnv,
) -> Result<(u64, Manifest, u64)> {
    let (choice, _) = newest_usable(area, job, expected, &mut |part| {
        Ok(restore_partition(
            area,
            part,
            &env.partition_dir(part.partition),
        )?)
    })?;
    match choice.chosen {
        Some((id, (manifest, bytes))) => Ok((id, manifest, bytes)),
        None => Err(Error::Failed(format!(
            "no usable checkpoint to re-shard in {}{}",
            area.describe(),
            skipped_reasons(&choice.skipped)
        ))),
    }
}

/// Restores a file-mode job's newest usable checkpoint into `env`.
fn restore_file_job(
    area: &dyn SnapshotStore,
    job: &str,
    env: &StateEnv,
) -> Result<(Vec<Old>, u64)> {
    let (id, manifest, bytes) = restore_into(area, job, None, env)?;
    let found: Vec<u32> = manifest.partitions.iter().map(|p| p.partition).collect();
    if found.iter().copied().ne(0..found.len() as u32) {
        return Err(Error::Config(format!(
            "checkpoint {id} holds partitions {found:?}, not 0 to {}",
            found.len().saturating_sub(1)
        )));
    }
    let olds = found
        .iter()
        .map(|&p| open_old(env, p, &manifest.sinks))
        .collect::<Result<_>>()?;
    tracing::info!(
        checkpoint = id,
        partitions = found.len(),
        bytes,
        "restored the checkpoint to re-shard"
    );
    Ok((olds, bytes))
}

/// Restores partition `p`'s newest usable checkpoint (Kafka mode) into `env`.
fn restore_kafka_partition(
    area: &dyn SnapshotStore,
    job: &str,
    p: u32,
    env: &StateEnv,
) -> Result<(Old, u64)> {
    let (_, manifest, bytes) = restore_into(area, job, Some(&[p]), env)?;
    Ok((open_old(env, p, &manifest.sinks)?, bytes))
}

fn open_old(env: &StateEnv, p: u32, sinks: &BTreeMap<String, u64>) -> Result<Old> {
    let mut store = env.open_partition(p)?;
    let position = get_meta_i64(&mut store, META_POSITION)?.map_or(0, |v| v as u64);
    let watermark = get_meta_i64(&mut store, META_WATERMARK)?;
    let max_seen = get_meta_i64(&mut store, META_MAX_SEEN)?;
    Ok(Old {
        store,
        position,
        watermark,
        max_seen,
        sinks: sinks.clone(),
    })
}

/// The key shape the old partitions recorded, if any did.
fn key_shape(olds: &mut [Old]) -> Result<Option<KeyShape>> {
    let mut found: Option<(String, KeyShape)> = None;
    for old in olds {
        if let Some(b) = old.store.get(Space::Meta, META_KEY_SHAPE)? {
            let text = String::from_utf8_lossy(&b).into_owned();
            let shape = KeyShape::parse(&text)?;
            if let Some((seen, _)) = &found
                && *seen != text
            {
                return Err(Error::Failed(format!(
                    "the partitions record different key shapes ({seen} and {text})"
                )));
            }
            found = Some((text, shape));
        }
    }
    Ok(found.map(|(_, s)| s))
}

/// Moves every key's state and timers from `olds` into `to` new partitions
/// opened in `env`.
fn move_all(
    olds: &mut [Old],
    env: &StateEnv,
    to: u32,
    layout: &Layout,
    moved: &mut Moved,
) -> Result<()> {
    let shape = key_shape(olds)?;
    // Needed only for timers, and for every key in Kafka mode.
    let shape_or_missing = || {
        shape.as_ref().ok_or_else(|| {
            weir_state::Error::KeyDecode(
                "the checkpoint records no key shape (it was written by an earlier weir, or the \
                 key type's KeyCodec gives no shape): run the job once with this version so that \
                 it checkpoints again, then re-shard"
                    .to_string(),
            )
        })
    };
    for p in 0..to {
        env.reset_partition(p)?;
        moved.stores.push(env.open_partition(p)?);
    }
    let kafka = matches!(layout, Layout::Kafka { .. });
    let route = |encoded: &[u8]| -> Result<u32, weir_state::Error> {
        if kafka {
            Ok(partition_of(&shape_or_missing()?.record_key(encoded)?, to))
        } else {
            Ok(partition_of(encoded, to))
        }
    };
    for (from, old) in olds.iter_mut().enumerate() {
        let from = from as u32;
        old.store.for_each(Space::State, &mut |key, value| {
            let p = route(key)?;
            moved.stores[p as usize].put(Space::State, key, value)?;
            moved.sources[p as usize].insert(from);
            moved.keys += 1;
            if p != from {
                moved.moved += 1;
            }
            Ok(())
        })?;
        old.store.for_each(Space::Timers, &mut |key, value| {
            // The domain (1 byte) and the time (8 bytes), then the key and
            // the timer's name.
            let mut rest = key
                .get(9..)
                .ok_or_else(|| weir_state::Error::KeyDecode("a timer key is too short".into()))?;
            let p = route(shape_or_missing()?.split(&mut rest)?)?;
            moved.stores[p as usize].put(Space::Timers, key, value)?;
            moved.sources[p as usize].insert(from);
            moved.timers += 1;
            Ok(())
        })?;
    }
    if let Some(shape) = &shape {
        for store in &mut moved.stores {
            store.put(Space::Meta, META_KEY_SHAPE, shape.to_string().as_bytes())?;
        }
    }
    Ok(())
}

/// Writes a new partition's input position and its watermark: the
/// smallest of the old partitions in `sources` (none when empty). Returns
/// the watermark for the manifest.
fn finish_partition(
    store: &mut RocksStore,
    olds: &[Old],
    sources: &BTreeSet<u32>,
    position: u64,
) -> Result<i64> {
    let from = || sources.iter().map(|&p| &olds[p as usize]);
    store.put(Space::Meta, META_POSITION, &position.to_be_bytes())?;
    let watermark = from().filter_map(|o| o.watermark).min();
    if let Some(wm) = watermark {
        store.put(Space::Meta, META_WATERMARK, &wm.to_be_bytes())?;
        if let Some(max) = from().filter_map(|o| o.max_seen).min() {
            store.put(Space::Meta, META_MAX_SEEN, &max.to_be_bytes())?;
        }
    }
    Ok(watermark.unwrap_or(i64::MIN))
}

fn snapshot(
    store: &mut RocksStore,
    p: u32,
    id: u64,
    position: u64,
    watermark: i64,
    work: &Path,
) -> Result<PartitionCheckpoint> {
    let dir = work.join("snapshots").join(format!("p{p}"));
    store.checkpoint_to(&dir)?;
    Ok(PartitionCheckpoint {
        id,
        partition: p,
        position,
        watermark,
        dir,
        records: 0,
    })
}

/// Uploads `parts` as checkpoint `owner.first_id()` of `area`.
fn write(
    area: &dyn SnapshotStore,
    owner: &Owner,
    parts: Vec<PartitionCheckpoint>,
    sinks: BTreeMap<String, u64>,
) -> Result<()> {
    let ready = Ready {
        id: owner.first_id(),
        parts,
        sinks,
        started: Instant::now(),
    };
    upload(
        area,
        &ready,
        &mut Default::default(),
        owner,
        &Metrics::detached(),
    )?;
    Ok(())
}
