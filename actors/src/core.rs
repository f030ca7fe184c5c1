//! [`PartitionCore`]: everything a partition does, with the I/O at the edges.
//!
//! The core owns one partition's virtual key actors, timer queue and
//! watermark, and writes through a [`Store`]. It has no threads and no
//! channels: the ractor [`PartitionActor`](crate::runtime::PartitionActor) drives it
//! in production with a RocksDB store, and the [`TestDriver`](crate::TestDriver)
//! drives it with an in-memory store and a manual clock, so the tests run
//! the exact code production runs.
//!
//! ## Virtual key actors
//! A key is activated by its first record or timer: its state is read from
//! the store (or defaults) into a slot of an LRU table. The slot is the key
//! actor: it holds the state and handles every call for that key, one at a
//! time, in input order. A key is passivated (dirty state written back, slot
//! dropped) when it has been idle for `idle_passivation_ms`, when the table
//! is at `live_actor_cap`, or when the partition finishes. Memory is thus
//! bounded by the cap, whatever the number of distinct keys. A state equal to
//! `State::default()` is deleted rather than stored.
//!
//! ## Order of effects for one record
//! 1. the record is late when its time is at or below the watermark as it
//!    stood before the record (so the record that moves the watermark is
//!    never late itself); the watermark then observes the record's time and
//!    the timers now due fire first;
//! 2. a late record is counted and handed to `on_late`; any other record
//!    to `process`;
//! 3. timer changes made by the call are written to the store at once, and
//!    an event-time timer the call set at or behind the watermark fires now;
//!    state is written when the key passivates or the partition flushes.
//!
//! ## Firing rounds
//! Timers fire in rounds: each time the watermark moves (a record, an idle
//! advance, an explicit advance, the end of input) and each tick for
//! processing time, every timer due by then fires in time order, and so do
//! the timers that `on_timer` calls set while the round runs, when they are
//! due too. At the end of input the watermark is `i64::MAX`, so a key with
//! several open windows closes them all even when it keeps one timer and
//! re-arms it for the next window from `on_timer`.
//!
//! A timer's *chain* is the number of firings in a row, within the round,
//! that led to it being set (0 for one set by a record or left from an
//! earlier round). A processor that re-arms without end (a timer that always
//! sets itself again, for a later or the same time) would make a round at
//! the end of input endless, so a key reaching
//! [`CoreConfig::max_timer_chain`] (default [`DEFAULT_MAX_TIMER_CHAIN`]) is
//! stopped for the round: its remaining due timers are held, unchanged and
//! stored, until the next round (after the end of input there is none, and
//! they stay in the state), counted in [`Counters::timers_deferred`] and
//! reported in a warning that names the key. Other keys carry on. A
//! legitimate chain is as long as the windows a key has open at once, far
//! below the bound; a periodic processing-time timer that catches up after a
//! long pause by re-arming from its own time catches up at most that many
//! periods per tick.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use lru::LruCache;
use rustc_hash::{FxBuildHasher, FxHashSet};
use weir_state::layout::{
    META_KEY_SHAPE, META_MAX_SEEN, META_POSITION, META_WATERMARK, parse_timer_key, timer_key,
};
use weir_state::value::{decode_body, decode_value, encode_state, encode_value, split_state};
use weir_state::{KeyCodec, KeyShape, Space, Store, get_meta_i64};

use crate::Error;
use crate::clock::Clock;
use crate::context::Context;
use crate::processor::{ProcessError, Processor, StateTtl};
use crate::timers::{Change, Due, TimerQueue};
use crate::timers::{TimeDomain, Timer};
use crate::watermark::Watermark;

