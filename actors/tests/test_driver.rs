//! The runtime semantics, through the TestDriver: timers in both domains,
//! lateness, retries, poison records and passivation.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use weir_actors::{Context, CoreConfig, ProcessError, Processor, TestDriver, TimeDomain, Timer};

/// Sums values per key; flushes the sum on an event-time timer one second
/// after the first value, and pings on a processing-time timer.
#[derive(Default)]
struct Summer {
    ping_after_ms: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Sum {
    total: i64,
    count: u32,
}

impl Processor for Summer {
    type Key = String;
    type In = i64;
    type Out = String;
    type State = Sum;

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        s: &mut Sum,
        v: &i64,
    ) -> Result<(), ProcessError> {
        if *v < 0 {
            return Err(ProcessError::poison(format!("negative value {v}")));
        }
        if s.count == 0 {
            let at = ctx.timestamp().unwrap_or(0) + 1000;
            ctx.set_timer("flush", at, TimeDomain::EventTime);
            if let Some(after) = self.ping_after_ms {
                let at = ctx.processing_time() + after;
                ctx.set_timer("ping", at, TimeDomain::ProcessingTime);
            }
        }
        s.total += v;
        s.count += 1;
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        s: &mut Sum,
        t: Timer,
    ) -> Result<(), ProcessError> {
        match t.name.as_str() {
            "flush" => {
                ctx.emit(format!("{}:{}:{}", ctx.key(), s.total, s.count));
                *s = Sum::default();
                ctx.cancel_timer("ping");
            }
            _ => ctx.emit(format!("{}:ping@{}", ctx.key(), ctx.processing_time())),
        }
        Ok(())
    }
}

#[test]
fn event_time_timers_fire_only_through_the_watermark() {
    let mut t = TestDriver::new(Summer::default());
    t.push("a", 0, 1);
    t.push("a", 500, 2);
    t.push("b", 900, 5);
    // Records far in the future do not move a manual watermark.
    t.push("c", 10_000, 7);
    assert!(t.take_emitted().is_empty());
    t.advance_watermark_to(999);
    assert!(t.take_emitted().is_empty(), "a's timer is at 1000");
    t.advance_watermark_to(1000);
    assert_eq!(t.take_emitted(), vec!["a:3:2"]);
    t.advance_watermark_to(1900);
    assert_eq!(
        t.take_emitted_with_keys(),
        vec![("b".to_string(), "b:5:1".to_string())],
        "outputs carry the key they were emitted for"
    );
    assert_eq!(t.state("a"), Sum::default());
    assert_eq!(t.pending_timers(), 1);
    t.finish();
    assert_eq!(t.take_emitted(), vec!["c:7:1"]);
}

#[test]
fn processing_time_timers_fire_with_no_input() {
    let mut t = TestDriver::new(Summer {
        ping_after_ms: Some(250),
    });
    t.push("a", 0, 1);
    t.advance_processing_time(249);
    assert!(t.take_emitted().is_empty());
    t.advance_processing_time(1);
    assert_eq!(t.take_emitted(), vec!["a:ping@250"]);
    assert_eq!(t.counters().timers_fired, 1);
}

#[test]
fn bounded_out_of_orderness_moves_the_watermark_and_late_records_are_dead_lettered() {
    let mut t = TestDriver::with_config(
        Summer::default(),
        CoreConfig {
            out_of_orderness_ms: Some(100),
            idle_watermark_ms: None,
            idle_passivation_ms: None,
            ..CoreConfig::default()
        },
    );
    t.push("a", 0, 1);
    t.push("a", 1100, 1);
    assert_eq!(t.watermark(), 1000);
    assert_eq!(
        t.take_emitted(),
        vec!["a:1:1"],
        "the timer at 1000 fired before the record at 1100"
    );
    t.push("a", 999, 4);
    assert_eq!(t.counters().late, 1);
    assert_eq!(t.dead_letters().len(), 1);
    assert_eq!(t.dead_letters()[0].reason, "late");
    assert_eq!(t.state("a").total, 1, "the late value was not added");
}

