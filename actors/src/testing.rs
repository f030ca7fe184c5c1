//! [`TestDriver`]: test a processor with no I/O and time under control.
//!
//! The driver runs the same [`PartitionCore`] as production, over an
//! in-memory store, with a [`ManualClock`] for processing time and a
//! watermark that moves only when the test says so (or, when configured,
//! with bounded out-of-orderness). Use it from plain `#[test]` functions: it
//! runs the processor's async code on a runtime of its own.

use std::sync::Arc;
use std::time::Duration;

use weir_state::value::{encode_state, split_state};
use weir_state::{KeyCodec, MemStore, Space, Store};

use crate::clock::ManualClock;
use crate::core::{CoreConfig, Counters, DeadLetter, Envelope, PartitionCore};
use crate::processor::Processor;

/// Drives one processor over one in-memory partition.
pub struct TestDriver<P: Processor> {
    core: PartitionCore<P, MemStore>,
    clock: ManualClock,
    runtime: tokio::runtime::Runtime,
    emitted: Vec<(P::Key, P::Out)>,
    dead: Vec<DeadLetter>,
    position: u64,
}

impl<P: Processor> TestDriver<P> {
    /// A driver with a manual watermark, no idle passivation, no cap that a
    /// test would reach, and processing time starting at 0.
    pub fn new(processor: P) -> Self {
        Self::with_config(
            processor,
            CoreConfig {
                partition: 0,
                live_actor_cap: usize::MAX,
                idle_passivation_ms: None,
                out_of_orderness_ms: None,
                idle_watermark_ms: None,
                max_future_ms: None,
                on_panic: crate::core::OnPanic::Stop,
                ttl_clock: None,
                max_attempts: 3,
                retry_backoff: Duration::ZERO,
                max_timer_chain: crate::core::DEFAULT_MAX_TIMER_CHAIN,
            },
        )
    }

    /// A driver with explicit settings (cap, out-of-orderness, idleness).
    pub fn with_config(processor: P, config: CoreConfig) -> Self {
        let clock = ManualClock::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime can always be built");
        let core = PartitionCore::new(
            Arc::new(processor),
            MemStore::default(),
            config,
            Arc::new(clock.clone()),
        )
        .expect("an empty in-memory store always opens");
        Self {
            core,
            clock,
            runtime,
            emitted: Vec::new(),
            dead: Vec::new(),
            position: 0,
        }
    }

    fn collect(&mut self) {
        self.emitted.extend(self.core.take_outputs());
        self.dead.extend(self.core.take_dead_letters());
    }

    fn run<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut PartitionCore<P, MemStore>) -> Result<T, crate::Error>,
    ) -> T {
        let result = self.runtime.block_on(f(&mut self.core));
        let value = result.unwrap_or_else(|e| panic!("TestDriver: partition failed: {e}"));
        self.collect();
        value
    }

    /// Pushes a record for `key` with event time `ts` (ms).
    pub fn push(&mut self, key: impl Into<P::Key>, ts: i64, value: P::In) {
        self.push_record(key.into(), Some(ts), value);
    }

    /// Pushes a record that carries no event time.
    pub fn push_untimed(&mut self, key: impl Into<P::Key>, value: P::In) {
        self.push_record(key.into(), None, value);
    }

    fn push_record(&mut self, key: P::Key, timestamp: Option<i64>, value: P::In) {
        let env = Envelope {
            key,
            timestamp,
            value,
            position: self.position,
            raw: 0..0,
        };
        self.position += 1;
        let raw = format!("record at position {}", env.position).into_bytes();
        self.run(async |core| core.process_record(&env, &raw).await);
    }

    /// Moves the watermark to `ts`, firing the event-time timers now due.
    pub fn advance_watermark_to(&mut self, ts: i64) {
        self.run(async |core| core.advance_watermark_to(ts).await);
    }

    /// Moves processing time forward by `ms`, firing the processing-time
    /// timers now due (and idle watermark / passivation, when configured).
    pub fn advance_processing_time(&mut self, ms: i64) {
        self.clock.advance(ms);
        self.run(async |core| core.tick().await);
    }

    /// Ends the input: every event-time timer fires (timers set while they
    /// fire included, within the partition's timer chain bound), all state
    /// is written. The same code as a finite job's end of input.
    pub fn finish(&mut self) {
        self.run(async |core| core.finish().await);
    }

    /// Takes what was emitted so far.
    pub fn take_emitted(&mut self) -> Vec<P::Out> {
        self.take_emitted_with_keys()
            .into_iter()
            .map(|(_, out)| out)
            .collect()
    }

    /// Takes what was emitted so far, with the key each output was emitted
    /// for.
    pub fn take_emitted_with_keys(&mut self) -> Vec<(P::Key, P::Out)> {
        std::mem::take(&mut self.emitted)
    }

    /// Stores `value` as `key`'s state under state version `version`, as
    /// an earlier version of the processor would have: to test
    /// [`Processor::migrate_state`]. Call it before the key is first used
    /// (a live key does not read its stored state again).
    pub fn put_state<T: serde::Serialize>(
        &mut self,
        key: impl Into<P::Key>,
        version: u32,
        value: &T,
    ) {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        key.into().encode_key(&mut k);
        encode_state(value, version, None, &mut v).expect("the value encodes");
        self.core
            .store_mut()
            .put(Space::State, &k, &v)
            .expect("the in-memory store takes it");
    }

    /// The state version `key`'s stored value carries, if it is stored
    /// (live keys write theirs when passivated or at [`finish`](Self::finish)).
    pub fn stored_state_version(&mut self, key: impl Into<P::Key>) -> Option<u32> {
        let mut k = Vec::new();
        key.into().encode_key(&mut k);
        let bytes = self.core.store_mut().get(Space::State, &k).ok()??;
        split_state(&bytes).ok().map(|s| s.version)
    }

    /// Dead letters so far.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.core.counters()
    }

    /// The current watermark.
    pub fn watermark(&self) -> i64 {
        self.core.watermark()
    }

    /// Keys live now.
    pub fn live_keys(&self) -> usize {
        self.core.live_keys()
    }

    /// Timers pending now.
    pub fn pending_timers(&self) -> usize {
        self.core.pending_timers()
    }

    /// The state of `key` (live or stored).
    pub fn state(&mut self, key: impl Into<P::Key>) -> P::State
    where
        P::State: Clone,
    {
        let key = key.into();
        self.core
            .state_of(&key)
            .unwrap_or_else(|e| panic!("TestDriver: state of {key:?}: {e}"))
    }

    /// Passivates every live key (writing state to the in-memory store), as
    /// the runtime does under memory pressure.
    pub fn passivate_all(&mut self) {
        self.core
            .passivate_all()
            .unwrap_or_else(|e| panic!("TestDriver: passivation failed: {e}"));
    }
}
