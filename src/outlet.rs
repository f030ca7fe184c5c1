//! The sinks' side of a job: outputs and dead letters from every partition
//! (and dead letters from the feed), with barrier alignment.
//!
//! The outlet is an operator with `partitions + 1` inputs. Everything an
//! input sends is queued per input and applied in order; an input that has
//! passed barrier `n` while others have not is blocked (its queue waits),
//! so when barrier `n` aligns the sinks hold exactly the records from before
//! it. The sinks are then committed (flushed, fsynced) and their lengths go
//! into checkpoint `n`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use weir_actors::DeadLetter;
use weir_actors::runtime::{Aligner, Alignment, Outlet, PartitionCheckpoint};

use crate::checkpoint::{Coordinator, DEAD_LETTER_SINK, OUTPUT_SINK};
use crate::lock;
use crate::sink::Sink;

enum Event<T> {
    Outputs(Vec<T>),
    DeadLetters(Vec<DeadLetter>),
    Barrier(u64),
}

struct Inner<T> {
    out: Box<dyn Sink<T>>,
    dlq: Box<dyn Sink<DeadLetter>>,
    aligner: Aligner,
    queues: Vec<VecDeque<Event<T>>>,
    /// Sink lengths committed at the last aligned barrier.
    aligned: (Option<u64>, Option<u64>),
}

/// Why a job is failing: set once (the first reason wins), read cheaply on
/// hot paths.
#[derive(Default)]
pub(crate) struct Failure {
    message: Mutex<Option<String>>,
    set: AtomicBool,
}

impl Failure {
    /// Records `message` unless a reason is already recorded.
    pub(crate) fn record(&self, message: String) {
        lock(&self.message).get_or_insert(message);
        self.set.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// The first reason recorded, if any.
    pub(crate) fn message(&self) -> Option<String> {
        if !self.is_set() {
            return None;
        }
        lock(&self.message).clone()
    }
}

/// Delivers partitions' outputs and dead letters to the job's sinks.
pub(crate) struct SinkOutlet<T> {
    inner: Mutex<Inner<T>>,
    coordinator: Option<Arc<Coordinator>>,
    failure: Failure,
    feed_input: usize,
}

impl<T: Send + 'static> SinkOutlet<T> {
    /// An outlet over `partitions` partitions and the feed.
    pub(crate) fn new(
        out: Box<dyn Sink<T>>,
        dlq: Box<dyn Sink<DeadLetter>>,
        partitions: u32,
        coordinator: Option<Arc<Coordinator>>,
    ) -> Self {
        let inputs = partitions as usize + 1;
        Self {
            inner: Mutex::new(Inner {
                out,
                dlq,
                aligner: Aligner::new(inputs),
                queues: (0..inputs).map(|_| VecDeque::new()).collect(),
                aligned: (None, None),
            }),
            coordinator,
            failure: Failure::default(),
            feed_input: partitions as usize,
        }
    }

    pub(crate) fn fail(&self, message: String) {
        tracing::error!(%message, "job failing");
        if let Some(c) = &self.coordinator {
            c.abandon(&message);
        }
        self.failure.record(message);
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.failure.is_set()
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.message()
    }

    /// Cuts the sinks back to a checkpoint's lengths (0: a fresh start).
    pub(crate) fn rewind(&self, output: u64, dead_letters: u64) -> std::io::Result<()> {
        let mut inner = self.lock();
        inner.out.rewind(output)?;
        inner.dlq.rewind(dead_letters)
    }

    /// Cuts the sinks back to what the last aligned barrier committed.
    pub(crate) fn rewind_to_last_alignment(&self) -> std::io::Result<()> {
        let mut inner = self.lock();
        if let (Some(len), _) = inner.aligned {
            inner.out.rewind(len)?;
        }
        if let (_, Some(len)) = inner.aligned {
            inner.dlq.rewind(len)?;
        }
        Ok(())
    }

    /// Makes everything written durable.
    pub(crate) fn commit(&self) -> std::io::Result<()> {
        let mut inner = self.lock();
        inner.out.commit()?;
        inner.dlq.commit()?;
        Ok(())
    }

    /// Dead letters from the feed (lines that did not decode).
    pub(crate) fn feed_dead_letters(&self, items: Vec<DeadLetter>) {
        self.push(self.feed_input, Event::DeadLetters(items));
    }