#[test]
fn idle_partition_watermark_follows_processing_time() {
    let mut t = TestDriver::with_config(
        Summer::default(),
        CoreConfig {
            out_of_orderness_ms: Some(100),
            idle_watermark_ms: Some(5_000),
            idle_passivation_ms: None,
            ..CoreConfig::default()
        },
    );
    t.push("a", 10_000, 1);
    t.advance_processing_time(5_000);
    assert!(t.take_emitted().is_empty());
    t.advance_processing_time(1_100);
    assert_eq!(t.take_emitted(), vec!["a:1:1"]);
}

#[test]
fn poison_records_are_dead_lettered_and_others_go_on() {
    let mut t = TestDriver::new(Summer::default());
    t.push("a", 0, -1);
    t.push("b", 0, 2);
    assert_eq!(t.dead_letters().len(), 1);
    assert_eq!(t.dead_letters()[0].reason, "negative value -1");
    assert_eq!(t.dead_letters()[0].position, Some(0));
    t.finish();
    assert_eq!(t.take_emitted(), vec!["b:2:1"]);
}

/// Fails with a retryable error a fixed number of times per call.
struct Flaky {
    failures: AtomicU32,
}

impl Processor for Flaky {
    type Key = String;
    type In = u32;
    type Out = u32;
    type State = u32;

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        s: &mut u32,
        v: &u32,
    ) -> Result<(), ProcessError> {
        ctx.emit(*v);
        if self.failures.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Err(ProcessError::retry("broker busy"));
        }
        *s += v;
        Ok(())
    }
}

#[test]
fn retryable_errors_are_retried_then_dead_lettered() {
    let mut t = TestDriver::new(Flaky {
        failures: AtomicU32::new(2),
    });
    t.push_untimed("a", 5);
    assert_eq!(
        t.take_emitted(),
        vec![5],
        "outputs of failed attempts are discarded"
    );
    assert_eq!(t.state("a"), 5);
    assert!(t.dead_letters().is_empty());

    let mut t = TestDriver::new(Flaky {
        failures: AtomicU32::new(10),
    });
    t.push_untimed("a", 5);
    assert!(t.take_emitted().is_empty());
    assert_eq!(t.dead_letters().len(), 1);
    assert!(
        t.dead_letters()[0]
            .reason
            .starts_with("retries exhausted after 3 attempts")
    );
}

#[test]
fn passivation_under_a_cap_loses_nothing() {
    let run = |cap: usize| {
        let mut t = TestDriver::with_config(
            Summer::default(),
            CoreConfig {
                live_actor_cap: cap,
                out_of_orderness_ms: None,
                idle_watermark_ms: None,
                idle_passivation_ms: None,
                ..CoreConfig::default()
            },
        );
        for i in 0..2_000i64 {
            t.push(format!("k{}", i % 97), i, i % 13);
        }
        assert!(t.live_keys() <= cap);
        t.finish();
        let mut out = t.take_emitted();
        out.sort();
        (out, t.counters())
    };
    let (capped, counters) = run(3);
    let (free, _) = run(usize::MAX);
    assert_eq!(capped, free);
    assert!(
        counters.passivations > 1_000,
        "the cap forced passivations: {counters:?}"
    );
}

#[test]
fn idle_keys_are_passivated_and_reactivated_with_their_state() {
    let mut t = TestDriver::with_config(
        Summer::default(),
        CoreConfig {
            idle_passivation_ms: Some(1_000),
            out_of_orderness_ms: None,
            idle_watermark_ms: None,
            ..CoreConfig::default()
        },
    );
    t.push("a", 0, 4);
    t.advance_processing_time(500);
    t.push("b", 0, 1);
    t.advance_processing_time(600);
    assert_eq!(t.live_keys(), 1, "a was idle for 1100 ms, b for 600 ms");
    t.push("a", 1, 3);
    assert_eq!(t.state("a").total, 7);
    assert_eq!(t.counters().activations, 3);
}

/// Keeps one timer per key and re-arms it from `on_timer`: `steps` more
/// times `step_ms` later (`None`: without end), emitting each firing.
struct Rearm {
    step_ms: i64,
    steps: Option<u32>,
    domain: TimeDomain,
}

