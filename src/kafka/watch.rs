//! Watching each owned partition's input, so that a partition that cannot
//! make progress, or offsets the input skips, are never passed over in
//! silence.
//!
//! **Stalls.** librdkafka retries a fetch that fails without end: a batch
//! that does not decompress or fails its CRC, a broker error that repeats,
//! a leader that cannot be reached. The Rust binding hands such consumer
//! errors over without their partition, so the watch judges progress, not
//! errors. A partition is *behind* when no fetch has answered yet, or when
//! the broker's high watermark (from the client's statistics) is past both
//! the worker's read position and librdkafka's fetch position (which moves
//! past transaction markers the worker never sees). A partition that stays
//! behind, not paused for backpressure and with nothing queued for its
//! actor, while neither position moves for `stall_after` is *stalled*:
//! logged at WARN with the offset it is stuck at, counted, reported by
//! `weir_input_stalled_seconds`, and `/readyz` answers not ready. After
//! `stall_timeout` the worker stops with an error naming the topic,
//! partition and offset, so a restart or an operator looks at it.
//!
//! The watch only judges time it saw: a poll thread held up (a restore or
//! a revoke inside a rebalance callback) is not counted as a partition
//! making no progress, and a partition gives up only after it was reported
//! stalled.
//!
//! **Skips.** Offsets never go back, and a forward jump means offsets that
//! were never processed: either the position to resume from is older than
//! the log's start (retention removed the records: [`Skip::LogStart`],
//! told by the log start librdkafka saw in the fetch that jumped) or the
//! log has a hole (compaction, transaction markers, a broker that skipped
//! records: [`Skip::Gap`]). Either is logged at WARN with both offsets and
//! counted by `weir_input_skipped_records_total{reason}`. With
//! [`OnOffsetReset::Fail`] a log-start skip stops the worker instead; holes
//! are normal in compacted and transactional topics, so they never do.

use std::time::{Duration, Instant};

/// What a worker does when its input skips offsets it never processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnOffsetReset {
    /// Log at WARN, count, and go on from the first record there is.
    #[default]
    Earliest,
    /// Stop with an error naming the partition and both offsets.
    Fail,
}

impl std::str::FromStr for OnOffsetReset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(Self::Earliest),
            "fail" => Ok(Self::Fail),
            other => Err(format!(
                "unknown offset reset policy {other:?}: expected earliest or fail"
            )),
        }
    }
}

/// Why input offsets were skipped (the `reason` label). The discriminant
/// is the reason's place in [`Skip::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The position to resume from is older than the log's start.
    LogStart = 0,
    /// A hole inside the log.
    Gap = 1,
}

impl Skip {
    /// Every reason, in the order of the metric's series.
    pub const ALL: [Skip; 2] = [Skip::LogStart, Skip::Gap];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Skip::LogStart => "log_start",
            Skip::Gap => "gap",
        }
    }

    /// Why a read jumped from `next` (the offset expected) to a later one,
    /// given the log's start (`low`, -1 when unknown) as librdkafka last
    /// saw it.
    pub fn of(low: i64, next: i64) -> Skip {
        if low > next {
            Skip::LogStart
        } else {
            Skip::Gap
        }
    }

    /// What the WARN line and the error say.
    pub fn describe(self) -> &'static str {
        match self {
            Skip::LogStart => {
                "the position to resume from is older than the log's start (retention deleted \
                 records that were never processed)"
            }
            Skip::Gap => {
                "the input skipped offsets (compaction, transaction markers, or a broker that \
                 skipped records)"
            }
        }
    }
}

/// One partition's input as the client sees it (offsets are "next to
/// read"; -1: not known).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    /// After the last record the worker read (`None`: none yet, and no
    /// checkpoint to resume from).
    pub read: Option<i64>,
    /// librdkafka's fetch position.
    pub fetch: i64,
    /// The log's start, and the end a consumer can read to (the high
    /// watermark, or the last stable offset below open transactions).
    pub low: i64,
    pub high: i64,
    /// Paused for backpressure, or records queued for the actor: waiting on
    /// processing, not on input.
    pub waiting: bool,
}