    /// The feed passed barrier `id`.
    pub(crate) fn feed_barrier(&self, id: u64) {
        self.push(self.feed_input, Event::Barrier(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        lock(&self.inner)
    }

    fn push(&self, input: usize, event: Event<T>) {
        let mut inner = self.lock();
        inner.queues[input].push_back(event);
        if let Err(e) = self.pump(&mut inner) {
            self.fail(e);
        }
    }

    /// Applies queued events of every unblocked input until none can move.
    fn pump(&self, inner: &mut Inner<T>) -> Result<(), String> {
        loop {
            let mut moved = false;
            for input in 0..inner.queues.len() {
                while !inner.aligner.is_blocked(input) {
                    let Some(event) = inner.queues[input].pop_front() else {
                        break;
                    };
                    moved = true;
                    self.apply(inner, input, event)?;
                }
            }
            if !moved {
                return Ok(());
            }
        }
    }

    fn apply(&self, inner: &mut Inner<T>, input: usize, event: Event<T>) -> Result<(), String> {
        match event {
            Event::Outputs(items) => inner
                .out
                .write(&items)
                .map_err(|e| format!("output sink failed (input {input}): {e}")),
            Event::DeadLetters(items) => inner
                .dlq
                .write(&items)
                .map_err(|e| format!("dead-letter sink failed: {e}")),
            Event::Barrier(id) => match inner.aligner.on_barrier(input, id) {
                Ok(Alignment::Pending) => Ok(()),
                Ok(Alignment::Aligned(id)) => {
                    weir_actors::crash_point!("sink-before-commit");
                    let out = inner
                        .out
                        .commit()
                        .map_err(|e| format!("committing the output sink: {e}"))?;
                    let dlq = inner
                        .dlq
                        .commit()
                        .map_err(|e| format!("committing the dead-letter sink: {e}"))?;
                    inner.aligned = (out, dlq);
                    let mut lengths = BTreeMap::new();
                    if let Some(len) = out {
                        lengths.insert(OUTPUT_SINK.to_string(), len);
                    }
                    if let Some(len) = dlq {
                        lengths.insert(DEAD_LETTER_SINK.to_string(), len);
                    }
                    if let Some(c) = &self.coordinator {
                        c.sinks_done(id, lengths);
                    }
                    Ok(())
                }
                Err(e) => Err(format!("barrier protocol: {e}")),
            },
        }
    }
}

impl<K: Send + 'static, T: Send + 'static> Outlet<K, T> for SinkOutlet<T> {
    fn outputs(&self, partition: u32, items: Vec<(K, T)>) {
        // The embedded sinks write values only.
        let values = items.into_iter().map(|(_, t)| t).collect();
        self.push(partition as usize, Event::Outputs(values));
    }

    fn dead_letters(&self, partition: u32, items: Vec<DeadLetter>) {
        self.push(partition as usize, Event::DeadLetters(items));
    }

    fn barrier(&self, partition: u32, id: u64) {
        self.push(partition as usize, Event::Barrier(id));
    }

    fn checkpointed(&self, checkpoint: PartitionCheckpoint) {
        if let Some(c) = &self.coordinator {
            c.partition_done(checkpoint);
        }
    }

    fn failed(&self, partition: u32, error: &weir_actors::Error) {
        self.fail(format!("partition {partition} failed: {error}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink recording what it got and the lengths it committed.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u32>, Vec<usize>)>>);

    impl Sink<u32> for Recorder {
        fn write(&mut self, items: &[u32]) -> std::io::Result<()> {
            self.0.lock().expect("lock").0.extend_from_slice(items);
            Ok(())
        }
        fn commit(&mut self) -> std::io::Result<Option<u64>> {
            let mut g = self.0.lock().expect("lock");
            let n = g.0.len();
            g.1.push(n);
            Ok(Some(n as u64))
        }
    }

    #[test]
    fn outputs_after_a_barrier_wait_until_it_aligns() {
        let rec = Recorder::default();
        let outlet = SinkOutlet::new(
            Box::new(rec.clone()),
            Box::new(crate::sink::Discard),
            2,
            None,
        );
        outlet.outputs(0, vec![((), 1)]);
        Outlet::<(), u32>::barrier(&outlet, 0, 1);
        outlet.outputs(0, vec![((), 2)]); // after partition 0's barrier: held
        outlet.outputs(1, vec![((), 3)]);
        assert_eq!(rec.0.lock().expect("lock").0, vec![1, 3]);
        Outlet::<(), u32>::barrier(&outlet, 1, 1);
        outlet.feed_barrier(1); // aligned: commit sees 1 and 3 only
        let g = rec.0.lock().expect("lock");
        assert_eq!(
            g.1,
            vec![2],
            "committed length covers records before the barrier"
        );
        assert_eq!(g.0, vec![1, 3, 2], "held output released after the commit");
        drop(g);
        assert!(!outlet.has_failed());
    }

    #[test]
    fn a_second_barrier_queues_behind_the_first() {
        let rec = Recorder::default();
        let outlet = SinkOutlet::new(
            Box::new(rec.clone()),
            Box::new(crate::sink::Discard),
            1,
            None,
        );
        Outlet::<(), u32>::barrier(&outlet, 0, 1);
        outlet.outputs(0, vec![((), 7)]);
        Outlet::<(), u32>::barrier(&outlet, 0, 2);
        outlet.outputs(0, vec![((), 8)]);
        outlet.feed_barrier(1);
        outlet.feed_barrier(2);
        let g = rec.0.lock().expect("lock");
        assert_eq!(g.1, vec![0, 1]);
        assert_eq!(g.0, vec![7, 8]);
    }
}
