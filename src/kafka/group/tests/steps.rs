//! The model's steps: each event applied to the machine and to the model,
//! with the invariants checked on the actions it returns.

use super::*;

impl World {
    /// The worker's assign path: a new owner epoch, a restore, an actor,
    /// a seek. Partitions it owns already are left as they are (a group
    /// may hand out a partition twice).
    pub(super) fn assign(&mut self, ps: &[i32]) -> Result<(), TestCaseError> {
        for &p in ps {
            if self.m.owns(p) {
                continue;
            }
            let epoch = self.take_epoch(p);
            let position = self.newest_eligible(p).map(|m| m.position);
            let generation = self.m.assigned(p, position, epoch * STRIDE + 1);
            let g = self.g(generation);
            prop_assert!(self.current.insert(p, g).is_none());
            self.gens.insert(
                g,
                Gen {
                    partition: p,
                    polled: BTreeSet::new(),
                    delivered: BTreeSet::new(),
                    mailbox: VecDeque::new(),
                    epoch,
                },
            );
            // The next owner starts at or before the first record a
            // checkpoint does not cover.
            let start = position.unwrap_or(0);
            let done = self.processed.entry(p).or_default();
            for o in 0..start {
                prop_assert!(
                    done.contains(&o),
                    "partition {p} resumes at {start} but {o} was never processed"
                );
            }
            self.consumer.insert(p, start);
            self.paused.remove(&p);
        }
        self.apply()
    }

    pub(super) fn poll(&mut self, n: u8) -> Result<(), TestCaseError> {
        for _ in 0..n {
            let next = self
                .consumer
                .iter()
                .filter(|(p, at)| !self.paused.contains(p) && **at < self.logs[p])
                .map(|(&p, &at)| (p, at))
                .min_by_key(|&(p, at)| (at, p));
            let Some((p, offset)) = next else {
                break;
            };
            self.consumer.insert(p, offset + 1);
            let ok = decodes(offset);
            if self.m.record(p, offset, ok.then_some(())) {
                let g = self.current[&p];
                self.gens.get_mut(&g).expect("live").polled.insert(offset);
                if !ok {
                    self.processed.entry(p).or_default().insert(offset);
                }
            }
        }
        self.apply()
    }

    /// One message of one live actor (chosen by `pick`).
    pub(super) fn actor(&mut self, pick: u8) -> Result<(), TestCaseError> {
        let busy: Vec<u64> = self
            .gens
            .iter()
            .filter(|(_, g)| !g.mailbox.is_empty())
            .map(|(&k, _)| k)
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        let g = busy[pick as usize % busy.len()];
        self.actor_step(g)
    }

    pub(super) fn actor_step(&mut self, g: u64) -> Result<(), TestCaseError> {
        let asg = self.gens.get_mut(&g).expect("live");
        let p = asg.partition;
        let generation = g - self.base;
        match asg.mailbox.pop_front() {
            None => {}
            Some(Msg::Batch(offsets)) => {
                self.processed.entry(p).or_default().extend(offsets);
                self.inbox.push_back(Told::BatchDone(p, generation));
            }
            Some(Msg::Barrier { id, position }) => {
                let done = self.processed.entry(p).or_default();
                for o in 0..position {
                    prop_assert!(
                        done.contains(&o),
                        "checkpoint {id} at {position} of partition {p} covers {o}, never processed"
                    );
                }
                self.inbox
                    .push_back(Told::Checkpointed(p, generation, id, position));
            }
        }
        self.apply()
    }

    /// One actor message reaches the poll thread.
    pub(super) fn told(&mut self) -> Result<(), TestCaseError> {
        match self.inbox.pop_front() {
            None => {}
            Some(Told::BatchDone(p, generation)) => self.m.batch_done(p, generation),
            Some(Told::Checkpointed(p, generation, id, position))
                if self.m.checkpointed(p, generation, id) =>
            {
                let g = self.g(generation);
                prop_assert_eq!(
                    self.current.get(&p),
                    Some(&g),
                    "an ended assignment uploads"
                );
                self.uploads.push_back((p, generation, id, position));
            }
            Some(Told::Checkpointed(..)) => {}
        }
        self.apply()
    }

    /// Lets every actor message, upload and outcome through.
    pub(super) fn drain(&mut self) -> Result<(), TestCaseError> {
        while !self.inbox.is_empty() || !self.uploads.is_empty() || !self.dones.is_empty() {
            while !self.inbox.is_empty() {
                self.told()?;
            }
            while !self.uploads.is_empty() {
                self.upload(Fate::Complete);
            }
            while !self.dones.is_empty() {
                self.done()?;
            }
        }
        Ok(())
    }

    pub(super) fn upload(&mut self, fate: Fate) {
        let Some((partition, generation, id, position)) = self.uploads.pop_front() else {
            return;
        };
        let g = self.g(generation);
        let outcome = if !self.m.is_current(partition, generation) {
            Outcome::Failed("the partition was released".into())
        } else if self.gens[&g].epoch != self.epoch(partition) {
            Outcome::Fenced("superseded".into())
        } else {
            match fate {
                Fate::Complete => {
                    self.store.entry(partition).or_default().push(Manifest {
                        generation: g,
                        id,
                        position,
                    });
                    Outcome::Complete
                }
                Fate::Failed => Outcome::Failed("store unavailable".into()),
                Fate::Fatal => Outcome::Fatal("outputs lost".into()),
            }
        };
        self.dones.push_back(Done {
            partition,
            generation,
            id,
            position,
            outcome,
        });
    }