impl Processor for Rearm {
    type Key = String;
    type In = ();
    type Out = i64;
    type State = u32;

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        _: &mut u32,
        _: &(),
    ) -> Result<(), ProcessError> {
        let at = match self.domain {
            TimeDomain::EventTime => ctx.timestamp().unwrap_or(0),
            TimeDomain::ProcessingTime => ctx.processing_time(),
        } + self.step_ms;
        ctx.set_timer("next", at, self.domain);
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        fired: &mut u32,
        t: Timer,
    ) -> Result<(), ProcessError> {
        ctx.emit(t.at);
        *fired += 1;
        if self.steps.is_none_or(|n| *fired <= n) {
            ctx.set_timer("next", t.at + self.step_ms, self.domain);
        }
        Ok(())
    }
}

#[test]
fn end_of_input_fires_timers_set_while_the_final_timers_fire() {
    let mut t = TestDriver::new(Rearm {
        step_ms: 60_000,
        steps: Some(3),
        domain: TimeDomain::EventTime,
    });
    t.push("a", 0, ());
    t.push("b", 30_000, ());
    t.finish();
    let mut out = t.take_emitted_with_keys();
    out.sort();
    let want: Vec<(String, i64)> = [("a", 0), ("b", 30_000)]
        .into_iter()
        .flat_map(|(k, start)| (1..=4).map(move |i| (k.to_string(), start + i * 60_000)))
        .collect();
    assert_eq!(out, want, "each key's chain of four timers fired in full");
    assert_eq!(t.pending_timers(), 0);
    assert_eq!(t.counters().timers_deferred, 0);
}

#[test]
fn a_timer_that_rearms_forever_stops_at_the_chain_bound_at_end_of_input() {
    let bound = 50;
    let mut t = TestDriver::with_config(
        Rearm {
            step_ms: 1_000,
            steps: None,
            domain: TimeDomain::EventTime,
        },
        CoreConfig {
            out_of_orderness_ms: None,
            idle_watermark_ms: None,
            idle_passivation_ms: None,
            max_timer_chain: bound,
            ..CoreConfig::default()
        },
    );
    t.push("runaway", 0, ());
    t.push("other", 500, ());
    t.finish();
    let out = t.take_emitted_with_keys();
    let of = |k: &str| out.iter().filter(|(key, _)| key == k).count();
    // The first firing has chain 0; the bound stops the key when a timer's
    // chain reaches it.
    assert_eq!(of("runaway"), bound as usize);
    assert_eq!(of("other"), bound as usize);
    assert_eq!(t.counters().timers_deferred, 2, "one held timer per key");
    assert_eq!(
        t.pending_timers(),
        2,
        "the held timers stay stored, not dropped"
    );
    assert_eq!(t.state("runaway"), bound);
}

#[test]
fn a_watermark_jump_fires_a_whole_chain_and_processing_time_catches_up_within_the_bound() {
    // Event time: one advance over several re-armed timers fires them all.
    let mut t = TestDriver::new(Rearm {
        step_ms: 10,
        steps: Some(4),
        domain: TimeDomain::EventTime,
    });
    t.push("a", 0, ());
    t.advance_watermark_to(45);
    assert_eq!(t.take_emitted(), vec![10, 20, 30, 40]);
    t.advance_watermark_to(1_000);
    assert_eq!(t.take_emitted(), vec![50]);

    // Processing time: a timer that re-arms from its own time after a long
    // pause catches up `max_timer_chain` periods per tick, in order.
    let mut t = TestDriver::with_config(
        Rearm {
            step_ms: 100,
            steps: None,
            domain: TimeDomain::ProcessingTime,
        },
        CoreConfig {
            out_of_orderness_ms: None,
            idle_watermark_ms: None,
            idle_passivation_ms: None,
            max_timer_chain: 20,
            ..CoreConfig::default()
        },
    );
    t.push_untimed("a", ());
    t.advance_processing_time(5_000);
    let first = t.take_emitted();
    assert_eq!(first, (1..=20).map(|i| i * 100).collect::<Vec<_>>());
    assert_eq!(t.counters().timers_deferred, 1);
    t.advance_processing_time(0);
    let second = t.take_emitted();
    assert_eq!(second, (21..=40).map(|i| i * 100).collect::<Vec<_>>());
    t.advance_processing_time(0);
    assert_eq!(t.take_emitted().len(), 10, "caught up to 5000 ms");
    assert_eq!(t.pending_timers(), 1);
}

