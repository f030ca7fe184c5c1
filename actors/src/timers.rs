//! The timer queue of one partition, as a sans-IO type.
//!
//! Each key has named timers; setting a name again replaces that timer.
//! Timers fire in (domain, time) order. Every change is also recorded as a
//! [`Change`] that the partition applies to its store, so the queue is
//! durable without this type doing any I/O. Memory is proportional to the
//! number of pending timers, not to the number of keys.

use std::collections::BTreeMap;
use std::hash::Hash;

use rustc_hash::FxHashMap;

use crate::processor::{TimeDomain, Timer, TimerName};

#[derive(Debug, Clone)]
struct Entry {
    name: TimerName,
    domain: TimeDomain,
    at: i64,
    seq: u64,
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
    changes: Vec<Change<K>>,
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            by_key: FxHashMap::default(),
            queue: BTreeMap::new(),
            next_seq: 0,
            changes: Vec::new(),
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

    /// Sets (or replaces) a timer. Setting it to what it already is does
    /// nothing, not even a change to persist.
    pub fn set(&mut self, key: &K, name: TimerName, domain: TimeDomain, at: i64) {
        if let Some(entries) = self.by_key.get_mut(key) {
            if let Some(e) = entries.iter_mut().find(|e| e.name == name) {
                if e.domain == domain && e.at == at {
                    return;
                }
                self.queue.remove(&(e.domain, e.at, e.seq));
                self.changes.push(Change::Remove {
                    key: key.clone(),
                    name: name.clone(),
                    domain: e.domain,
                    at: e.at,
                });
                e.domain = domain;
                e.at = at;
                e.seq = self.next_seq;
            } else {
                entries.push(Entry {
                    name: name.clone(),
                    domain,
                    at,
                    seq: self.next_seq,
                });
            }
        } else {
            self.by_key.insert(
                key.clone(),
                vec![Entry {
                    name: name.clone(),
                    domain,
                    at,
                    seq: self.next_seq,
                }],
            );
        }
        self.queue
            .insert((domain, at, self.next_seq), (key.clone(), name.clone()));
        self.next_seq += 1;
        self.changes.push(Change::Set {
            key: key.clone(),
            name,
            domain,
            at,
        });
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
        self.changes.push(Change::Remove {
            key: key.clone(),
            name: e.name,
            domain: e.domain,
            at: e.at,
        });
    }

    /// Adds a timer read back from the store (records no change).
    pub fn load(&mut self, key: K, name: TimerName, domain: TimeDomain, at: i64) {
        self.set(&key, name, domain, at);
        self.changes.pop();
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
    /// `upto` among those set before sequence number `before`.
    pub fn pop_due(&mut self, domain: TimeDomain, upto: i64, before: u64) -> Option<(K, Timer)> {
        let (&(d, at, seq), _) = self
            .queue
            .range((domain, i64::MIN, 0)..=(domain, upto, u64::MAX))
            .find(|((_, _, seq), _)| *seq < before)?;
        let (key, name) = self.queue.remove(&(d, at, seq)).expect("entry just seen");
        if let Some(entries) = self.by_key.get_mut(&key) {
            entries.retain(|e| e.seq != seq);
            if entries.is_empty() {
                self.by_key.remove(&key);
            }
        }
        self.changes.push(Change::Remove {
            key: key.clone(),
            name: name.clone(),
            domain,
            at,
        });
        Some((key, Timer { name, at, domain }))
    }

    /// Takes the changes recorded since the last call.
    pub fn drain_changes(&mut self) -> std::vec::Drain<'_, Change<K>> {
        self.changes.drain(..)
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
        assert_eq!(q.drain_changes().count(), 3, "set, remove old, set new");
        q.set(&"a", name("w"), TimeDomain::EventTime, 20);
        assert_eq!(q.drain_changes().count(), 0);
    }

    #[test]
    fn fires_in_time_order_per_domain() {
        let mut q = TimerQueue::default();
        q.set(&"b", name("x"), TimeDomain::EventTime, 30);
        q.set(&"a", name("x"), TimeDomain::EventTime, 10);
        q.set(&"a", name("y"), TimeDomain::ProcessingTime, 5);
        q.set(&"c", name("x"), TimeDomain::EventTime, 20);
        assert_eq!(q.next_due(TimeDomain::EventTime), Some(10));
        let fired: Vec<_> = std::iter::from_fn(|| q.pop_due(TimeDomain::EventTime, 25, u64::MAX))
            .map(|(k, t)| (k, t.at))
            .collect();
        assert_eq!(fired, vec![("a", 10), ("c", 20)]);
        assert_eq!(q.pop_due(TimeDomain::ProcessingTime, 4, u64::MAX), None);
        assert_eq!(
            q.pop_due(TimeDomain::ProcessingTime, 5, u64::MAX)
                .map(|(k, _)| k),
            Some("a")
        );
        assert_eq!(q.len(), 1);
        assert_eq!(q.get(&"a", "x"), None);
    }

    #[test]
    fn pop_due_skips_timers_set_after_a_sequence_number() {
        let mut q = TimerQueue::default();
        q.set(&"a", name("x"), TimeDomain::EventTime, 10);
        let before = q.sequence();
        q.set(&"b", name("x"), TimeDomain::EventTime, 5);
        assert_eq!(
            q.pop_due(TimeDomain::EventTime, 100, before)
                .map(|(k, _)| k),
            Some("a")
        );
        assert_eq!(q.pop_due(TimeDomain::EventTime, 100, before), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn cancel_removes() {
        let mut q = TimerQueue::default();
        q.set(&"a", name("w"), TimeDomain::EventTime, 10);
        q.cancel(&"a", "w");
        q.cancel(&"a", "missing");
        assert!(q.is_empty());
        assert_eq!(q.pop_due(TimeDomain::EventTime, i64::MAX, u64::MAX), None);
        let changes: Vec<_> = q.drain_changes().collect();
        assert!(matches!(
            changes.last(),
            Some(Change::Remove { at: 10, .. })
        ));
    }

    #[test]
    fn load_records_no_change() {
        let mut q = TimerQueue::default();
        q.load("a", name("w"), TimeDomain::EventTime, 10);
        assert_eq!(q.drain_changes().count(), 0);
        assert_eq!(q.len(), 1);
    }
}