impl Seen {
    /// Whether there are records to read that have not been read: no fetch
    /// has answered yet, or the high watermark is past every position.
    fn behind(&self) -> bool {
        self.high < 0 || self.high > self.read.unwrap_or(-1).max(self.fetch).max(self.low)
    }

    /// The offset the partition is at, to name in messages.
    pub fn offset(&self) -> String {
        match self.read {
            Some(at) => at.to_string(),
            None if self.fetch >= 0 => self.fetch.to_string(),
            None if self.low >= 0 => self.low.to_string(),
            None => "unknown (no fetch has answered)".into(),
        }
    }
}

/// A change in a partition's state the worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Behind with no progress for the stall time, for this long.
    Stalled(Duration),
    /// Progress again after this long.
    Recovered(Duration),
    /// Stalled past the stall timeout.
    GaveUp(Duration),
}

/// The watch over one owned partition's input.
#[derive(Debug)]
pub(crate) struct Watch {
    /// The furthest position seen (read or fetched; -1: none).
    furthest: i64,
    /// When the partition last made progress (or was not behind), and
    /// when it was last checked.
    since: Instant,
    checked: Instant,
    stalled: bool,
    /// A record was read since the partition was assigned.
    pub read_any: bool,
    /// When a gap was last logged, and gaps not logged since.
    gap_logged: Option<Instant>,
    gaps_quiet: u64,
}