/// How a partition behaves. Built by the job from its settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The partition id, reported in dead letters and errors.
    pub partition: u32,
    /// Most keys live at once in this partition (at least 1).
    pub live_actor_cap: usize,
    /// Passivate keys idle this long in processing time (`None`: only the
    /// cap passivates).
    pub idle_passivation_ms: Option<i64>,
    /// Bounded out-of-orderness of event time (`None`: records do not move
    /// the watermark; only explicit advances do).
    pub out_of_orderness_ms: Option<i64>,
    /// An idle partition's watermark follows processing time after this
    /// long without records (`None`: never).
    pub idle_watermark_ms: Option<i64>,
    /// A record whose event time is more than this ahead of the processing
    /// clock is dead-lettered (reason `future_timestamp`) and counted in
    /// [`Counters::future`]; it never moves the watermark, so one bad clock
    /// or crafted line cannot close every window and make all later
    /// records late. A watermark restored from a checkpoint beyond the
    /// same bound is forgotten. `None`: no bound.
    pub max_future_ms: Option<i64>,
    /// What a panic in `process`, `on_timer` or `on_late` does.
    pub on_panic: OnPanic,
    /// Where the core publishes "now" in its state TTL's domain for the
    /// store's compaction filter ([`weir_state::TtlFilter`]), when the
    /// processor's state has a time to live.
    pub ttl_clock: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// Attempts for a call failing with [`ProcessError::Retry`] before the
    /// input is dead-lettered.
    pub max_attempts: u32,
    /// Back-off before the first retry; doubles each attempt up to a second.
    pub retry_backoff: Duration,
    /// Most timers one key may fire in a row within one firing round, each
    /// set by the `on_timer` call before it (see "Firing rounds" above).
    pub max_timer_chain: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            partition: 0,
            live_actor_cap: 100_000,
            idle_passivation_ms: Some(60_000),
            out_of_orderness_ms: Some(5_000),
            idle_watermark_ms: Some(10_000),
            max_future_ms: None,
            on_panic: OnPanic::Stop,
            ttl_clock: None,
            max_attempts: 5,
            retry_backoff: Duration::from_millis(10),
            max_timer_chain: DEFAULT_MAX_TIMER_CHAIN,
        }
    }
}

/// What a panic in user code does ([`CoreConfig::on_panic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnPanic {
    /// The partition fails with [`Error::Panicked`] (processor, call, key,
    /// partition, position), and the job stops before another checkpoint.
    #[default]
    Stop,
    /// The key's state and timers are rolled back to what they were before
    /// the call (a copy is taken before every call, which costs an
    /// encoding of the state), its outputs are dropped, the input (record
    /// or timer) is dead-lettered with reason `panic: ...`, and processing
    /// goes on.
    DeadLetter,
}

impl std::str::FromStr for OnPanic {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stop" => Ok(Self::Stop),
            "dead-letter" => Ok(Self::DeadLetter),
            other => Err(format!("expected stop or dead-letter, not {other:?}")),
        }
    }
}

/// Default of [`CoreConfig::max_timer_chain`].
pub const DEFAULT_MAX_TIMER_CHAIN: u32 = 1_000;

/// One decoded input record on its way to its key actor.
#[derive(Debug, Clone)]
pub struct Envelope<K, V> {
    /// The record's key.
    pub key: K,
    /// Its event time, ms since the epoch.
    pub timestamp: Option<i64>,
    /// The decoded value.
    pub value: V,
    /// Its position in the source (a byte offset for files).
    pub position: u64,
    /// Where its raw bytes lie in the batch's data, for dead letters.
    pub raw: Range<usize>,
}

/// Records of one partition, with the raw bytes they were decoded from.
#[derive(Debug, Clone)]
pub struct InputBatch<K, V> {
    /// Raw input the records' `raw` ranges point into.
    pub data: Arc<[u8]>,
    /// The records, in input order.
    pub records: Vec<Envelope<K, V>>,
}

/// A record (or timer) that could not be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The partition it belonged to, when known.
    pub partition: Option<u32>,
    /// Its position in the source, when it came from one.
    pub position: Option<u64>,
    /// The raw input (for a timer: a description of it).
    pub raw: Vec<u8>,
    /// Why it was rejected.
    pub reason: String,
}

/// A partition's local part of a checkpoint: its state is in `dir` (a
/// RocksDB checkpoint) as of the barrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCheckpoint {
    pub id: u64,
    pub partition: u32,
    /// Input position at the barrier.
    pub position: u64,
    pub watermark: i64,
    pub dir: PathBuf,
    /// Records this core processed before the barrier.
    pub records: u64,
}

/// What a partition has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records received (late ones included).
    pub records: u64,
    /// Records behind the watermark.
    pub late: u64,
    /// Records whose event time was too far ahead of the processing clock
    /// ([`CoreConfig::max_future_ms`]); dead-lettered.
    pub future: u64,
    /// Records and timers dead-lettered.
    pub dead_lettered: u64,
    /// Outputs emitted.
    pub emitted: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// Timers held back because their key reached
    /// [`CoreConfig::max_timer_chain`] in a firing round.
    pub timers_deferred: u64,
    /// Keys activated (state loaded or defaulted).
    pub activations: u64,
    /// Keys passivated.
    pub passivations: u64,
}

