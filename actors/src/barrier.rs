//! Barrier alignment for an operator with several inputs, as a sans-IO type.
//!
//! Checkpoint barriers flow through every input in order with the records.
//! An operator with several inputs may snapshot for checkpoint `n` only when
//! barrier `n` has arrived on *every* input; meanwhile, an input that already
//! delivered barrier `n` is blocked: what it sends next belongs after the
//! checkpoint and must wait. [`Aligner`] tracks that state; the caller holds
//! the blocked inputs' data and replays it once the barrier is aligned.
//!
//! Invariants: barrier ids strictly increase per input; alignment of `n`
//! completes exactly once, when the last input delivers `n`.

/// What a barrier arrival did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Other inputs have not delivered this barrier yet.
    Pending,
    /// Every input delivered barrier `n`: snapshot now, then unblock.
    Aligned(u64),
}

/// A protocol violation: a barrier out of order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlignError {
    #[error("input {input} is out of range ({inputs} inputs)")]
    NoSuchInput { input: usize, inputs: usize },
    #[error("input {input} delivered barrier {got} while barrier {current} is being aligned")]
    OutOfOrder {
        input: usize,
        got: u64,
        current: u64,
    },
    #[error("input {input} delivered barrier {got} after barrier {last} was aligned")]
    Stale { input: usize, got: u64, last: u64 },
    #[error("input {input} is blocked: it already delivered barrier {current}")]
    Blocked { input: usize, current: u64 },
}

/// Aligns barriers across `inputs` inputs.
#[derive(Debug, Clone)]
pub struct Aligner {
    arrived: Vec<bool>,
    current: Option<u64>,
    waiting: usize,
    last_aligned: Option<u64>,
}

impl Aligner {
    /// An aligner over `inputs` inputs (at least one).
    pub fn new(inputs: usize) -> Self {
        let inputs = inputs.max(1);
        Self {
            arrived: vec![false; inputs],
            current: None,
            waiting: inputs,
            last_aligned: None,
        }
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.arrived.len()
    }

    /// The barrier being aligned, if any.
    pub fn current(&self) -> Option<u64> {
        self.current
    }

    /// The last barrier aligned.
    pub fn last_aligned(&self) -> Option<u64> {
        self.last_aligned
    }

    /// Whether `input` already delivered the barrier being aligned (its
    /// further data must wait until alignment completes).
    pub fn is_blocked(&self, input: usize) -> bool {
        self.current.is_some() && self.arrived.get(input).copied().unwrap_or(false)
    }

    /// Barrier `id` arrived on `input`.
    pub fn on_barrier(&mut self, input: usize, id: u64) -> Result<Alignment, AlignError> {
        let inputs = self.arrived.len();
        if input >= inputs {
            return Err(AlignError::NoSuchInput { input, inputs });
        }
        if let Some(last) = self.last_aligned
            && id <= last
        {
            return Err(AlignError::Stale {
                input,
                got: id,
                last,
            });
        }
        match self.current {
            Some(current) if current != id => {
                return Err(if self.arrived[input] {
                    AlignError::Blocked { input, current }
                } else {
                    AlignError::OutOfOrder {
                        input,
                        got: id,
                        current,
                    }
                });
            }
            Some(current) if self.arrived[input] => {
                return Err(AlignError::Blocked { input, current });
            }
            _ => {}
        }
        self.current = Some(id);
        self.arrived[input] = true;
        self.waiting -= 1;
        if self.waiting > 0 {
            return Ok(Alignment::Pending);
        }
        self.arrived.iter_mut().for_each(|a| *a = false);
        self.waiting = inputs;
        self.current = None;
        self.last_aligned = Some(id);
        Ok(Alignment::Aligned(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_when_every_input_delivered() {
        let mut a = Aligner::new(3);
        assert_eq!(a.on_barrier(1, 7), Ok(Alignment::Pending));
        assert!(a.is_blocked(1));
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(0, 7), Ok(Alignment::Pending));
        assert_eq!(a.on_barrier(2, 7), Ok(Alignment::Aligned(7)));
        assert!(!a.is_blocked(1));
        assert_eq!(a.last_aligned(), Some(7));
        assert_eq!(a.current(), None);
    }

    #[test]
    fn single_input_aligns_at_once() {
        let mut a = Aligner::new(1);
        assert_eq!(a.on_barrier(0, 1), Ok(Alignment::Aligned(1)));
        assert_eq!(a.on_barrier(0, 2), Ok(Alignment::Aligned(2)));
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut a = Aligner::new(2);
        assert_eq!(a.on_barrier(0, 5), Ok(Alignment::Pending));
        assert!(matches!(
            a.on_barrier(0, 5),
            Err(AlignError::Blocked { .. })
        ));
        assert!(matches!(
            a.on_barrier(0, 6),
            Err(AlignError::Blocked { .. })
        ));
        assert!(matches!(
            a.on_barrier(1, 6),
            Err(AlignError::OutOfOrder { .. })
        ));
        assert!(matches!(
            a.on_barrier(2, 5),
            Err(AlignError::NoSuchInput { .. })
        ));
        assert_eq!(a.on_barrier(1, 5), Ok(Alignment::Aligned(5)));
        assert!(matches!(a.on_barrier(1, 4), Err(AlignError::Stale { .. })));
        assert!(matches!(a.on_barrier(0, 5), Err(AlignError::Stale { .. })));
    }
}