#[test]
fn with_no_out_of_orderness_the_record_that_moves_the_watermark_is_not_late() {
    let mut t = TestDriver::with_config(
        Summer::default(),
        CoreConfig {
            out_of_orderness_ms: Some(0),
            idle_watermark_ms: None,
            idle_passivation_ms: None,
            ..CoreConfig::default()
        },
    );
    t.push("a", 100, 1);
    t.push("a", 200, 2);
    assert_eq!(t.watermark(), 200);
    assert_eq!(t.counters().late, 0, "each record moved the watermark");
    t.push("a", 200, 4);
    assert_eq!(t.counters().late, 1, "a second record at 200 is behind it");
    t.push("a", 1_100, 8);
    assert_eq!(
        t.take_emitted(),
        vec!["a:3:2"],
        "the timer at 1100 fired before the record that reached it"
    );
    t.finish();
    assert_eq!(t.take_emitted(), vec!["a:8:1"]);
}

#[test]
fn an_event_time_past_the_future_bound_is_dead_lettered_and_moves_nothing() {
    // Processing time starts at 0; the bound is 1 s ahead of it.
    let mut d = TestDriver::with_config(
        Summer::default(),
        CoreConfig {
            out_of_orderness_ms: Some(0),
            idle_watermark_ms: None,
            max_future_ms: Some(1_000),
            ..CoreConfig::default()
        },
    );
    d.push("a", 500, 1);
    d.push("a", 1_000, 1); // at the bound: accepted
    d.push("b", 1_001, 1); // past it: rejected
    d.push("a", 900, 1); // late against 1,000, not against 1,001
    assert_eq!(
        d.watermark(),
        1_000,
        "the rejected record moved the watermark"
    );
    let c = d.counters();
    assert_eq!((c.future, c.late, c.dead_lettered), (1, 1, 2), "{c:?}");
    let future: Vec<_> = d
        .dead_letters()
        .iter()
        .filter(|l| l.reason.starts_with("future_timestamp"))
        .collect();
    assert_eq!(future.len(), 1);
    assert_eq!(future[0].position, Some(2), "the third record");
    // As the clock moves on, the same time is accepted.
    d.advance_processing_time(10);
    d.push("b", 1_001, 1);
    assert_eq!(d.watermark(), 1_001);
    assert_eq!(d.counters().future, 1);
}

/// Counts records per key, sets a timer named after each value, emits the
/// count; panics on 13 after doing all that, and on the timer of 7.
struct Fragile;

impl Processor for Fragile {
    type Key = String;
    type In = i64;
    type Out = String;
    type State = u32;

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        n: &mut u32,
        v: &i64,
    ) -> Result<(), ProcessError> {
        *n += 1;
        let at = ctx.timestamp().unwrap_or(0) + 1_000;
        ctx.set_timer(format!("t{v}"), at, TimeDomain::EventTime);
        ctx.emit(format!("{} {n}", ctx.key()));
        assert_ne!(*v, 13, "thirteen");
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        n: &mut u32,
        t: Timer,
    ) -> Result<(), ProcessError> {
        *n += 100;
        ctx.emit(format!("{} {}", t.name, n));
        assert_ne!(t.name.as_str(), "t7", "seven");
        Ok(())
    }
}

fn fragile(on_panic: weir_actors::OnPanic) -> TestDriver<Fragile> {
    TestDriver::with_config(
        Fragile,
        CoreConfig {
            out_of_orderness_ms: Some(0),
            idle_watermark_ms: None,
            on_panic,
            ..CoreConfig::default()
        },
    )
}

#[test]
fn a_panic_with_the_dead_letter_policy_rolls_the_key_back() {
    let mut d = fragile(weir_actors::OnPanic::DeadLetter);
    d.push("a", 10, 1);
    d.push("a", 20, 13); // counts, sets t13, emits, then panics
    d.push("a", 30, 2);
    assert_eq!(
        d.take_emitted(),
        ["a 1", "a 2"],
        "the panicking call's output is dropped and its count undone"
    );
    d.push("a", 40, 7);
    d.finish();
    // t1 (at 1,010), t2 and t7 fire; t13 was never kept; t7's call panics
    // and is undone too.
    assert_eq!(d.take_emitted(), ["a 3", "t1 103", "t2 203"]);
    let reasons: Vec<(Option<u64>, &str)> = d
        .dead_letters()
        .iter()
        .map(|l| (l.position, l.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, Some(1));
    assert!(reasons[0].1.starts_with("panic: ") && reasons[0].1.contains("thirteen"));
    assert!(reasons[0].1.contains("::process panicked on key \"a\""));
    assert_eq!(reasons[1].0, None, "a timer has no position");
    assert!(reasons[1].1.contains("::on_timer panicked") && reasons[1].1.contains("seven"));
    assert_eq!(d.counters().dead_lettered, 2);
}

#[test]
#[should_panic(expected = "::process panicked on key \"a\" in partition 0 at position 1")]
fn a_panic_with_the_stop_policy_fails_the_partition() {
    let mut d = fragile(weir_actors::OnPanic::Stop);
    d.push("a", 10, 1);
    d.push("a", 20, 13);
}

/// The state of an earlier release of [`Counting`].
#[derive(Serialize, Deserialize)]
struct CountV1 {
    n: u32,
}

/// Today's: `n` renamed and widened, a field added.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CountV2 {
    count: u64,
    last_seen: i64,
}

