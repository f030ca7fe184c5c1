//! What goes into the group state machine and what comes out: the queue it
//! keeps per partition, its limits, its actions and the outcomes of
//! checkpoint uploads.

use std::time::Duration;

/// The records read for one partition and not yet handed to its actor.
pub(crate) trait Queue: Default {
    /// One decoded record (it may borrow the consumer's buffer).
    type Item<'a>
    where
        Self: 'a;
    /// Records handed to the actor together.
    type Batch;
    /// Appends the record at `offset`.
    fn push(&mut self, offset: i64, item: Self::Item<'_>);
    fn len(&self) -> usize;
    /// The offset of the first queued record.
    fn first(&self) -> Option<i64>;
    /// Takes the first `n` records (`0 < n <= len`) out as one batch.
    fn take(&mut self, n: usize) -> Self::Batch;
    fn clear(&mut self);
}

/// How much a partition may queue and hand over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most records in one batch.
    pub max_batch: usize,
    /// Records queued before the partition is paused at the broker.
    pub max_buffered: usize,
    /// Batches a partition's actor may hold at once.
    pub credits: usize,
    /// How long a partition released after fencing waits before it is
    /// taken back, if the group still assigns it.
    pub reacquire_after: Duration,
}

/// What the worker must do.
#[derive(Debug)]
pub(crate) enum Action<B> {
    /// Hand `batch` to the partition's actor; it ends before offset `end`.
    Deliver {
        partition: i32,
        generation: u64,
        batch: B,
        end: i64,
    },
    /// Send barrier `id` to the actor; it stands for every record before
    /// `position`.
    Barrier {
        partition: i32,
        generation: u64,
        id: u64,
        position: i64,
    },
    /// Nothing was read or restored yet: there is nothing to checkpoint.
    NothingToCheckpoint {
        partition: i32,
    },
    /// Offsets `from..to` were never read: log, count, and maybe fail.
    Skipped {
        partition: i32,
        from: i64,
        to: i64,
    },
    /// Everything read before `offset` is processed.
    CaughtUp {
        partition: i32,
        offset: i64,
    },
    /// Stop fetching these partitions (too much queued), or fetch again.
    Pause(Vec<i32>),
    Resume(Vec<i32>),
    /// The assignment ended: stop its actor, forget the partition.
    Stop {
        partition: i32,
        generation: u64,
        lost: bool,
    },
    /// Released after fencing long enough ago: take these back if the
    /// group still assigns them (a new owner epoch, a restore, a seek).
    Reacquire(Vec<i32>),
}

/// How a checkpoint upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The manifest is written.
    Complete,
    /// Not written; a later checkpoint may be.
    Failed(String),
    /// Refused: another owner took over the partition's checkpoints.
    Fenced(String),
    /// Outputs may have been lost: the worker must stop and replay.
    Fatal(String),
}

/// A partition checkpoint's outcome, from the upload thread.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub partition: i32,
    /// The assignment the checkpoint belongs to.
    pub generation: u64,
    pub id: u64,
    pub position: i64,
    pub outcome: Outcome,
}

/// What the worker may read of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub generation: u64,
    pub next_offset: Option<i64>,
    pub queued: usize,
    pub paused: bool,
}