    pub(super) fn done(&mut self) -> Result<(), TestCaseError> {
        if let Some(d) = self.dones.pop_front() {
            self.m.done(d);
        }
        self.apply()
    }

    pub(super) fn commit(&mut self, ok: bool) -> Result<(), TestCaseError> {
        let offsets = self.m.take_commit();
        for &(p, o) in &offsets {
            let g = self.current.get(&p).copied();
            prop_assert!(g.is_some(), "commit for partition {p}, not owned");
            let covered = self.store.get(&p).is_some_and(|ms| {
                ms.iter()
                    .any(|m| Some(m.generation) == g && m.position == o)
            });
            prop_assert!(
                covered,
                "offset {o} of partition {p} committed without its manifest"
            );
        }
        if ok {
            for &(p, o) in &offsets {
                self.committed.insert(p, o);
            }
            self.m.committed(&offsets);
        }
        Ok(())
    }

    pub(super) fn revoke(&mut self, mask: u8, lost: bool, wait: u8) -> Result<(), TestCaseError> {
        let ps: Vec<i32> = (0..PARTITIONS)
            .filter(|p| mask & (1 << p) != 0 && self.consumer.contains_key(p))
            .collect();
        for p in &ps {
            self.consumer.remove(p);
        }
        let mut waiting = self.m.revoke(&ps, !lost);
        self.apply()?;
        // The callback waits for the final checkpoints, for a while.
        for _ in 0..wait {
            waiting.retain(|&p, &mut id| self.m.awaits(p, id));
            if waiting.is_empty() {
                break;
            }
            let gens: Vec<u64> = waiting
                .keys()
                .filter_map(|p| self.current.get(p).copied())
                .collect();
            for g in gens {
                while self.gens.get(&g).is_some_and(|g| !g.mailbox.is_empty()) {
                    self.actor_step(g)?;
                }
            }
            self.drain()?;
        }
        if !lost && self.m.failure().is_none() {
            self.commit(true)?;
        }
        self.m.release(&ps, lost);
        self.apply()
    }

    pub(super) fn fence(&mut self, p: i32) {
        if self.current.contains_key(&p) {
            self.take_epoch(p);
        }
    }

    /// The process dies: only the store, the logs and the group's
    /// committed offsets remain.
    pub(super) fn crash(&mut self) {
        self.base += 1_000_000;
        self.m = Group::new(limits());
        self.consumer.clear();
        self.paused.clear();
        self.gens.clear();
        self.current.clear();
        self.inbox.clear();
        self.uploads.clear();
        self.dones.clear();
    }

    pub(super) fn run(&mut self, s: &Step) -> Result<(), TestCaseError> {
        match s {
            Step::Poll(n) => self.poll(*n),
            Step::Actor(pick) => self.actor(*pick),
            Step::Upload(fate) => {
                self.upload(fate.clone());
                Ok(())
            }
            Step::Done => self.done(),
            Step::Inbox => self.told(),
            Step::Tick { checkpoint } => {
                self.m.tick(self.now, *checkpoint);
                self.apply()
            }
            Step::Commit { ok } => self.commit(*ok),
            Step::Assign(mask) => {
                let ps: Vec<i32> = (0..PARTITIONS).filter(|p| mask & (1 << p) != 0).collect();
                for &p in &ps {
                    self.consumer.entry(p).or_insert(0);
                }
                self.assign(&ps)
            }
            Step::Revoke { mask, lost, wait } => self.revoke(*mask, *lost, *wait),
            Step::Fence(p) => {
                self.fence(*p as i32);
                Ok(())
            }
            Step::Crash => {
                self.crash();
                Ok(())
            }
            Step::Grow(p, n) => {
                *self.logs.get_mut(&(*p as i32)).expect("partition") += *n as i64;
                Ok(())
            }
            Step::Elapse => {
                self.now += limits().reacquire_after;
                Ok(())
            }
        }
    }

    /// Faults stop: the group assigns everything, uploads succeed. Every
    /// partition must end processed, checkpointed and committed to its
    /// log's end.
    pub(super) fn settle(&mut self) -> Result<(), TestCaseError> {
        let all: Vec<i32> = (0..PARTITIONS).collect();
        for round in 0..200 {
            for &p in &all {
                if let std::collections::btree_map::Entry::Vacant(e) = self.consumer.entry(p) {
                    e.insert(0);
                    self.assign(&[p])?;
                }
            }
            self.poll(50)?;
            self.m.tick(self.now, true);
            self.apply()?;
            let gens: Vec<u64> = self.gens.keys().copied().collect();
            for g in gens {
                while self.gens.get(&g).is_some_and(|g| !g.mailbox.is_empty()) {
                    self.actor_step(g)?;
                }
            }
            self.drain()?;
            self.commit(true)?;
            if round % 10 == 9 {
                self.now += limits().reacquire_after;
            }
            if all
                .iter()
                .all(|p| self.committed.get(p) == Some(&self.logs[p]))
            {
                return Ok(());
            }
        }
        prop_assert!(
            false,
            "not settled: committed {:?}, logs {:?}",
            self.committed,
            self.logs
        );
        Ok(())
    }
}