/// Counts records per key, at state version 2, migrating version 1.
struct Counting;

impl Processor for Counting {
    type Key = String;
    type In = ();
    type Out = (u64, i64);
    type State = CountV2;
    const STATE_VERSION: u32 = 2;

    fn migrate_state(version: u32, bytes: &[u8]) -> Result<CountV2, String> {
        match version {
            1 => {
                let old: CountV1 = weir_actors::decode_state(bytes)?;
                Ok(CountV2 {
                    count: u64::from(old.n),
                    last_seen: i64::MIN,
                })
            }
            v => Err(format!("no migration from version {v}")),
        }
    }

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        s: &mut CountV2,
        _: &(),
    ) -> Result<(), ProcessError> {
        s.count += 1;
        s.last_seen = ctx.timestamp().unwrap_or(0);
        ctx.emit((s.count, s.last_seen));
        Ok(())
    }
}

#[test]
fn an_old_state_version_is_migrated_when_its_key_is_loaded_and_written_back() {
    let mut d = TestDriver::new(Counting);
    d.put_state("a", 1, &CountV1 { n: 41 });
    d.put_state("untouched", 1, &CountV1 { n: 7 });
    d.push("a", 5, ());
    d.push("b", 6, ());
    assert_eq!(d.take_emitted(), [(42, 5), (1, 6)]);
    d.finish();
    assert_eq!(
        d.stored_state_version("a"),
        Some(2),
        "written back as version 2"
    );
    assert_eq!(d.stored_state_version("b"), Some(2));
    assert_eq!(
        d.stored_state_version("untouched"),
        Some(1),
        "a key never loaded keeps its old bytes"
    );
}

#[test]
#[should_panic(expected = "state of key \"a\" is version 3")]
fn a_state_version_newer_than_the_code_fails_the_partition() {
    let mut d = TestDriver::new(Counting);
    d.put_state("a", 3, &CountV2::default());
    d.push("a", 5, ());
}

#[test]
#[should_panic(expected = "no migration from state version 1 to 2")]
fn a_state_version_without_a_migration_fails_the_partition() {
    /// Counting without its migration.
    struct NoMigration;
    impl Processor for NoMigration {
        type Key = String;
        type In = ();
        type Out = ();
        type State = CountV2;
        const STATE_VERSION: u32 = 2;

        async fn process(
            &self,
            _: &mut Context<'_, Self>,
            _: &mut CountV2,
            _: &(),
        ) -> Result<(), ProcessError> {
            Ok(())
        }
    }
    let mut d = TestDriver::new(NoMigration);
    d.put_state("a", 1, &CountV1 { n: 1 });
    d.push("a", 5, ());
}

/// Counts records per key; its state lives a second after the key's last
/// call, in processing time or (`EVENT`) in event time.
struct Tally<const EVENT: bool>;

/// [`Tally`] on the watermark.
type EventTally = Tally<true>;

impl<const EVENT: bool> Processor for Tally<EVENT> {
    type Key = String;
    type In = ();
    type Out = u64;
    type State = u64;
    const STATE_TTL: Option<weir_actors::StateTtl> = Some(weir_actors::StateTtl {
        after_ms: 1_000,
        domain: if EVENT {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        },
    });

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        n: &mut u64,
        _: &(),
    ) -> Result<(), ProcessError> {
        *n += 1;
        ctx.emit(*n);
        Ok(())
    }
}

