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

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::OwnedSemaphorePermit;
use weir_state::RocksStore;

use crate::core::{Counters, DeadLetter, InputBatch, PartitionCore};
use crate::processor::Processor;

/// Where a partition delivers what it produced.
pub trait Outlet<T>: Send + Sync + 'static {
    /// Outputs of `partition`, in the order they were emitted.
    fn outputs(&self, partition: u32, items: Vec<T>);
    /// Dead letters (they carry their partition).
    fn dead_letters(&self, items: Vec<DeadLetter>);
    /// The partition failed and stops; the job must stop too.
    fn failed(&self, partition: u32, error: &crate::Error);
}

/// Messages a partition actor handles.
pub enum PartitionMsg<K, V> {
    /// Records to process, in order. The permit is released once they are.
    Batch(InputBatch<K, V>, Option<OwnedSemaphorePermit>),
    /// Processing time passed.
    Tick,
    /// The input ended: fire every event-time timer, write all state back,
    /// and reply with the partition's counters.
    Finish(RpcReplyPort<Counters>),
}

/// What a partition actor starts with.
pub struct PartitionArgs<P: Processor> {
    /// The core, over the partition's store.
    pub core: PartitionCore<P, RocksStore>,
    /// Where outputs and dead letters go.
    pub outlet: std::sync::Arc<dyn Outlet<P::Out>>,
    /// How often processing time is checked.
    pub tick: Duration,
}

/// The actor owning one partition.
pub struct PartitionActor<P>(PhantomData<fn() -> P>);

impl<P> Default for PartitionActor<P> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<P: Processor> PartitionActor<P> {
    fn deliver(state: &mut PartitionArgs<P>) {
        let partition = state.core.partition();
        if state.core.has_outputs() {
            state.outlet.outputs(partition, state.core.take_outputs());
        }
        if state.core.has_dead_letters() {
            state.outlet.dead_letters(state.core.take_dead_letters());
        }
    }
}

impl<P: Processor> Actor for PartitionActor<P> {
    type Msg = PartitionMsg<P::Key, P::In>;
    type State = PartitionArgs<P>;
    type Arguments = PartitionArgs<P>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.tick, || PartitionMsg::Tick);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let result = match message {
            PartitionMsg::Batch(batch, permit) => {
                let r = state.core.process_batch(&batch).await;
                drop(permit);
                r
            }
            PartitionMsg::Tick => state.core.tick().await,
            PartitionMsg::Finish(reply) => {
                let r = state.core.finish().await;
                if r.is_ok() {
                    Self::deliver(state);
                    // The caller may have stopped waiting; nothing to do then.
                    let _ = reply.send(state.core.counters());
                }
                r
            }
        };
        Self::deliver(state);
        if let Err(e) = &result {
            state.outlet.failed(state.core.partition(), e);
        }
        Ok(result?)
    }
}
