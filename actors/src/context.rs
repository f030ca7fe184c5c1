//! [`Context`]: what a processor call may see and do.

use crate::processor::Processor;
use crate::timers::{TimeDomain, TimerName, TimerQueue};

/// The context of one `process`, `on_timer` or `on_late` call. It lives for
/// that call only (the borrow checker enforces it).
pub struct Context<'a, P: Processor> {
    pub(crate) key: &'a P::Key,
    pub(crate) timestamp: Option<i64>,
    pub(crate) watermark: i64,
    pub(crate) now: i64,
    pub(crate) out: &'a mut Vec<(P::Key, P::Out)>,
    pub(crate) timers: &'a mut TimerQueue<P::Key>,
    /// The chain timers set in this call get: 0 in `process` and `on_late`,
    /// one more than the firing timer's in `on_timer`.
    pub(crate) chain: u32,
}

impl<P: Processor> Context<'_, P> {
    /// The key this call is for.
    pub fn key(&self) -> &P::Key {
        self.key
    }

    /// The record's event time (ms since the epoch); for a timer call, the
    /// timer's time; `None` when the record carried none.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The partition's current watermark (ms since the epoch; `i64::MIN`
    /// before any event time was seen).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The processing time of this call (ms since the epoch, from the job's
    /// clock).
    pub fn processing_time(&self) -> i64 {
        self.now
    }

    /// Emits an output record to the job's sink, keyed by this call's key
    /// (sinks with record keys, such as Kafka's, use it).
    pub fn emit(&mut self, out: P::Out) {
        self.out.push((self.key.clone(), out));
    }

    /// Sets this key's timer `name` to fire at `at` in `domain`, replacing a
    /// timer of the same name.
    pub fn set_timer(&mut self, name: impl Into<TimerName>, at: i64, domain: TimeDomain) {
        self.timers
            .set_chained(self.key, name.into(), domain, at, self.chain);
    }

    /// Cancels this key's timer `name`, if set.
    pub fn cancel_timer(&mut self, name: &str) {
        self.timers.cancel(self.key, name);
    }

    /// This key's timer `name`, if set: its domain and time.
    pub fn timer(&self, name: &str) -> Option<(TimeDomain, i64)> {
        self.timers.get(self.key, name)
    }
}
