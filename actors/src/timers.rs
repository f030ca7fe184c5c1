//! The timer queue of one partition, as a sans-IO type.
//!
//! Each key has named timers; setting a name again replaces that timer.
//! Timers fire in (domain, time) order. The queue also tracks how it differs
//! from what was last persisted, as net [`Change`]s: a timer set and fired
//! between two flushes never reaches the store at all, and the partition
//! writes the rest at its next checkpoint. No I/O happens here. Memory is
//! proportional to the number of pending timers (plus the unflushed
//! changes), not to the number of keys.

use std::collections::BTreeMap;
use std::hash::Hash;

use rustc_hash::FxHashMap;

/// The name of a timer. Setting a name again replaces that key's timer of the
/// same name, so replaying input after a restore never doubles a timer.
/// Names up to 24 bytes are stored inline (no allocation).
pub type TimerName = compact_str::CompactString;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Fires when the partition's watermark reaches the timer's time.
    EventTime,
    /// Fires when the wall clock reaches the timer's time, with or without
    /// input.
    ProcessingTime,
}

impl TimeDomain {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            TimeDomain::EventTime => 0,
            TimeDomain::ProcessingTime => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(TimeDomain::EventTime),
            1 => Some(TimeDomain::ProcessingTime),
            _ => None,
        }
    }
}

/// A timer that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The name it was set under.
    pub name: TimerName,
    /// The time it was set for, in milliseconds since the epoch.
    pub at: i64,
    /// The clock it followed.
    pub domain: TimeDomain,
}

#[derive(Debug, Clone)]
struct Entry {
    name: TimerName,
    domain: TimeDomain,
    at: i64,
    seq: u64,
    /// How many timer firings in a row led to this timer being set (0: set
    /// by a record, or read from the store). See [`Due::chain`].
    chain: u32,
}

/// A timer taken from the queue to fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due<K> {
    /// The key it belongs to.
    pub key: K,
    /// The timer.
    pub timer: Timer,
    /// Its sequence number: timers set later have higher ones.
    pub seq: u64,
    /// How many firings in a row led to it: a timer set from `on_timer` of a
    /// timer with chain `c` has chain `c + 1`. Only meaningful for timers
    /// set within the current firing round (`seq` at or above the round's
    /// first [`TimerQueue::sequence`]).
    pub chain: u32,
}

/// A change to persist: a timer stored or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<K> {
    /// Store this timer.
    Set {
        key: K,
        name: TimerName,
        domain: TimeDomain,
        at: i64,
    },
    /// Remove this timer.
    Remove {
        key: K,
        name: TimerName,
        domain: TimeDomain,
        at: i64,
    },
}

/// Pending timers of a partition.
#[derive(Debug)]
pub struct TimerQueue<K> {
    by_key: FxHashMap<K, Vec<Entry>>,
    queue: BTreeMap<(TimeDomain, i64, u64), (K, TimerName)>,
    next_seq: u64,
    /// Per key, timers whose persisted value differs from the current one:
    /// (name, persisted, current).
    dirty: FxHashMap<K, Vec<Unflushed>>,
}

/// A timer's domain and time.
type Slot = (TimeDomain, i64);

/// A timer whose stored value is out of date: (name, stored, current).
type Unflushed = (TimerName, Option<Slot>, Option<Slot>);

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            by_key: FxHashMap::default(),
            queue: BTreeMap::new(),
            next_seq: 0,
            dirty: FxHashMap::default(),
        }
    }
}

