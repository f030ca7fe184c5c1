//! [`PartitionActor`]: a ractor actor that owns one partition.
//!
//! It drives a [`PartitionCore`] over the partition's RocksDB instance:
//! batches of records arrive as messages, in input order; a periodic tick
//! drives processing-time timers, idle watermarks and idle passivation; the
//! outputs and dead letters of each message go to the job's [`Outlet`].
//! Its mailbox is fed under a credit scheme (the permit carried by each
//! batch) so a fast source cannot fill memory.

use std::marker::PhantomData;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use weir_state::{RocksStore, Store};

use crate::core::{
    Counters, DeadLetter, InputBatch, PartitionCheckpoint, PartitionCore, panic_message,
};
use crate::processor::Processor;
use crate::stats::PartitionStats;

/// Where a partition delivers what it produced.
pub trait Outlet<K, T>: Send + Sync + 'static {
    /// Outputs of `partition` with the keys they were emitted for, in the
    /// order they were emitted.
    fn outputs(&self, partition: u32, items: Vec<(K, T)>);
    /// Dead letters of `partition`.
    fn dead_letters(&self, partition: u32, items: Vec<DeadLetter>);
    /// `partition` passed barrier `id`: everything it delivered before
    /// belongs to checkpoint `id`, everything after to later ones.
    fn barrier(&self, partition: u32, id: u64);
    /// `partition`'s local part of a checkpoint is ready.
    fn checkpointed(&self, checkpoint: PartitionCheckpoint);
    /// The partition failed and stops; the job must stop too.
    fn failed(&self, partition: u32, error: &crate::Error);
}

/// Held while a batch is in flight and dropped once it is processed: a
/// batch credit (semaphore permit), a progress marker, or both.
pub type BatchGuard = Box<dyn Send>;

/// Messages a partition actor handles.
pub enum PartitionMsg<K, V> {
    /// Records to process, in order. The guard is dropped once they are.
    Batch(InputBatch<K, V>, Option<BatchGuard>),
    /// Processing time passed.
    Tick,
    /// Checkpoint barrier `id`: every record before it was sent before it;
    /// `position` is the input position right after those records.
    Barrier { id: u64, position: u64 },
    /// The input ended: fire every event-time timer, write all state back,
    /// and reply with the partition's counters.
    Finish(RpcReplyPort<Counters>),
    /// Reply with the key's state as the processor would see it now,
    /// encoded (a read: nothing changes).
    Query(K, RpcReplyPort<Result<Vec<u8>, String>>),
}

/// What a partition actor starts with.
pub struct PartitionArgs<P: Processor> {
    /// The core, over the partition's store.
    pub core: PartitionCore<P, RocksStore>,
    /// Where outputs and dead letters go.
    pub outlet: std::sync::Arc<dyn Outlet<P::Key, P::Out>>,
    /// How often processing time is checked.
    pub tick: Duration,
    /// Where local checkpoints (RocksDB checkpoint directories) are made.
    pub checkpoint_dir: std::path::PathBuf,
    /// Where the partition's figures are published after every message.
    pub stats: std::sync::Arc<PartitionStats>,
}

/// The actor owning one partition.
pub struct PartitionActor<P>(PhantomData<fn() -> P>);

impl<P> Default for PartitionActor<P> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// A partition actor's state: its arguments and whether it finished.
pub struct PartitionState<P: Processor> {
    args: PartitionArgs<P>,
    finished: bool,
    /// The counters last published into `args.stats`.
    published: Counters,
}

impl<P: Processor> PartitionActor<P> {
    /// Handles one message.
    async fn apply(
        message: PartitionMsg<P::Key, P::In>,
        state: &mut PartitionState<P>,
    ) -> Result<(), crate::Error> {
        let args = &mut state.args;
        match message {
            PartitionMsg::Batch(batch, guard) => {
                let r = args.core.process_batch(&batch).await;
                drop(guard);
                r
            }
            // After Finish, state is written and flushed: nothing may fire.
            PartitionMsg::Tick if state.finished => Ok(()),
            PartitionMsg::Tick => args.core.tick().await,
            PartitionMsg::Barrier { id, position } => {
                let partition = args.core.partition();
                let dir = args.checkpoint_dir.join(format!("p{partition}-{id}"));
                args.core.checkpoint(id, position, &dir).map(|checkpoint| {
                    Self::deliver(args);
                    args.outlet.barrier(partition, id);
                    args.outlet.checkpointed(checkpoint);
                })
            }
            PartitionMsg::Query(key, reply) => {
                // A failed read fails the query, not the partition.
                let _ = reply.send(args.core.encoded_state(&key).map_err(|e| e.to_string()));
                Ok(())
            }
            PartitionMsg::Finish(reply) => {
                let r = args.core.finish().await;
                if r.is_ok() {
                    state.finished = true;
                    Self::deliver(args);
                    // The caller may have stopped waiting; nothing to do then.
                    let _ = reply.send(args.core.counters());
                }
                r
            }
        }
    }

    fn deliver(args: &mut PartitionArgs<P>) {
        let partition = args.core.partition();
        if args.core.has_outputs() {
            args.outlet.outputs(partition, args.core.take_outputs());
        }
        if args.core.has_dead_letters() {
            args.outlet
                .dead_letters(partition, args.core.take_dead_letters());
        }
    }
}

impl<P: Processor> Actor for PartitionActor<P> {
    type Msg = PartitionMsg<P::Key, P::In>;
    type State = PartitionState<P>;
    type Arguments = PartitionArgs<P>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.tick, || PartitionMsg::Tick);
        Ok(PartitionState {
            args,
            finished: false,
            published: Counters::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let partition = state.args.core.partition();
        // A panic here is the runtime's own (user code's are caught around
        // each call, with the key and position): the partition reports it
        // and stops, like any error.
        let result = match AssertUnwindSafe(Self::apply(message, state))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => Err(crate::Error::Internal {
                partition,
                message: panic_message(&*panic),
            }),
        };
        let args = &mut state.args;
        // A failure is reported first: delivering from a core that panicked
        // half-way might fail again.
        if let Err(e) = &result {
            args.outlet.failed(partition, e);
        }
        if !matches!(result, Err(crate::Error::Internal { .. })) {
            Self::deliver(args);
        }
        let core = &args.core;
        args.stats.publish(
            &mut state.published,
            &core.counters(),
            core.live_keys(),
            core.pending_timers(),
        );
        Ok(result?)
    }
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped without finishing (the job failed or was cancelled): keep
        // what the live keys hold.
        if !state.finished {
            state.args.core.passivate_all()?;
            state.args.core.store_mut().flush()?;
        }
        let core = &state.args.core;
        let stats = &state.args.stats;
        stats.publish(&mut state.published, &core.counters(), 0, 0);
        stats.clear_levels();
        Ok(())
    }
}
