//! Starting a partition's actor over its (restored) RocksDB instance, and
//! watching for shutdown: the same for file and Kafka jobs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ractor::{Actor, ActorRef};
use weir_actors::runtime::{Outlet, PartitionActor, PartitionArgs, PartitionCore, PartitionMsg};
use weir_actors::{Clock, Processor};
use weir_state::StateEnv;

use super::Settings;
use crate::telemetry::{Metrics, PartitionMetrics};
use crate::{Error, Result};

/// A flag set once `shutdown` completes (logging what happens next), and
/// the task watching for it (abort it when the job ends first).
pub(crate) fn watch_shutdown(
    shutdown: impl Future<Output = ()> + Send + 'static,
    next: &'static str,
    metrics: &Metrics,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let metrics = metrics.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: {next}");
        metrics.set_shutting_down();
        flag.store(true, Ordering::SeqCst);
    });
    (stop, watcher)
}

/// Opens partition `p`'s RocksDB instance (restored beforehand) and starts
/// its actor.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn spawn_partition<P: Processor>(
    processor: &Arc<P>,
    env: &StateEnv,
    settings: &Settings,
    p: u32,
    clock: &Arc<dyn Clock>,
    outlet: Arc<dyn Outlet<P::Key, P::Out>>,
    checkpoint_dir: &std::path::Path,
    progress: &PartitionMetrics,
) -> Result<(
    ActorRef<PartitionMsg<P::Key, P::In>>,
    tokio::task::JoinHandle<()>,
)> {
    // A state time to live: expired values are dropped by compaction,
    // against the "now" the partition's core publishes.
    let ttl = P::STATE_TTL.map(|ttl| weir_state::TtlFilter {
        after_ms: ttl.after_ms,
        now: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
    });
    let mut config = settings.core_config(p);
    config.ttl_clock = ttl.as_ref().map(|t| Arc::clone(&t.now));
    let store = env.open_partition_with_ttl(p, ttl)?;
    let keys = store
        .db()
        .property_int_value("rocksdb.estimate-num-keys")
        .ok()
        .flatten()
        .unwrap_or(0);
    progress.restore_finished(keys);
    let core = PartitionCore::new(Arc::clone(processor), store, config, Arc::clone(clock))
        .map_err(|source| Error::Partition {
            partition: p,
            source,
        })?;
    let args = PartitionArgs {
        core,
        outlet,
        tick: settings.tick,
        checkpoint_dir: checkpoint_dir.to_path_buf(),
        stats: Arc::clone(&progress.stats),
    };
    Actor::spawn(None, PartitionActor::<P>::default(), args)
        .await
        .map_err(|e| Error::Actor(format!("partition {p} did not start: {e}")))
}
