//! The group state machine driven by random event sequences against a
//! model of the broker (growing logs, a consumer with fetch positions and
//! pauses, joins, revokes, lost and duplicate assignments), the actors
//! (FIFO mailboxes that process batches and barriers when scheduled), the
//! upload thread (slow, failing, fenced or fatal uploads) and the snapshot
//! store (owner epochs with seals; restore picks the newest eligible
//! manifest). A failed worker is a crash: everything but the store, the
//! logs and the committed offsets is lost, and the group assigns anew.
//!
//! Invariants checked on every action, then liveness: once the faults
//! stop, every partition is read, processed, checkpointed and committed to
//! its log's end.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

mod steps;

const PARTITIONS: i32 = 3;
const STRIDE: u64 = 1_000_000_000;

/// A queue of offsets (the model's records carry nothing else).
#[derive(Default, Debug)]
struct Offsets(VecDeque<i64>);

impl Queue for Offsets {
    type Item<'a> = ();
    type Batch = Vec<i64>;

    fn push(&mut self, offset: i64, _: ()) {
        self.0.push_back(offset);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn first(&self) -> Option<i64> {
        self.0.front().copied()
    }
    fn take(&mut self, n: usize) -> Vec<i64> {
        self.0.drain(..n).collect()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Whether the record at `offset` decodes (some do not: dead letters).
fn decodes(offset: i64) -> bool {
    offset % 7 != 3
}

#[derive(Debug, Clone)]
enum Fate {
    Complete,
    Failed,
    Fatal,
}

#[derive(Debug, Clone)]
enum Step {
    /// The consumer returns up to this many records.
    Poll(u8),
    /// One actor handles one message.
    Actor(u8),
    /// The upload thread finishes one checkpoint.
    Upload(Fate),
    /// One upload outcome reaches the poll thread.
    Done,
    /// One message from an actor reaches the poll thread.
    Inbox,
    Tick {
        checkpoint: bool,
    },
    Commit {
        ok: bool,
    },
    /// The group assigns these partitions (a bit mask); some may be
    /// assigned already.
    Assign(u8),
    /// The group revokes these; `wait` bounds the rounds the final
    /// checkpoints get.
    Revoke {
        mask: u8,
        lost: bool,
        wait: u8,
    },
    /// Another worker takes over this partition's checkpoints.
    Fence(u8),
    /// The worker process dies.
    Crash,
    /// Records are appended to a partition.
    Grow(u8, u8),
    /// Time passes beyond the reacquire delay.
    Elapse,
}

fn step() -> impl Strategy<Value = Step> {
    let fate = prop_oneof![
        6 => Just(Fate::Complete),
        2 => Just(Fate::Failed),
        1 => Just(Fate::Fatal),
    ];
    prop_oneof![
        8 => (1u8..20).prop_map(Step::Poll),
        8 => any::<u8>().prop_map(Step::Actor),
        4 => fate.prop_map(Step::Upload),
        4 => Just(Step::Done),
        6 => Just(Step::Inbox),
        6 => any::<bool>().prop_map(|checkpoint| Step::Tick { checkpoint }),
        3 => any::<bool>().prop_map(|ok| Step::Commit { ok }),
        3 => (1u8..8).prop_map(Step::Assign),
        2 => (1u8..8, any::<bool>(), 0u8..6)
            .prop_map(|(mask, lost, wait)| Step::Revoke { mask, lost, wait }),
        1 => (0u8..3).prop_map(Step::Fence),
        1 => Just(Step::Crash),
        3 => (0u8..3, 1u8..20).prop_map(|(p, n)| Step::Grow(p, n)),
        1 => Just(Step::Elapse),
    ]
}

/// What an actor tells the poll thread.
enum Told {
    BatchDone(i32, u64),
    Checkpointed(i32, u64, u64, i64),
}

enum Msg {
    Batch(Vec<i64>),
    Barrier { id: u64, position: i64 },
}

/// One assignment as the model sees it: its actor's mailbox and what it
/// was given.
struct Gen {
    partition: i32,
    polled: BTreeSet<i64>,
    delivered: BTreeSet<i64>,
    mailbox: VecDeque<Msg>,
    epoch: u64,
}

struct Manifest {
    generation: u64,
    id: u64,
    position: i64,
}

struct World {
    m: Group<Offsets>,
    now: Instant,
    /// Each partition's log end (offsets `0..end`).
    logs: BTreeMap<i32, i64>,
    /// The consumer's assignment: partition -> fetch position.
    consumer: BTreeMap<i32, i64>,
    paused: BTreeSet<i32>,
    gens: BTreeMap<u64, Gen>,
    /// The live generation of each partition, as the actions told.
    current: BTreeMap<i32, u64>,
    /// Messages from actors on their way to the poll thread (they may
    /// arrive after the actor's assignment ended).
    inbox: VecDeque<Told>,
    uploads: VecDeque<(i32, u64, u64, i64)>,
    dones: VecDeque<Done>,
    /// Per partition: manifests written, owner epochs and their seals.
    store: BTreeMap<i32, Vec<Manifest>>,
    seals: BTreeMap<i32, Vec<u64>>,
    /// Offsets processed by some actor, or dead-lettered when read.
    processed: BTreeMap<i32, BTreeSet<i64>>,
    committed: BTreeMap<i32, i64>,
    /// Generations are numbered per process; the model numbers them
    /// across crashes.
    base: u64,
}

fn limits() -> Limits {
    Limits {
        max_batch: 3,
        max_buffered: 5,
        credits: 2,
        reacquire_after: Duration::from_secs(20),
    }
}

impl World {
    fn new() -> Self {
        Self {
            m: Group::new(limits()),
            now: Instant::now(),
            logs: (0..PARTITIONS).map(|p| (p, 5)).collect(),
            consumer: BTreeMap::new(),
            paused: BTreeSet::new(),
            gens: BTreeMap::new(),
            current: BTreeMap::new(),
            inbox: VecDeque::new(),
            uploads: VecDeque::new(),
            dones: VecDeque::new(),
            store: BTreeMap::new(),
            seals: BTreeMap::new(),
            processed: BTreeMap::new(),
            committed: BTreeMap::new(),
            base: 0,
        }
    }

    fn g(&self, generation: u64) -> u64 {
        self.base + generation
    }

    /// The newest manifest a restore may use: one of epoch `e` only if
    /// its id is at most the seal of every later epoch.
    fn newest_eligible(&self, p: i32) -> Option<&Manifest> {
        let seals = self.seals.get(&p).map(Vec::as_slice).unwrap_or_default();
        self.store
            .get(&p)?
            .iter()
            .filter(|m| {
                let epoch = (m.id / STRIDE) as usize;
                seals.iter().skip(epoch).all(|&seal| m.id <= seal)
            })
            .max_by_key(|m| m.id)
    }

    /// A new owner epoch for `p`: its seal is the highest id present.
    fn take_epoch(&mut self, p: i32) -> u64 {
        let highest = self
            .store
            .get(&p)
            .and_then(|ms| ms.iter().map(|m| m.id).max())
            .unwrap_or(0);
        let seals = self.seals.entry(p).or_default();
        seals.push(highest);
        seals.len() as u64
    }

    fn epoch(&self, p: i32) -> u64 {
        self.seals.get(&p).map_or(0, |s| s.len() as u64)
    }

    fn apply(&mut self) -> Result<(), TestCaseError> {
        for a in self.m.actions() {
            match a {
                Action::Deliver {
                    partition,
                    generation,
                    batch,
                    end,
                } => {
                    let g = self.g(generation);
                    prop_assert_eq!(
                        self.current.get(&partition),
                        Some(&g),
                        "deliver to an ended generation"
                    );
                    let asg = self.gens.get_mut(&g).expect("known generation");
                    for o in &batch {
                        prop_assert!(asg.polled.contains(o), "delivered {o} never polled");
                        prop_assert!(asg.delivered.insert(*o), "delivered {o} twice");
                    }
                    prop_assert!(batch.windows(2).all(|w| w[0] < w[1]));
                    prop_assert!(batch.last().is_some_and(|&l| l < end));
                    asg.mailbox.push_back(Msg::Batch(batch));
                }
                Action::Barrier {
                    partition,
                    generation,
                    id,
                    position,
                } => {
                    let g = self.g(generation);
                    prop_assert_eq!(
                        self.current.get(&partition),
                        Some(&g),
                        "barrier to an ended generation"
                    );
                    let asg = self.gens.get_mut(&g).expect("known generation");
                    // Every record of this assignment before the barrier's
                    // position is in the mailbox ahead of it.
                    for o in asg.polled.range(..position) {
                        prop_assert!(
                            asg.delivered.contains(o) || !decodes(*o),
                            "barrier at {position} of partition {partition} passes record {o}, which was never handed over"
                        );
                    }
                    asg.mailbox.push_back(Msg::Barrier { id, position });
                }
                Action::Skipped {
                    partition,
                    from,
                    to,
                } => {
                    prop_assert!(
                        false,
                        "partition {partition} skipped {from}..{to} of a gapless log"
                    );
                }
                Action::CaughtUp { partition, offset } => {
                    let g = self.current[&partition];
                    let done = &self.processed.entry(partition).or_default();
                    for o in self.gens[&g].polled.range(..offset) {
                        prop_assert!(
                            done.contains(o),
                            "caught up to {offset} but {o} is not processed"
                        );
                    }
                }
                Action::NothingToCheckpoint { .. } => {}
                Action::Pause(ps) => self.paused.extend(ps),
                Action::Resume(ps) => {
                    for p in ps {
                        self.paused.remove(&p);
                    }
                }
                Action::Stop {
                    partition,
                    generation,
                    ..
                } => {
                    let g = self.g(generation);
                    prop_assert_eq!(self.current.remove(&partition), Some(g));
                    // The actor stops; what its mailbox held is never
                    // processed.
                    self.gens.remove(&g);
                }
                Action::Reacquire(ps) => {
                    let mine: Vec<i32> = ps
                        .into_iter()
                        .filter(|p| self.consumer.contains_key(p))
                        .collect();
                    self.assign(&mine)?;
                }
            }
        }
        if self.m.failure().is_some() {
            self.crash();
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn random_group_histories_keep_the_invariants(steps in prop::collection::vec(step(), 1..80)) {
        let mut w = World::new();
        for s in &steps {
            w.run(s)?;
        }
        w.settle()?;
        for p in 0..PARTITIONS {
            let done = &w.processed[&p];
            for o in 0..w.logs[&p] {
                prop_assert!(done.contains(&o), "partition {p}: offset {o} never processed");
            }
        }
    }
}

#[test]
fn a_revoke_drops_queued_records_and_its_final_checkpoint_starts_at_them() {
    let mut m: Group<Offsets> = Group::new(limits());
    let g = m.assigned(0, Some(10), STRIDE + 1);
    for o in 10..20 {
        assert!(m.record(0, o, Some(())));
    }
    m.tick(Instant::now(), false);
    // Two credits of three records each were handed over.
    let delivered: usize = m
        .actions()
        .iter()
        .map(|a| match a {
            Action::Deliver { batch, .. } => batch.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(delivered, 6);
    let waiting = m.revoke(&[0], true);
    assert_eq!(waiting, BTreeMap::from([(0, STRIDE + 1)]));
    let actions = m.actions();
    assert!(
        matches!(actions[..], [Action::Barrier { partition: 0, generation, position: 16, .. }] if generation == g),
        "{actions:?}"
    );
    m.done(Done {
        partition: 0,
        generation: g,
        id: STRIDE + 1,
        position: 16,
        outcome: Outcome::Complete,
    });
    assert!(!m.awaits(0, STRIDE + 1));
    assert_eq!(m.take_commit(), [(0, 16)]);
    m.release(&[0], false);
    assert!(matches!(
        m.actions()[..],
        [Action::Stop {
            partition: 0,
            lost: false,
            ..
        }]
    ));
    assert!(
        m.take_commit().is_empty(),
        "an ended assignment commits nothing"
    );
}

#[test]
fn a_fenced_partition_is_released_then_offered_back() {
    let mut m: Group<Offsets> = Group::new(limits());
    let now = Instant::now();
    let g = m.assigned(2, Some(0), STRIDE + 1);
    m.done(Done {
        partition: 2,
        generation: g,
        id: STRIDE + 1,
        position: 0,
        outcome: Outcome::Fenced("taken over".into()),
    });
    m.tick(now, false);
    assert!(matches!(
        m.actions()[..],
        [Action::Stop {
            partition: 2,
            lost: true,
            ..
        }]
    ));
    assert!(!m.owns(2));
    m.tick(now + Duration::from_secs(5), false);
    assert!(m.actions().is_empty());
    m.tick(now + limits().reacquire_after, false);
    assert!(matches!(&m.actions()[..], [Action::Reacquire(ps)] if ps == &[2]));
}

#[test]
fn a_partition_that_goes_back_stops_the_worker() {
    let mut m: Group<Offsets> = Group::new(limits());
    m.assigned(1, Some(50), 1);
    m.record(1, 50, Some(()));
    m.record(1, 40, Some(()));
    let why = m.failure().expect("failed");
    assert!(why.contains("went back from offset 51 to 40"), "{why}");
}