/// Gaps (not log-start resets) are logged at most this often per
/// partition; compacted input has many.
const GAP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Checks further apart than this mean the poll thread was held up (a
/// restore or revoke in a rebalance callback): that time is not judged.
const HELD_UP: Duration = Duration::from_secs(2);

impl Watch {
    pub fn new(now: Instant) -> Self {
        Self {
            furthest: -1,
            since: now,
            checked: now,
            stalled: false,
            read_any: false,
            gap_logged: None,
            gaps_quiet: 0,
        }
    }

    /// Judges the partition at `now`.
    pub fn check(
        &mut self,
        now: Instant,
        seen: &Seen,
        stall_after: Duration,
        stall_timeout: Option<Duration>,
    ) -> Option<Change> {
        let furthest = seen.read.unwrap_or(-1).max(seen.fetch);
        let moved = furthest > self.furthest;
        self.furthest = self.furthest.max(furthest);
        let held_up = now.saturating_duration_since(self.checked) > HELD_UP;
        self.checked = now;
        let still = now.saturating_duration_since(self.since);
        if moved || seen.waiting || !seen.behind() {
            self.since = now;
            return std::mem::take(&mut self.stalled).then_some(Change::Recovered(still));
        }
        if held_up && !self.stalled {
            self.since = now;
            return None;
        }
        if self.stalled && stall_timeout.is_some_and(|t| still >= t) {
            return Some(Change::GaveUp(still));
        }
        if !self.stalled && still >= stall_after {
            self.stalled = true;
            return Some(Change::Stalled(still));
        }
        None
    }

    /// Whether a gap seen at `now` is logged: the first one, then one per
    /// [`GAP_LOG_EVERY`]; returns the gaps not logged since the last one.
    pub fn log_gap(&mut self, now: Instant) -> Option<u64> {
        if self
            .gap_logged
            .is_some_and(|t| now.saturating_duration_since(t) < GAP_LOG_EVERY)
        {
            self.gaps_quiet += 1;
            return None;
        }
        self.gap_logged = Some(now);
        Some(std::mem::take(&mut self.gaps_quiet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);
    const TIMEOUT: Option<Duration> = Some(Duration::from_secs(300));

    fn seen(read: Option<i64>, fetch: i64, high: i64) -> Seen {
        Seen {
            read,
            fetch,
            low: 0,
            high,
            waiting: false,
        }
    }

    /// Checks `seen` every second from the last check up to `secs`
    /// seconds after `t0` (as the poll loop does, more often); the last
    /// change reported.
    fn at(w: &mut Watch, t0: Instant, secs: u64, s: Seen) -> Option<Change> {
        let from = w.checked.saturating_duration_since(t0).as_secs() + 1;
        let mut last = None;
        for t in from.min(secs)..=secs {
            let now = t0 + Duration::from_secs(t);
            last = w.check(now, &s, AFTER, TIMEOUT).or(last);
        }
        last
    }

    #[test]
    fn a_partition_behind_without_progress_stalls_then_gives_up() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        let stuck = seen(Some(10), 10, 500);
        assert_eq!(at(&mut w, t0, 0, stuck), None);
        assert_eq!(at(&mut w, t0, 29, stuck), None);
        assert_eq!(
            at(&mut w, t0, 30, stuck),
            Some(Change::Stalled(Duration::from_secs(30)))
        );
        // Reported once, then nothing until the timeout.
        assert_eq!(at(&mut w, t0, 200, stuck), None);
        assert_eq!(
            at(&mut w, t0, 300, stuck),
            Some(Change::GaveUp(Duration::from_secs(300)))
        );
        // Progress: recovered, and the clock starts again.
        assert_eq!(
            at(&mut w, t0, 301, seen(Some(11), 11, 500)),
            Some(Change::Recovered(Duration::from_secs(301)))
        );
        assert_eq!(at(&mut w, t0, 330, seen(Some(11), 11, 500)), None);
        assert!(matches!(
            at(&mut w, t0, 331, seen(Some(11), 11, 500)),
            Some(Change::Stalled(_))
        ));
    }

    #[test]
    fn caught_up_waiting_or_moving_partitions_never_stall() {
        let t0 = Instant::now();
        for s in [
            // Read everything there is.
            seen(Some(500), 500, 500),
            // The fetch position is past the last record (transaction
            // markers at the end of the log).
            seen(Some(498), 500, 500),
            // An empty log that starts late.
            Seen {
                read: None,
                fetch: -1,
                low: 70,
                high: 70,
                waiting: false,
            },
            // Paused for backpressure.
            Seen {
                waiting: true,
                ..seen(Some(10), 10, 500)
            },
        ] {
            let mut w = Watch::new(t0);
            for secs in [0, 100, 1_000] {
                assert_eq!(at(&mut w, t0, secs, s), None, "{s:?}");
            }
        }
        // A slow partition that keeps moving.
        let mut w = Watch::new(t0);
        for secs in 0..1_000 {
            let s = seen(Some(secs as i64), secs as i64, 5_000);
            assert_eq!(at(&mut w, t0, secs, s), None);
        }
    }

    #[test]
    fn time_the_poll_thread_was_held_up_is_not_judged() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        let stuck = seen(Some(10), 10, 500);
        assert_eq!(at(&mut w, t0, 5, stuck), None);
        // A restore in a rebalance callback held the poll thread for 310 s:
        // neither a stall nor giving up.
        let later = t0 + Duration::from_secs(315);
        assert_eq!(w.check(later, &stuck, AFTER, TIMEOUT), None);
        // The clock starts at the next check.
        assert_eq!(at(&mut w, t0, 344, stuck), None);
        assert!(matches!(
            at(&mut w, t0, 345, stuck),
            Some(Change::Stalled(_))
        ));
        // A position that goes back (an invalid fetch position) is no
        // progress.
        assert_eq!(at(&mut w, t0, 346, seen(None, -1, 500)), None);
        assert!(matches!(
            at(&mut w, t0, 700, seen(Some(10), 10, 500)),
            Some(Change::GaveUp(_))
        ));
    }

    /// Generated histories of a partition checked at most 2 s apart:
    /// every report agrees with what the whole history says. A check
    /// *progresses* when the furthest position so far grows, the partition
    /// waits on processing, or it is not behind. Then: `Stalled` comes only
    /// after at least the stall time without progress, and in every run
    /// without progress that lasts the stall time it comes exactly once
    /// (when the run reaches it); `GaveUp` comes only in such a run, after
    /// its `Stalled`, at least the timeout after its last progress;
    /// `Recovered` comes exactly at the first progress after a `Stalled`.
    #[test]
    fn reports_agree_with_the_history_on_generated_input() {
        use proptest::prelude::*;
        let step = (
            0u64..=2_000,
            prop_oneof![Just(None), (0i64..40).prop_map(Some)],
            -1i64..40,
            -1i64..45,
            0i64..5,
            prop::bool::weighted(0.05),
        );
        let timeout = prop_oneof![Just(None), (1u64..20).prop_map(|s| Some(s * 1_000))];
        proptest!(|(steps in proptest::collection::vec(step, 1..400),
                    after_s in 1u64..10, timeout_ms in timeout)| {
            let after = Duration::from_secs(after_s);
            let timeout = timeout_ms.map(Duration::from_millis).map(|t| t.max(after));
            let t0 = Instant::now();
            let mut w = Watch::new(t0);
            let (mut now, mut furthest) = (t0, -1i64);
            // The time of the last progress, and whether the current run
            // without progress was reported stalled.
            let (mut last_progress, mut reported) = (t0, false);
            for (dt, read, fetch, high, low, waiting) in steps {
                now += Duration::from_millis(dt);
                let seen = Seen { read, fetch, low, high, waiting };
                let position = read.unwrap_or(-1).max(fetch);
                let behind = high < 0 || high > position.max(low);
                let progress = position > furthest || waiting || !behind;
                furthest = furthest.max(position);
                let change = w.check(now, &seen, after, timeout);
                let still = now - last_progress;
                if progress {
                    let want = reported.then_some(Change::Recovered(still));
                    prop_assert_eq!(change, want);
                    last_progress = now;
                    reported = false;
                    continue;
                }
                match change {
                    Some(Change::Stalled(d)) => {
                        prop_assert!(!reported && d == still && d >= after, "{change:?} {still:?}");
                        reported = true;
                    }
                    Some(Change::GaveUp(d)) => {
                        prop_assert!(reported && d == still);
                        prop_assert!(timeout.is_some_and(|t| d >= t), "{d:?} {timeout:?}");
                    }
                    Some(Change::Recovered(_)) => prop_assert!(false, "recovered without progress"),
                    None => {
                        prop_assert!(reported || still < after, "not reported after {still:?}");
                        prop_assert!(
                            !reported || timeout.is_none_or(|t| still < t),
                            "gave up too late at {still:?}"
                        );
                    }
                }
            }
        });
    }

    #[test]
    fn no_fetch_answer_at_all_is_a_stall() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        let none = Seen {
            read: Some(40),
            fetch: -1,
            low: -1,
            high: -1,
            waiting: false,
        };
        assert_eq!(at(&mut w, t0, 0, none), None);
        assert!(matches!(at(&mut w, t0, 31, none), Some(Change::Stalled(_))));
        assert_eq!(none.offset(), "40");
    }

    #[test]
    fn without_a_timeout_a_stall_never_gives_up() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        let stuck = seen(None, 0, 9);
        let mut changes = Vec::new();
        for secs in 0..10_000 {
            let now = t0 + Duration::from_secs(secs);
            changes.extend(w.check(now, &stuck, AFTER, None));
        }
        assert_eq!(changes, vec![Change::Stalled(Duration::from_secs(30))]);
        assert_eq!(stuck.offset(), "0");
    }

    #[test]
    fn skips_are_told_apart_by_the_log_start() {
        // A log that starts past the offset expected: retention.
        assert_eq!(Skip::of(150, 100), Skip::LogStart);
        assert_eq!(Skip::of(101, 100), Skip::LogStart);
        // A hole after the log's start (a transaction marker where a
        // checkpoint resumes, say), or no log start known.
        assert_eq!(Skip::of(0, 100), Skip::Gap);
        assert_eq!(Skip::of(100, 100), Skip::Gap);
        assert_eq!(Skip::of(-1, 100), Skip::Gap);
        assert_eq!("fail".parse(), Ok(OnOffsetReset::Fail));
        assert_eq!("earliest".parse(), Ok(OnOffsetReset::Earliest));
        let err = "latest".parse::<OnOffsetReset>().unwrap_err();
        assert!(err.contains("\"latest\"") && err.contains("earliest or fail"));
    }

    #[test]
    fn gaps_are_logged_at_most_every_ten_seconds() {
        let t0 = Instant::now();
        let mut w = Watch::new(t0);
        let mut logged = Vec::new();
        for ms in (0..25_000).step_by(500) {
            if let Some(quiet) = w.log_gap(t0 + Duration::from_millis(ms)) {
                logged.push((ms, quiet));
            }
        }
        assert_eq!(logged, vec![(0, 0), (10_000, 19), (20_000, 19)]);
    }
}