struct Slot<S> {
    state: S,
    /// Changed since loaded or last written.
    dirty: bool,
    /// The store holds a value for this key (so a default state must be
    /// deleted there rather than just not written).
    stored: bool,
    last_active: i64,
    /// When the state last changed, in the state TTL's domain.
    written: i64,
}

/// One partition's keys, timers and watermark over a store.
pub struct PartitionCore<P: Processor, S: Store> {
    processor: Arc<P>,
    store: S,
    config: CoreConfig,
    clock: Arc<dyn Clock>,
    keys: LruCache<P::Key, Slot<P::State>, FxBuildHasher>,
    timers: TimerQueue<P::Key>,
    watermark: Watermark,
    out: Vec<(P::Key, P::Out)>,
    dead: Vec<DeadLetter>,
    counters: Counters,
    key_buf: Vec<u8>,
    val_buf: Vec<u8>,
    timer_buf: Vec<u8>,
    default_encoding: Vec<u8>,
}

/// Runs one user call with retries; on final failure records a dead letter.
/// A macro rather than a function: the call borrows the context and state
/// it is given, which closures returning futures cannot express with `Send`.
macro_rules! call_with_retry {
    ($core:ident, $slot:ident, $key:expr, $ts:expr, $raw:expr, $pos:expr,
     $chain:expr, $name:literal, $ttl_at:expr, |$ctx:ident, $state:ident| $call:expr) => {{
        let mut attempt = 1;
        let mut backoff = $core.config.retry_backoff;
        // What to roll the key back to if a call panics and the policy is
        // to dead-letter its input.
        let before = match $core.config.on_panic {
            OnPanic::DeadLetter => Some(KeySnapshot::take(&$slot.state, &$core.timers, $key)?),
            OnPanic::Stop => None,
        };
        loop {
            let mark = $core.out.len();
            let mut $ctx = Context {
                key: $key,
                timestamp: $ts,
                watermark: $core.watermark.current(),
                now: $core.clock.now_ms(),
                out: &mut $core.out,
                timers: &mut $core.timers,
                chain: $chain,
            };
            let $state = &mut $slot.state;
            // A panic in user code: by the policy, either the partition
            // stops with an error that names the call (its partial effects
            // are never checkpointed: the job fails before another
            // checkpoint), or the key is rolled back to what it was before
            // the call and the input is dead-lettered.
            let result = match std::panic::AssertUnwindSafe($call).catch_unwind().await {
                Ok(result) => result,
                Err(panic) => {
                    $core.out.truncate(mark);
                    let error = Error::Panicked {
                        processor: std::any::type_name::<P>(),
                        call: $name,
                        partition: $core.config.partition,
                        key: format!("{:?}", $key),
                        position: $pos,
                        message: panic_message(&*panic),
                    };
                    let Some(before) = before else {
                        return Err(error);
                    };
                    before.restore(&mut $slot.state, &mut $core.timers, $key)?;
                    $slot.dirty = true;
                    tracing::error!(%error, "dead-lettered the input; the key is as it was before the call");
                    $core.counters.dead_lettered += 1;
                    $core.dead.push(DeadLetter {
                        partition: Some($core.config.partition),
                        position: $pos,
                        raw: $raw,
                        reason: format!("panic: {error}"),
                    });
                    break;
                }
            };
            $slot.dirty = true;
            $slot.written = $slot.written.max($ttl_at);
            match result {
                Ok(()) => break,
                Err(ProcessError::Retry(reason)) if attempt < $core.config.max_attempts => {
                    $core.out.truncate(mark);
                    tracing::debug!(partition = $core.config.partition, attempt, %reason, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    attempt += 1;
                }
                Err(e) => {
                    $core.out.truncate(mark);
                    let reason = match e {
                        ProcessError::Retry(r) => format!("retries exhausted after {attempt} attempts: {r}"),
                        ProcessError::Poison(r) => r,
                    };
                    $core.counters.dead_lettered += 1;
                    $core.dead.push(DeadLetter {
                        partition: Some($core.config.partition),
                        position: $pos,
                        raw: $raw,
                        reason,
                    });
                    break;
                }
            }
        }
    }};
}

/// What loading a key's state found: the state, whether the store held a
/// value, whether it must be written back, and when it was written.
type Loaded<S> = (S, bool, bool, i64);

/// The time, in the domain of `P`'s state time to live, at which a call
/// happens: processing time; or, on the watermark, the event time of the
/// record or event-time timer (`event_time`), else the watermark. `i64::MIN`
/// when unknown (no time to live, a watermark not yet known or at the end
/// of input): nothing expires, and nothing is stamped, at an unknown time.
fn ttl_at<P: Processor>(clock: &dyn Clock, watermark: &Watermark, event_time: Option<i64>) -> i64 {
    match P::STATE_TTL {
        None => i64::MIN,
        Some(StateTtl {
            domain: TimeDomain::ProcessingTime,
            ..
        }) => clock.now_ms(),
        Some(StateTtl {
            domain: TimeDomain::EventTime,
            ..
        }) => event_time.unwrap_or_else(|| {
            let wm = watermark.current();
            if wm == i64::MAX { i64::MIN } else { wm }
        }),
    }
}

/// Whether state written at `written` has expired at `now` under `P`'s time
/// to live (never when either is unknown).
fn expired<P: Processor>(written: i64, now: i64) -> bool {
    written != i64::MIN
        && now != i64::MIN
        && P::STATE_TTL.is_some_and(|ttl| written.saturating_add(ttl.after_ms) < now)
}

/// A key's state (encoded) and pending timers before a call, to roll the
/// call back.
struct KeySnapshot {
    state: Vec<u8>,
    timers: Vec<Timer>,
}

impl KeySnapshot {
    fn take<K: std::hash::Hash + Eq + Clone, S: serde::Serialize>(
        state: &S,
        timers: &TimerQueue<K>,
        key: &K,
    ) -> Result<Self, Error> {
        let mut bytes = Vec::new();
        encode_value(state, &mut bytes)?;
        Ok(Self {
            state: bytes,
            timers: timers.of_key(key),
        })
    }

    fn restore<K: std::hash::Hash + Eq + Clone, S: serde::de::DeserializeOwned>(
        self,
        state: &mut S,
        timers: &mut TimerQueue<K>,
        key: &K,
    ) -> Result<(), Error> {
        *state = decode_value(&self.state)?;
        timers.restore_key(key, self.timers);
        Ok(())
    }
}

/// The message a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

impl<P: Processor, S: Store> PartitionCore<P, S> {
    /// A core over `store`, loading the timers stored there.
    pub fn new(
        processor: Arc<P>,
        mut store: S,
        config: CoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let mut timers = TimerQueue::default();
        let partition = config.partition;
        store.for_each(Space::Timers, &mut |k, _| {
            let (domain, at, key, name) = parse_timer_key::<P::Key>(k)?;
            let domain = TimeDomain::from_byte(domain).ok_or_else(|| {
                weir_state::Error::KeyDecode(format!("unknown timer domain {domain}"))
            })?;
            timers.load(key, name.into(), domain, at);
            Ok(())
        })?;
        // The body (bincode) of the default state: a state equal to it is
        // deleted rather than stored.
        let mut default_encoding = Vec::new();
        let header = encode_state(
            &P::State::default(),
            P::STATE_VERSION,
            None,
            &mut default_encoding,
        )?;
        default_encoding.drain(..header);
        let now = clock.now_ms();
        let mut watermark =
            Watermark::new(config.out_of_orderness_ms, config.idle_watermark_ms, now);
        if let Some(wm) = get_meta_i64(&mut store, META_WATERMARK)? {
            watermark.restore(wm, get_meta_i64(&mut store, META_MAX_SEEN)?);
        }
        // A watermark saved by an earlier run may stand far ahead (a run
        // that finished its input ends at the maximum; an older version had
        // no bound on event time): forgotten, later records are on time
        // again. (Held back to the bound instead, every record for the next
        // hour would be late.)
        if let Some(bound) = config.max_future_ms {
            let limit = now.saturating_add(bound);
            if watermark.current() > limit {
                tracing::warn!(
                    partition,
                    restored = watermark.current(),
                    limit,
                    "the restored watermark is ahead of the processing clock by more than max_future_ms; starting it afresh"
                );
                watermark.forget();
            }
        }
        tracing::debug!(
            partition,
            timers = timers.len(),
            watermark = watermark.current(),
            "partition core ready"
        );
        Ok(Self {
            processor,
            store,
            watermark,
            config,
            clock,
            keys: LruCache::unbounded_with_hasher(FxBuildHasher),
            timers,
            out: Vec::new(),
            dead: Vec::new(),
            counters: Counters::default(),
            key_buf: Vec::with_capacity(64),
            val_buf: Vec::with_capacity(256),
            timer_buf: Vec::with_capacity(64),
            default_encoding,
        })
    }

    /// The partition id.
    pub fn partition(&self) -> u32 {
        self.config.partition
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The current watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark.current()
    }

    /// Keys live now.
    pub fn live_keys(&self) -> usize {
        self.keys.len()
    }

    /// Timers pending now.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The store, for checkpoints and inspection.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Takes the outputs emitted since the last call, with their keys.
    pub fn take_outputs(&mut self) -> Vec<(P::Key, P::Out)> {
        self.counters.emitted += self.out.len() as u64;
        std::mem::take(&mut self.out)
    }

    /// Whether outputs are waiting to be taken.
    pub fn has_outputs(&self) -> bool {
        !self.out.is_empty()
    }

    /// Takes the dead letters recorded since the last call.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }

    /// Whether dead letters are waiting to be taken.
    pub fn has_dead_letters(&self) -> bool {
        !self.dead.is_empty()
    }

    /// The state of `key` as the processor would see it now, encoded with
    /// [`weir_state::value::encode_value`] (the default state when it has
    /// none). Reads only: the key is not made live.
    pub fn encoded_state(&mut self, key: &P::Key) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.read_state(key, |state| encode_value(state, &mut out))??;
        Ok(out)
    }

    /// The state of `key` as the processor would see it now.
    pub fn state_of(&mut self, key: &P::Key) -> Result<P::State, Error>
    where
        P::State: Clone,
    {
        self.read_state(key, P::State::clone)
    }

    /// Applies `f` to the state of `key` as the processor would see it now
    /// (live, stored, or the default; expired state is the default),
    /// without making the key live.
    fn read_state<R>(&mut self, key: &P::Key, f: impl FnOnce(&P::State) -> R) -> Result<R, Error> {
        let now = ttl_at::<P>(&*self.clock, &self.watermark, None);
        match self.keys.peek(key) {
            Some(slot) if !expired::<P>(slot.written, now) => Ok(f(&slot.state)),
            Some(_) => Ok(f(&P::State::default())),
            None => self.load_state(key, now).map(|(state, ..)| f(&state)),
        }
    }

    /// Processes every record of a batch, in order.
    pub async fn process_batch(&mut self, batch: &InputBatch<P::Key, P::In>) -> Result<(), Error> {
        for env in &batch.records {
            let raw = batch.data.get(env.raw.clone()).unwrap_or(&[]);
            self.process_record(env, raw).await?;
        }
        self.publish_ttl_clock();
        Ok(())
    }

    /// Tells the store's compaction filter what "now" is for state TTLs.
    fn publish_ttl_clock(&self) {
        if let Some(clock) = &self.config.ttl_clock {
            let now = ttl_at::<P>(&*self.clock, &self.watermark, None);
            if now != i64::MIN {
                clock.store(now, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Processes one record; `raw` is its input, for dead letters.
    pub async fn process_record(
        &mut self,
        env: &Envelope<P::Key, P::In>,
        raw: &[u8],
    ) -> Result<(), Error> {
        self.counters.records += 1;
        let now = self.clock.now_ms();
        if let (Some(ts), Some(bound)) = (env.timestamp, self.config.max_future_ms)
            && ts > now.saturating_add(bound)
        {
            self.counters.future += 1;
            self.counters.dead_lettered += 1;
            self.dead.push(DeadLetter {
                partition: Some(self.config.partition),
                position: Some(env.position),
                raw: raw.to_vec(),
                reason: format!(
                    "future_timestamp: event time {ts} is more than {bound} ms ahead of the processing clock ({now})"
                ),
            });
            return Ok(());
        }
        // Late against the watermark as the record found it: the record
        // that moves the watermark is never late itself (with an
        // out-of-orderness of 0 it moves it to its own time).
        let late = env.timestamp.is_some_and(|ts| self.watermark.is_late(ts));
        if self.watermark.observe(env.timestamp, now) {
            self.fire_event_timers().await?;
        }
        let ttl_at = ttl_at::<P>(&*self.clock, &self.watermark, env.timestamp);
        self.activate(&env.key, now, ttl_at)?;
        let processor = &*self.processor;
        let slot = self.keys.get_mut(&env.key).expect("activated above");
        if late {
            self.counters.late += 1;
            call_with_retry!(
                self,
                slot,
                &env.key,
                env.timestamp,
                raw.to_vec(),
                Some(env.position),
                0,
                "on_late",
                ttl_at,
                |ctx, state| processor.on_late(&mut ctx, state, &env.value)
            );
        } else {
            call_with_retry!(
                self,
                slot,
                &env.key,
                env.timestamp,
                raw.to_vec(),
                Some(env.position),
                0,
                "process",
                ttl_at,
                |ctx, state| processor.process(&mut ctx, state, &env.value)
            );
        }
        self.enforce_cap()?;
        if self
            .timers
            .next_due(TimeDomain::EventTime)
            .is_some_and(|t| t <= self.watermark.current())
        {
            self.fire_event_timers().await?;
        }
        Ok(())
    }

    /// Processing time passed: advances an idle watermark, fires due timers
    /// of both domains and passivates idle keys.
    pub async fn tick(&mut self) -> Result<(), Error> {
        let now = self.clock.now_ms();
        if self.watermark.tick(now) {
            self.fire_event_timers().await?;
        }
        self.publish_ttl_clock();
        self.fire_due(TimeDomain::ProcessingTime, now).await?;
        if let Some(idle) = self.config.idle_passivation_ms {
            let cutoff = now.saturating_sub(idle);
            while self
                .keys
                .peek_lru()
                .is_some_and(|(_, slot)| slot.last_active < cutoff)
            {
                let (key, slot) = self.keys.pop_lru().expect("peeked");
                self.passivate(&key, slot)?;
            }
        }
        Ok(())
    }

    /// Moves the watermark to `ts` (if later) and fires what became due.
    pub async fn advance_watermark_to(&mut self, ts: i64) -> Result<(), Error> {
        if self.watermark.advance_to(ts) {
            self.fire_event_timers().await?;
        }
        Ok(())
    }

    /// The input ended: the watermark goes to the maximum so every
    /// event-time timer fires, timers set while they fire included, then all
    /// state is written back and flushed. A key whose timers keep re-arming
    /// stops at [`CoreConfig::max_timer_chain`]; its remaining timers stay
    /// stored (and counted in [`Counters::timers_deferred`]).
    /// Processing-time timers stay stored for the next run.
    pub async fn finish(&mut self) -> Result<(), Error> {
        self.watermark.finish();
        self.fire_event_timers().await?;
        self.passivate_all()?;
        self.store.flush()?;
        Ok(())
    }

    /// Takes this partition's part of checkpoint `id` at input `position`:
    /// writes every dirty state back, records position and watermark, and
    /// snapshots the store into `dir`. Every record before the barrier has
    /// been processed (the actor handles messages in order), so the snapshot
    /// holds exactly their effects.
    pub fn checkpoint(
        &mut self,
        id: u64,
        position: u64,
        dir: &Path,
    ) -> Result<PartitionCheckpoint, Error> {
        crate::crash_point!("partition-checkpoint-start");
        self.write_back()?;
        let wm = self.watermark.current();
        self.store
            .put(Space::Meta, META_POSITION, &position.to_be_bytes())?;
        self.store
            .put(Space::Meta, META_WATERMARK, &wm.to_be_bytes())?;
        if let Some(max) = self.watermark.max_seen() {
            self.store
                .put(Space::Meta, META_MAX_SEEN, &max.to_be_bytes())?;
        }
        if let Some(shape) = KeyShape::of::<P::Key>() {
            self.store
                .put(Space::Meta, META_KEY_SHAPE, shape.to_string().as_bytes())?;
        }
        crate::crash_point!("partition-checkpoint-snapshot");
        self.store.checkpoint_to(dir)?;
        Ok(PartitionCheckpoint {
            id,
            partition: self.config.partition,
            position,
            watermark: wm,
            dir: dir.to_path_buf(),
            records: self.counters.records,
        })
    }

    /// Writes every dirty state and every timer change back, keeping keys
    /// live.
    pub fn write_back(&mut self) -> Result<(), Error> {
        let dirty: Vec<P::Key> = self
            .keys
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(k, _)| k.clone())
            .collect();
        for key in dirty {
            let slot = self.keys.peek_mut(&key).expect("listed above");
            Self::write_state(
                &mut self.store,
                &mut self.key_buf,
                &mut self.val_buf,
                &self.default_encoding,
                &key,
                slot,
            )?;
        }
        self.persist_timer_changes()
    }

    /// Passivates every live key and writes every timer change.
    pub fn passivate_all(&mut self) -> Result<(), Error> {
        while let Some((key, slot)) = self.keys.pop_lru() {
            self.passivate(&key, slot)?;
        }
        self.persist_timer_changes()
    }

    async fn fire_event_timers(&mut self) -> Result<(), Error> {
        let wm = self.watermark.current();
        self.fire_due(TimeDomain::EventTime, wm).await
    }

    /// One firing round: fires every timer of `domain` due at or before
    /// `upto`, in time order, timers set while they fire included. A key
    /// whose timer is the `max_timer_chain`-th in a row set by the firing
    /// before it is held back with all its other due timers until the next
    /// round (see "Firing rounds" in the module docs).
    async fn fire_due(&mut self, domain: TimeDomain, upto: i64) -> Result<(), Error> {
        if self.timers.next_due(domain).is_none_or(|t| t > upto) {
            return Ok(());
        }
        let round = self.timers.sequence();
        let mut held: Vec<(P::Key, Timer)> = Vec::new();
        let mut held_keys: FxHashSet<P::Key> = FxHashSet::default();
        let processor = Arc::clone(&self.processor);
        while let Some(due) = self.timers.pop_due(domain, upto) {
            // A chain counts only firings of this round: a timer left from
            // an earlier round (or set by a record) starts a new one.
            let chain = if due.seq >= round { due.chain } else { 0 };
            if chain >= self.config.max_timer_chain
                || (!held_keys.is_empty() && held_keys.contains(&due.key))
            {
                self.counters.timers_deferred += 1;
                if held_keys.insert(due.key.clone()) {
                    self.report_runaway(&due.key, &due.timer, upto);
                }
                held.push((due.key, due.timer));
                continue;
            }
            let Due { key, timer, .. } = due;
            self.counters.timers_fired += 1;
            let now = self.clock.now_ms();
            let event_time = (timer.domain == TimeDomain::EventTime).then_some(timer.at);
            let ttl_at = ttl_at::<P>(&*self.clock, &self.watermark, event_time);
            self.activate(&key, now, ttl_at)?;
            let slot = self.keys.get_mut(&key).expect("activated above");
            let at = timer.at;
            call_with_retry!(
                self,
                slot,
                &key,
                Some(at),
                format!(
                    "timer {:?} at {} ({:?}) for key {:?}",
                    timer.name, at, timer.domain, key
                )
                .into_bytes(),
                None,
                chain.saturating_add(1),
                "on_timer",
                ttl_at,
                |ctx, state| processor.on_timer(&mut ctx, state, timer.clone())
            );
            self.enforce_cap()?;
        }
        // Held timers wait, unchanged, for the next round (their chain
        // starts again there).
        for (key, timer) in held {
            self.timers.set(&key, timer.name, timer.domain, timer.at);
        }
        Ok(())
    }

    fn report_runaway(&self, key: &P::Key, timer: &Timer, upto: i64) {
        let end_of_input = upto == i64::MAX && timer.domain == TimeDomain::EventTime;
        tracing::warn!(
            partition = self.config.partition,
            key = ?key,
            timer = %timer.name,
            at = timer.at,
            limit = self.config.max_timer_chain,
            "a key's timers re-armed themselves {} times in a row in one firing round; {}",
            self.config.max_timer_chain,
            if end_of_input {
                "its remaining timers stay stored unfired at the end of input"
            } else {
                "its remaining due timers wait for the next round"
            }
        );
    }

    /// Makes `key` live (loading its state) for a call at processing time
    /// `now` and, in its state time to live's domain, `ttl_at`.
    fn activate(&mut self, key: &P::Key, now: i64, ttl_at: i64) -> Result<(), Error> {
        if let Some(slot) = self.keys.get_mut(key) {
            slot.last_active = now;
            if expired::<P>(slot.written, ttl_at) {
                // Live but untouched past its time to live: gone too. (Its
                // timers stay: they fire on the default state.)
                slot.state = P::State::default();
                slot.dirty = true;
                slot.written = i64::MIN;
            }
            return Ok(());
        }
        let (state, stored, rewrite, written) = self.load_state(key, ttl_at)?;
        self.counters.activations += 1;
        self.keys.push(
            key.clone(),
            Slot {
                state,
                // A migrated value is written back in the new version, an
                // expired one deleted.
                dirty: rewrite,
                stored,
                last_active: now,
                written,
            },
        );
        Ok(())
    }

    fn enforce_cap(&mut self) -> Result<(), Error> {
        while self.keys.len() > self.config.live_actor_cap.max(1) {
            let (key, slot) = self.keys.pop_lru().expect("over the cap, so not empty");
            self.passivate(&key, slot)?;
        }
        Ok(())
    }

    /// The stored state of `key` (or the default), whether it was stored,
    /// whether it was migrated from an older state version or expired
    /// (then it must be written back), and when it was written.
    fn load_state(&mut self, key: &P::Key, now: i64) -> Result<Loaded<P::State>, Error> {
        self.key_buf.clear();
        key.encode_key(&mut self.key_buf);
        let Some(bytes) = self.store.get(Space::State, &self.key_buf)? else {
            return Ok((P::State::default(), false, false, i64::MIN));
        };
        let not_decoded = |source| Error::State {
            partition: self.config.partition,
            key: format!("{key:?}"),
            source,
        };
        let stored = split_state(&bytes).map_err(not_decoded)?;
        let written = stored.written_at.unwrap_or(i64::MIN);
        if expired::<P>(written, now) {
            // Gone: the default, and the stored value deleted when the key
            // is next written.
            return Ok((P::State::default(), true, true, i64::MIN));
        }
        let (version, body) = (stored.version, stored.body);
        let wrong_version = |why: String| Error::StateVersion {
            partition: self.config.partition,
            key: format!("{key:?}"),
            processor: std::any::type_name::<P>(),
            found: version,
            current: P::STATE_VERSION,
            why,
        };
        match version.cmp(&P::STATE_VERSION) {
            std::cmp::Ordering::Equal => decode_body(body)
                .map(|state| (state, true, false, written))
                .map_err(not_decoded),
            std::cmp::Ordering::Less => P::migrate_state(version, body)
                .map(|state| (state, true, true, written))
                .map_err(wrong_version),
            std::cmp::Ordering::Greater => Err(wrong_version(
                "the state was written by newer code; run that code, or start empty".into(),
            )),
        }
    }

    fn passivate(&mut self, key: &P::Key, mut slot: Slot<P::State>) -> Result<(), Error> {
        self.counters.passivations += 1;
        Self::write_state(
            &mut self.store,
            &mut self.key_buf,
            &mut self.val_buf,
            &self.default_encoding,
            key,
            &mut slot,
        )
    }

    fn write_state(
        store: &mut S,
        key_buf: &mut Vec<u8>,
        val_buf: &mut Vec<u8>,
        default_encoding: &[u8],
        key: &P::Key,
        slot: &mut Slot<P::State>,
    ) -> Result<(), Error> {
        if !slot.dirty {
            return Ok(());
        }
        slot.dirty = false;
        let written_at = P::STATE_TTL.map(|_| slot.written);
        let header = encode_state(&slot.state, P::STATE_VERSION, written_at, val_buf)?;
        let is_default = &val_buf[header..] == default_encoding;
        if is_default && !slot.stored {
            return Ok(());
        }
        key_buf.clear();
        key.encode_key(key_buf);
        if is_default {
            store.delete(Space::State, key_buf)?;
        } else {
            store.put(Space::State, key_buf, val_buf)?;
        }
        slot.stored = !is_default;
        Ok(())
    }

    fn persist_timer_changes(&mut self) -> Result<(), Error> {
        for change in self.timers.drain_changes() {
            let (key, name, domain, at, set) = match &change {
                Change::Set {
                    key,
                    name,
                    domain,
                    at,
                } => (key, name, domain, at, true),
                Change::Remove {
                    key,
                    name,
                    domain,
                    at,
                } => (key, name, domain, at, false),
            };
            self.key_buf.clear();
            key.encode_key(&mut self.key_buf);
            timer_key(
                domain.to_byte(),
                *at,
                &self.key_buf,
                name,
                &mut self.timer_buf,
            );
            if set {
                self.store.put(Space::Timers, &self.timer_buf, &[])?;
            } else {
                self.store.delete(Space::Timers, &self.timer_buf)?;
            }
        }
        Ok(())
    }
}
