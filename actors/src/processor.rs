//! The user API: [`Processor`] and its errors.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_state::KeyCodec;

use crate::context::Context;
use crate::timers::{TimeDomain, Timer};

/// What a processor's key must be: hashable for the live-actor table,
/// encodable for RocksDB (order-preserving, see `weir_state::codec`).
pub trait Key: KeyCodec + Hash + Eq + Clone + Debug + Send + Sync + 'static {}
impl<T: KeyCodec + Hash + Eq + Clone + Debug + Send + Sync + 'static> Key for T {}

/// A time to live for a processor's state ([`Processor::STATE_TTL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTtl {
    /// Milliseconds after the key's last call.
    pub after_ms: i64,
    /// The clock they are counted on: processing time, or the watermark.
    pub domain: TimeDomain,
}

/// Why a record or timer could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// A transient failure: the runtime backs off and calls again with the
    /// same input, up to the job's retry limit, then dead-letters it.
    #[error("retryable: {0}")]
    Retry(String),
    /// The input can never be processed: it is dead-lettered with this
    /// reason and processing moves on.
    #[error("{0}")]
    Poison(String),
}

impl ProcessError {
    /// A poison error with a reason.
    pub fn poison(reason: impl Into<String>) -> Self {
        ProcessError::Poison(reason.into())
    }

    /// A retryable error with a reason.
    pub fn retry(reason: impl Into<String>) -> Self {
        ProcessError::Retry(reason.into())
    }
}

/// Keyed, stateful processing of one input stream.
///
/// For each key the runtime calls [`process`](Processor::process) once per
/// record, in input order, and [`on_timer`](Processor::on_timer) when one of
/// the key's timers fires, never two calls for one key at once. `state` is
/// the key's own state: loaded from RocksDB when the key is activated,
/// written back when it is passivated or checkpointed. A state equal to
/// `State::default()` is not stored at all.
///
/// Implementations may use `async fn` for these methods.
///
/// ```
/// use weir_actors::{Context, ProcessError, Processor, TimeDomain, Timer};
///
/// /// Counts records per key and emits the count one second (event time)
/// /// after the first record.
/// struct Count;
///
/// impl Processor for Count {
///     type Key = String;
///     type In = u32;
///     type Out = (String, u64);
///     type State = u64;
///
///     async fn process(&self, ctx: &mut Context<'_, Self>, n: &mut u64, _: &u32)
///         -> Result<(), ProcessError> {
///         if *n == 0 {
///             let at = ctx.timestamp().unwrap_or(0) + 1000;
///             ctx.set_timer("flush", at, TimeDomain::EventTime);
///         }
///         *n += 1;
///         Ok(())
///     }
///
///     async fn on_timer(&self, ctx: &mut Context<'_, Self>, n: &mut u64, _: Timer)
///         -> Result<(), ProcessError> {
///         ctx.emit((ctx.key().clone(), *n));
///         *n = 0;
///         Ok(())
///     }
/// }
///
/// let mut t = weir_actors::TestDriver::new(Count);
/// t.push("a", 0, 1);
/// t.push("a", 10, 2);
/// t.advance_watermark_to(1000);
/// assert_eq!(t.take_emitted(), vec![("a".to_string(), 2)]);
/// ```
pub trait Processor: Send + Sync + Sized + 'static {
    /// The key records are grouped by; each key is one virtual actor.
    type Key: Key;
    /// A decoded input record.
    type In: Send + Sync + 'static;
    /// What the processor emits.
    type Out: Send + 'static;
    /// Per-key state, persisted with serde + bincode under
    /// [`STATE_VERSION`](Processor::STATE_VERSION).
    type State: Default + Serialize + DeserializeOwned + Send + 'static;

    /// The version of `State`'s encoding, stored with every value. Raise it
    /// whenever `State` changes shape (bincode is not self-describing: a
    /// field added or removed makes old values unreadable), and say in
    /// [`migrate_state`](Processor::migrate_state) how to read the old
    /// ones. Values written before versions existed are version 1.
    const STATE_VERSION: u32 = 1;

    /// How long a key's state lives after the key's last call (a record or
    /// a timer; `None`, the default: for ever). In processing time, or on
    /// event time: the record's or event-time timer's time, else the
    /// watermark; at an unknown time (no watermark yet, or the end of
    /// input) nothing expires. Expired state is never returned: a key whose
    /// state expired starts again from `State::default()` (its timers are
    /// kept, and fire on that). It is dropped from RocksDB when compaction
    /// reaches it (a compaction filter: no timer per key) or when the key
    /// is next loaded. Values stored before a time to live was set carry no
    /// write time and do not expire until their key is written again.
    const STATE_TTL: Option<StateTtl> = None;

    /// Turns a value stored as state version `version` (older than
    /// [`STATE_VERSION`](Processor::STATE_VERSION)) into today's state:
    /// decode `bytes` as the old type with [`crate::decode_state`], then
    /// convert. It runs the first time each key is loaded after an
    /// upgrade; the key is written back in the new version at the next
    /// checkpoint (or when it is passivated), and keys never loaded keep
    /// their old bytes. Default: no migration. An `Err`, like a value
    /// newer than the code, fails the partition with an error naming the
    /// key and both versions: never a silent default state.
    fn migrate_state(version: u32, bytes: &[u8]) -> Result<Self::State, String> {
        let _ = bytes;
        Err(format!(
            "no migration from state version {version} to {}",
            Self::STATE_VERSION
        ))
    }

    /// One record for `ctx.key()`, in input order.
    ///
    /// On `Err`, outputs emitted during this call are discarded; changes the
    /// call made to `state` and to timers are kept, so a handler that may
    /// fail should decide before it mutates.
    fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        state: &mut Self::State,
        rec: &Self::In,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// A timer set with [`Context::set_timer`] fired. Default: nothing.
    fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        state: &mut Self::State,
        timer: Timer,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send {
        let _ = (ctx, state, timer);
        async { Ok(()) }
    }

    /// A record arrived behind the watermark (it is already counted as
    /// late). Default: dead-letter it with reason `"late"`. Return `Ok` to
    /// drop it silently or after handling it (for instance by emitting a
    /// correction).
    fn on_late(
        &self,
        ctx: &mut Context<'_, Self>,
        state: &mut Self::State,
        rec: &Self::In,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send {
        let _ = (ctx, state, rec);
        async { Err(ProcessError::poison("late")) }
    }
}
