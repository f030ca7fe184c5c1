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