#[test]
fn state_past_its_time_to_live_is_gone_live_or_stored() {
    // One live key at a time: the other is passivated (written with its
    // time) and loaded again.
    let mut d = TestDriver::with_config(
        Tally::<false>,
        CoreConfig {
            live_actor_cap: 1,
            idle_passivation_ms: None,
            out_of_orderness_ms: None,
            idle_watermark_ms: None,
            ..CoreConfig::default()
        },
    );
    d.push("a", 0, ());
    d.advance_processing_time(600);
    d.push("a", 0, ()); // 600 ms after the last change: alive
    d.push("b", 0, ()); // passivates a, written at 600
    d.advance_processing_time(900);
    d.push("a", 0, ()); // loaded at 1,500: 900 ms old, alive
    d.advance_processing_time(1_001);
    d.push("a", 0, ()); // live, 1,001 ms old: gone
    d.push("b", 0, ()); // stored at 600, loaded at 2,501: gone
    assert_eq!(d.take_emitted(), [1, 2, 1, 3, 1, 1]);
    d.finish();
    assert_eq!(
        d.stored_state_version("a"),
        Some(1),
        "a's new count is stored"
    );
}

#[test]
fn an_event_time_to_live_follows_the_watermark() {
    let mut d = TestDriver::with_config(
        EventTally {},
        CoreConfig {
            out_of_orderness_ms: Some(0),
            idle_watermark_ms: None,
            ..CoreConfig::default()
        },
    );
    d.push("a", 0, ());
    d.push("b", 900, ());
    d.push("a", 950, ()); // written at watermark 0, now 950: alive
    d.push("b", 1_900, ()); // written at 900, now 1,900: alive, just
    d.push("a", 1_951, ()); // written at 950, now 1,951: gone
    assert_eq!(d.take_emitted(), [1, 1, 2, 2, 1]);
}

/// Sums per key in one-second event-time windows closed by a timer, with
/// an event-time TTL shorter than the gap the watermark jumps.
struct Windowed;

impl Processor for Windowed {
    type Key = String;
    type In = u64;
    type Out = (String, u64);
    type State = u64;
    const STATE_TTL: Option<weir_actors::StateTtl> = Some(weir_actors::StateTtl {
        after_ms: 500,
        domain: TimeDomain::EventTime,
    });

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        sum: &mut u64,
        v: &u64,
    ) -> Result<(), ProcessError> {
        *sum += v;
        let end = ctx.timestamp().unwrap_or(0).div_euclid(1_000) * 1_000 + 1_000;
        ctx.set_timer("close", end, TimeDomain::EventTime);
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        sum: &mut u64,
        _: Timer,
    ) -> Result<(), ProcessError> {
        ctx.emit((ctx.key().clone(), *sum));
        *sum = 0;
        Ok(())
    }
}

#[test]
fn an_event_time_to_live_is_judged_at_the_timer_and_never_at_the_end() {
    let mut d = TestDriver::with_config(
        Windowed,
        CoreConfig {
            out_of_orderness_ms: Some(0),
            idle_watermark_ms: None,
            ..CoreConfig::default()
        },
    );
    d.push("a", 100, 5);
    d.push("a", 200, 6);
    d.push("b", 300, 1);
    d.push("b", 750, 2); // 450 ms after b's last call: alive
    // The watermark jumps to 5,000 and the timers at 1,000 fire. Judged at
    // 1,000, not 5,000: a (last call at 200) is gone, b (750) is not.
    d.push("c", 5_000, 9);
    d.push("d", 5_700, 4);
    // At the end of input the watermark is the maximum, but the timers at
    // 6,000 are judged at 6,000: c (last call at 5,000) is gone, d is not.
    d.finish();
    assert_eq!(
        d.take_emitted(),
        [
            ("a".to_string(), 0),
            ("b".to_string(), 3),
            ("c".to_string(), 0),
            ("d".to_string(), 4)
        ]
    );
}

#[test]
fn a_state_time_to_live_waits_for_a_known_watermark() {
    // No out-of-orderness: the watermark moves only when told.
    let mut d = TestDriver::new(EventTally {});
    d.push("a", 0, ());
    d.advance_watermark_to(500);
    d.push("a", 600, ());
    assert_eq!(
        d.take_emitted(),
        [1, 2],
        "written at 0, 600 ms later: alive"
    );
}