impl<K: Hash + Eq + Clone> TimerQueue<K> {
    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Key `key`'s timer `name`, if set.
    pub fn get(&self, key: &K, name: &str) -> Option<(TimeDomain, i64)> {
        self.by_key
            .get(key)?
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.domain, e.at))
    }

    /// Notes that `key`'s timer `name` went from `old` to `new`.
    fn record(&mut self, key: &K, name: &TimerName, old: Option<Slot>, new: Option<Slot>) {
        let Some(list) = self.dirty.get_mut(key) else {
            // Not dirty: the store holds `old`.
            self.dirty
                .insert(key.clone(), vec![(name.clone(), old, new)]);
            return;
        };
        match list.iter().position(|d| d.0 == *name) {
            Some(i) => {
                list[i].2 = new;
                if list[i].1 == list[i].2 {
                    list.swap_remove(i);
                    if list.is_empty() {
                        self.dirty.remove(key);
                    }
                }
            }
            None => list.push((name.clone(), old, new)),
        }
    }

    /// Sets (or replaces) a timer. Setting it to what it already is does
    /// nothing, not even a change to persist.
    pub fn set(&mut self, key: &K, name: TimerName, domain: TimeDomain, at: i64) {
        self.set_chained(key, name, domain, at, 0);
    }

    /// Like [`set`](Self::set), for a timer set while a timer with chain
    /// `chain - 1` fires (see [`Due::chain`]).
    pub fn set_chained(
        &mut self,
        key: &K,
        name: TimerName,
        domain: TimeDomain,
        at: i64,
        chain: u32,
    ) {
        let seq = self.next_seq;
        let old = match self.by_key.get_mut(key) {
            Some(entries) => match entries.iter_mut().find(|e| e.name == name) {
                Some(e) if e.domain == domain && e.at == at => return,
                Some(e) => {
                    self.queue.remove(&(e.domain, e.at, e.seq));
                    let old = (e.domain, e.at);
                    (e.domain, e.at, e.seq, e.chain) = (domain, at, seq, chain);
                    Some(old)
                }
                None => {
                    entries.push(Entry {
                        name: name.clone(),
                        domain,
                        at,
                        seq,
                        chain,
                    });
                    None
                }
            },
            None => {
                self.by_key.insert(
                    key.clone(),
                    vec![Entry {
                        name: name.clone(),
                        domain,
                        at,
                        seq,
                        chain,
                    }],
                );
                None
            }
        };
        self.queue
            .insert((domain, at, seq), (key.clone(), name.clone()));
        self.next_seq += 1;
        self.record(key, &name, old, Some((domain, at)));
    }

    /// Cancels a timer, if set.
    pub fn cancel(&mut self, key: &K, name: &str) {
        let Some(entries) = self.by_key.get_mut(key) else {
            return;
        };
        let Some(i) = entries.iter().position(|e| e.name == name) else {
            return;
        };
        let e = entries.swap_remove(i);
        if entries.is_empty() {
            self.by_key.remove(key);
        }
        self.queue.remove(&(e.domain, e.at, e.seq));
        self.record(key, &e.name, Some((e.domain, e.at)), None);
    }

    /// Key `key`'s pending timers, to put back with
    /// [`restore_key`](Self::restore_key).
    pub fn of_key(&self, key: &K) -> Vec<Timer> {
        self.by_key.get(key).map_or_else(Vec::new, |entries| {
            entries
                .iter()
                .map(|e| Timer {
                    name: e.name.clone(),
                    at: e.at,
                    domain: e.domain,
                })
                .collect()
        })
    }

    /// Makes `key`'s pending timers exactly `timers` again (the changes
    /// are recorded for the store like any others).
    pub fn restore_key(&mut self, key: &K, timers: Vec<Timer>) {
        for t in self.of_key(key) {
            if !timers.iter().any(|k| k.name == t.name) {
                self.cancel(key, &t.name);
            }
        }
        for t in timers {
            self.set(key, t.name, t.domain, t.at);
        }
    }

    /// Adds a timer read back from the store (records no change).
    pub fn load(&mut self, key: K, name: TimerName, domain: TimeDomain, at: i64) {
        self.set(&key, name.clone(), domain, at);
        if let Some(list) = self.dirty.get_mut(&key) {
            list.retain(|d| d.0 != name);
            if list.is_empty() {
                self.dirty.remove(&key);
            }
        }
    }

    /// The earliest pending time in `domain`.
    pub fn next_due(&self, domain: TimeDomain) -> Option<i64> {
        self.queue
            .range((domain, i64::MIN, 0)..)
            .next()
            .filter(|((d, _, _), _)| *d == domain)
            .map(|((_, at, _), _)| *at)
    }

    /// The sequence number the next timer set will get: timers set so far
    /// have lower ones.
    pub fn sequence(&self) -> u64 {
        self.next_seq
    }

    /// Removes and returns the earliest timer in `domain` due at or before
    /// `upto`.
    pub fn pop_due(&mut self, domain: TimeDomain, upto: i64) -> Option<Due<K>> {
        let (&(d, at, seq), _) = self
            .queue
            .range((domain, i64::MIN, 0)..=(domain, upto, u64::MAX))
            .next()?;
        let (key, name) = self.queue.remove(&(d, at, seq)).expect("entry just seen");
        let mut chain = 0;
        if let Some(entries) = self.by_key.get_mut(&key) {
            if let Some(i) = entries.iter().position(|e| e.seq == seq) {
                chain = entries.swap_remove(i).chain;
            }
            if entries.is_empty() {
                self.by_key.remove(&key);
            }
        }
        self.record(&key, &name, Some((domain, at)), None);
        Some(Due {
            key,
            timer: Timer { name, at, domain },
            seq,
            chain,
        })
    }

    /// Number of timers whose persisted value is out of date.
    pub fn unflushed(&self) -> usize {
        self.dirty.values().map(Vec::len).sum()
    }

    /// Takes the net changes since the last call: what to write so the
    /// store matches the queue.
    pub fn drain_changes(&mut self) -> Vec<Change<K>> {
        let mut out = Vec::with_capacity(self.dirty.len() * 2);
        for (key, list) in self.dirty.drain() {
            for (name, persisted, current) in list {
                if let Some((domain, at)) = persisted {
                    out.push(Change::Remove {
                        key: key.clone(),
                        name: name.clone(),
                        domain,
                        at,
                    });
                }
                if let Some((domain, at)) = current {
                    out.push(Change::Set {
                        key: key.clone(),
                        name,
                        domain,
                        at,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TimerName {
        TimerName::from(s)
    }

    #[test]
    fn same_name_replaces_and_same_value_is_a_no_op() {
        let mut q = TimerQueue::default();
        q.set(&"a", name("w"), TimeDomain::EventTime, 10);
        q.set(&"a", name("w"), TimeDomain::EventTime, 20);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get(&"a", "w"), Some((TimeDomain::EventTime, 20)));
        assert_eq!(
            q.drain_changes(),
            vec![Change::Set {
                key: "a",
                name: name("w"),
                domain: TimeDomain::EventTime,
                at: 20
            }],
            "net change: the first value never needs storing"
        );
        q.set(&"a", name("w"), TimeDomain::EventTime, 20);
        assert!(q.drain_changes().is_empty());
        q.set(&"a", name("w"), TimeDomain::EventTime, 30);
        assert_eq!(q.drain_changes().len(), 2, "remove the stored 20, store 30");
    }

    #[test]
    fn fires_in_time_order_per_domain() {
        let mut q = TimerQueue::default();
        q.set(&"b", name("x"), TimeDomain::EventTime, 30);
        q.set(&"a", name("x"), TimeDomain::EventTime, 10);
        q.set(&"a", name("y"), TimeDomain::ProcessingTime, 5);
        q.set(&"c", name("x"), TimeDomain::EventTime, 20);
        assert_eq!(q.next_due(TimeDomain::EventTime), Some(10));
        let fired: Vec<_> = std::iter::from_fn(|| q.pop_due(TimeDomain::EventTime, 25))
            .map(|d| (d.key, d.timer.at))
            .collect();
        assert_eq!(fired, vec![("a", 10), ("c", 20)]);
        assert_eq!(q.pop_due(TimeDomain::ProcessingTime, 4), None);
        assert_eq!(
            q.pop_due(TimeDomain::ProcessingTime, 5).map(|d| d.key),
            Some("a")
        );
        assert_eq!(q.len(), 1);
        assert_eq!(q.get(&"a", "x"), None);
    }

    #[test]
    fn popped_timers_carry_their_chain_and_sequence() {
        let mut q = TimerQueue::default();
        q.set(&"a", name("x"), TimeDomain::EventTime, 10);
        let round = q.sequence();
        let first = q.pop_due(TimeDomain::EventTime, 100).expect("due");
        assert_eq!((first.chain, first.seq < round), (0, true));
        q.set_chained(&"a", name("x"), TimeDomain::EventTime, 20, first.chain + 1);
        let second = q.pop_due(TimeDomain::EventTime, 100).expect("due");
        assert_eq!(second.timer.at, 20);
        assert_eq!((second.chain, second.seq >= round), (1, true));
        // Replacing a chained timer from a record resets its chain.
        q.set_chained(&"a", name("x"), TimeDomain::EventTime, 30, 7);
        q.set(&"a", name("x"), TimeDomain::EventTime, 40);
        assert_eq!(
            q.pop_due(TimeDomain::EventTime, 100).map(|d| d.chain),
            Some(0)
        );
        assert!(q.is_empty());
    }

    #[test]
    fn cancel_removes() {
        let mut q = TimerQueue::default();
        q.set(&"a", name("w"), TimeDomain::EventTime, 10);
        q.cancel(&"a", "w");
        q.cancel(&"a", "missing");
        assert!(q.is_empty());
        assert_eq!(q.pop_due(TimeDomain::EventTime, i64::MAX), None);
        assert!(
            q.drain_changes().is_empty(),
            "set and cancelled before a flush: nothing to store"
        );
        q.set(&"a", name("w"), TimeDomain::EventTime, 10);
        q.drain_changes();
        q.cancel(&"a", "w");
        let changes = q.drain_changes();
        assert!(matches!(
            changes.last(),
            Some(Change::Remove { at: 10, .. })
        ));
    }

    #[test]
    fn load_records_no_change() {
        let mut q = TimerQueue::default();
        q.load("a", name("w"), TimeDomain::EventTime, 10);
        assert!(q.drain_changes().is_empty());
        assert_eq!(q.len(), 1);
        q.pop_due(TimeDomain::EventTime, 10);
        assert_eq!(
            q.unflushed(),
            1,
            "a fired stored timer must be removed from the store"
        );
    }
}
