//! A partition's event-time watermark, as a small sans-IO type.
//!
//! Invariants:
//! - the watermark never goes backwards;
//! - with bounded out-of-orderness `d`, it is `max event time seen - d`;
//! - once the partition has seen no record for `idle_timeout` of processing
//!   time, it advances with the processing clock from where it stood, so
//!   windows close when input stops;
//! - at the end of a finite input it jumps to `i64::MAX`, so every event-time
//!   timer fires.
//!
//! A record is late when its event time is at or below the watermark as it
//! stood when the record arrived: a timer at `t` fires once the watermark
//! reaches `t`, so a record at `t` would arrive after it. The partition
//! asks [`Watermark::is_late`] before [`Watermark::observe`], so the record
//! that moves the watermark (to its own time, with no out-of-orderness) is
//! not late itself.

/// Tracks the watermark of one partition.
#[derive(Debug, Clone)]
pub struct Watermark {
    current: i64,
    max_seen: Option<i64>,
    out_of_orderness: Option<i64>,
    idle_timeout: Option<i64>,
    last_record_at: i64,
    idle_from: Option<(i64, i64)>,
}

impl Watermark {
    /// A watermark trailing the maximum event time by `out_of_orderness` ms
    /// (`None`: records never move it; only explicit advances do) and moving
    /// with processing time after `idle_timeout` ms without records
    /// (`None`: never).
    pub fn new(out_of_orderness: Option<i64>, idle_timeout: Option<i64>, now: i64) -> Self {
        Self {
            current: i64::MIN,
            max_seen: None,
            out_of_orderness,
            idle_timeout,
            last_record_at: now,
            idle_from: None,
        }
    }

    /// Resumes from a checkpointed watermark and maximum event time.
    pub fn restore(&mut self, current: i64, max_seen: Option<i64>) {
        self.current = self.current.max(current);
        self.max_seen = self.max_seen.max(max_seen);
    }

    /// Forgets the watermark and the largest event time seen, as if no
    /// record had come: for one restored from a checkpoint that a bound on
    /// event time would not have allowed. Every timer at or below it has
    /// fired already; the next records set it again.
    pub fn forget(&mut self) {
        self.current = i64::MIN;
        self.max_seen = None;
    }

    /// The current watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The largest event time seen.
    pub fn max_seen(&self) -> Option<i64> {
        self.max_seen
    }

    /// Whether a record at `ts` is late.
    pub fn is_late(&self, ts: i64) -> bool {
        ts <= self.current
    }

    /// A record arrived at processing time `now` (with event time `ts`).
    /// Returns whether the watermark moved.
    pub fn observe(&mut self, ts: Option<i64>, now: i64) -> bool {
        self.last_record_at = now;
        self.idle_from = None;
        let Some(ts) = ts else { return false };
        if self.max_seen.is_none_or(|m| ts > m) {
            self.max_seen = Some(ts);
            if let Some(d) = self.out_of_orderness {
                return self.advance_to(ts.saturating_sub(d));
            }
        }
        false
    }

    /// Processing time passed; advances an idle partition's watermark.
    /// Returns whether it moved.
    pub fn tick(&mut self, now: i64) -> bool {
        let Some(timeout) = self.idle_timeout else {
            return false;
        };
        if now.saturating_sub(self.last_record_at) < timeout || self.current == i64::MIN {
            return false;
        }
        let (since, base) = *self.idle_from.get_or_insert((now, self.current));
        self.advance_to(base.saturating_add(now - since))
    }

    /// Moves the watermark to `ts` if that is later. Returns whether it moved.
    pub fn advance_to(&mut self, ts: i64) -> bool {
        if ts > self.current {
            self.current = ts;
            true
        } else {
            false
        }
    }

    /// The input ended: every event-time timer may fire.
    pub fn finish(&mut self) -> bool {
        self.advance_to(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_max_event_time_and_never_regresses() {
        let mut w = Watermark::new(Some(5), None, 0);
        assert_eq!(w.current(), i64::MIN);
        assert!(w.observe(Some(100), 0));
        assert_eq!(w.current(), 95);
        assert!(!w.observe(Some(90), 0), "older event does not move it");
        assert_eq!(w.current(), 95);
        assert!(!w.is_late(96));
        assert!(w.is_late(95));
        assert!(w.observe(Some(110), 0));
        assert_eq!(w.current(), 105);
    }

    #[test]
    fn manual_mode_ignores_records() {
        let mut w = Watermark::new(None, None, 0);
        assert!(!w.observe(Some(100), 0));
        assert_eq!(w.current(), i64::MIN);
        assert!(w.advance_to(50));
        assert!(w.is_late(50));
        assert!(!w.is_late(51));
    }

    #[test]
    fn idle_partition_advances_with_processing_time() {
        let mut w = Watermark::new(Some(5), Some(1000), 0);
        w.observe(Some(100), 0);
        assert!(!w.tick(999), "not idle yet");
        assert_eq!(w.current(), 95);
        assert!(!w.tick(1000), "idle from here, no time passed");
        assert!(w.tick(1300));
        assert_eq!(w.current(), 395);
        // A new record ends idleness; the watermark does not go back.
        assert!(!w.observe(Some(200), 1400));
        assert_eq!(w.current(), 395);
        assert!(!w.tick(2000));
    }

    #[test]
    fn finish_moves_to_max() {
        let mut w = Watermark::new(Some(5), None, 0);
        w.observe(Some(1), 0);
        assert!(w.finish());
        assert_eq!(w.current(), i64::MAX);
    }
}
