//! Brute-force login detection over CEF security logs.
//!
//! Per source address (`src`), tumbling event-time windows of `--window-secs`
//! aligned to the epoch count events and failed logins (signature id `100`
//! with `outcome=failure`). An event-time timer at the window's end closes
//! it: with at least `--threshold` failed logins it emits
//! `{"src":..,"window_start":ms,"failed":n,"events":n,"last_seen":ms}`.
//! Lines that do not decode, or lack `src` or `rt`, go to `<output>.dlq`.
//!
//! ```text
//! cef_alerts (--input FILE|- | --generate N [--keys K] [--seed S])
//!            --output FILE --state-dir DIR
//!            [--partitions 4] [--window-secs 60] [--threshold 5]
//!            [--max-out-of-orderness-ms 5000]
//!            [--checkpoint-interval-ms 1000] [--checkpoint-store URL]
//! ```
//!
//! Kafka mode reads CEF lines from a topic and writes alerts (keyed by
//! `src`) to another; dead letters go to `--dlq-topic` with the error and
//! source in headers. Several processes with the same `--group` and a shared
//! `--checkpoint-store` split the topic's partitions, and a partition's
//! state follows it when it moves:
//!
//! ```text
//! cef_alerts --brokers HOST:PORT --input-topic T --output-topic T
//!            --group G --checkpoint-store URL --state-dir DIR
//!            [--dlq-topic T] [--window-secs 60] [--threshold 5]
//!            [--group-instance-id ID] [--kafka-config FILE]
//!            [--stall-after SECS] [--stall-timeout SECS]
//!            [--on-offset-reset earliest|fail]
//!            [--kafka-option KEY=VALUE ...]
//!            [--consumer-option KEY=VALUE ...] [--producer-option KEY=VALUE ...]
//! ```
//!
//! Sources and sinks mix: `--input FILE` (or `--generate N`) with
//! `--brokers B --output-topic T [--dlq-topic T]` is a file → Kafka job
//! (checkpoints as in file mode, no group), and `--brokers B --input-topic
//! T --group G --checkpoint-store URL` with `--output FILE` is a Kafka →
//! file job (dead letters to `<output>.dlq`). File → file is exactly-once;
//! every pair with Kafka on one side is at-least-once (see
//! `weir::kafka::KafkaOutput` and the README).
//!
//! The input must be keyed (partitioned) by `src`, as Kafka's default
//! partitioner does for records keyed by it: a key's windows live in the
//! partition its records arrive on.
//!
//! Checkpoints are taken every `--checkpoint-interval-ms` (0: only at
//! shutdown and at the end) into `--checkpoint-store` (default: a directory
//! under `--state-dir`). Killed at any moment and run again with the same
//! arguments, it resumes from its last checkpoint; the output and dead-letter
//! files then hold every line exactly once. SIGTERM or SIGINT stops it after
//! a final checkpoint (exit 0); SIGUSR1 asks for a checkpoint now.
//!
//! Every flag is also an environment variable: `--state-dir` is
//! `WEIR_STATE_DIR`, and so on; the repeatable `--kafka-option`,
//! `--consumer-option` and `--producer-option` are `WEIR_KAFKA_OPTIONS`,
//! `WEIR_CONSUMER_OPTIONS` and `WEIR_PRODUCER_OPTIONS`, one `KEY=VALUE` per
//! line. `--admin-addr HOST:PORT` serves `/metrics`, `/healthz` and
//! `/readyz`; `--log-format json` writes JSON logs. On a terminal a
//! progress line shows once a second (`--quiet`: none).
//!
//! Everything but the detector and its two flags comes from
//! [`weir::run::App`]: this file is the whole job.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use weir::run::App;
use weir::{Clock, Context, Decoded, ProcessError, Processor, SystemClock, TimeDomain, Timer};

/// One decoded event, as much as the detector needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    /// Event time, ms since the epoch.
    pub rt: i64,
    /// A failed login: signature id 100 and `outcome=failure`.
    pub failed: bool,
}

/// One open window of a source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub events: u32,
    pub failed: u32,
    pub last_seen: i64,
}

/// A source address's open windows (usually one, two around a boundary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows(pub Vec<Window>);

/// The alert line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub src: String,
    pub window_start: i64,
    pub failed: u32,
    pub events: u32,
    pub last_seen: i64,
}

/// The detector.
#[derive(Debug, Clone)]
pub struct BruteForce {
    pub window_ms: i64,
    pub threshold: u32,
}

const CLOSE: &str = "close";

impl BruteForce {
    /// Where window `w` ends (its close timer's time).
    fn end_of(&self, w: &Window) -> i64 {
        w.start.saturating_add(self.window_ms)
    }

    /// Re-arms the close timer at the earliest open window's end.
    fn arm<P: Processor>(&self, ctx: &mut Context<'_, P>, windows: &Windows) {
        match windows.0.iter().map(|w| self.end_of(w)).min() {
            Some(end) => ctx.set_timer(CLOSE, end, TimeDomain::EventTime),
            None => ctx.cancel_timer(CLOSE),
        }
    }
}

impl Processor for BruteForce {
    type Key = String;
    type In = Login;
    type Out = Alert;
    type State = Windows;

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        windows: &mut Windows,
        ev: &Login,
    ) -> Result<(), ProcessError> {
        self.count(ctx, windows, ev);
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        windows: &mut Windows,
        t: Timer,
    ) -> Result<(), ProcessError> {
        self.close(ctx, windows, t);
        Ok(())
    }
}

impl BruteForce {
    /// Counts `ev` in its window. (Generic over the processor so that a
    /// processor built on this detector, such as the benchmark's with a
    /// state time to live, shares it.)
    pub fn count<P: Processor>(&self, ctx: &mut Context<'_, P>, windows: &mut Windows, ev: &Login) {
        // Saturating: weir bounds event times, but the detector stays sound
        // for any i64 a caller hands it.
        let start = ev
            .rt
            .div_euclid(self.window_ms)
            .saturating_mul(self.window_ms);
        let w = match windows.0.iter_mut().find(|w| w.start == start) {
            Some(w) => w,
            None => {
                windows.0.push(Window {
                    start,
                    events: 0,
                    failed: 0,
                    last_seen: ev.rt,
                });
                windows.0.last_mut().expect("just pushed")
            }
        };
        w.events += 1;
        w.failed += u32::from(ev.failed);
        w.last_seen = w.last_seen.max(ev.rt);
        self.arm(ctx, windows);
    }

    /// Closes the windows that end by `t`, emitting their alerts.
    pub fn close<P>(&self, ctx: &mut Context<'_, P>, windows: &mut Windows, t: Timer)
    where
        P: Processor<Key = String, Out = Alert>,
    {
        let mut closed: Vec<Window> = Vec::new();
        windows.0.retain(|w| {
            let due = self.end_of(w) <= t.at;
            if due {
                closed.push(*w);
            }
            !due
        });
        closed.sort_by_key(|w| w.start);
        for w in closed.into_iter().filter(|w| w.failed >= self.threshold) {
            ctx.emit(Alert {
                src: ctx.key().clone(),
                window_start: w.start,
                failed: w.failed,
                events: w.events,
                last_seen: w.last_seen,
            });
        }
        self.arm(ctx, windows);
    }
}

/// Decodes a CEF line into (src, rt, login). `now_ms` places dates written
/// without a year.
pub fn decode_line(line: &[u8], now_ms: i64) -> Result<Decoded<String, Login>, String> {
    let ev = weir::cef::decode_bytes(line).map_err(|e| e.to_string())?;
    let src = ev.get("src").ok_or("missing src extension")?;
    if src.is_empty() {
        return Err("empty src extension".into());
    }
    let rt = ev
        .rt_millis(now_ms)
        .map_err(|e| format!("bad rt extension: {e}"))?
        .ok_or("missing rt extension")?;
    let failed = ev.signature_id == "100" && ev.get("outcome").is_some_and(|o| o == "failure");
    Ok(Decoded {
        key: src.to_string(),
        timestamp: Some(rt),
        value: Login { rt, failed },
    })
}

/// The detector's own flags (the standard ones come from `weir::run`).
#[derive(clap::Args, Debug)]
pub struct Flags {
    /// Window length, seconds.
    #[arg(long, env = "WEIR_WINDOW_SECS", default_value_t = 60)]
    pub window_secs: u64,
    /// Failed logins in one window that make an alert.
    #[arg(long, env = "WEIR_THRESHOLD", default_value_t = 5)]
    pub threshold: u32,
}

/// Runs the `cef_alerts` command line with the detector `make` builds from
/// the window length (ms) and the threshold. (`cef_alerts_v2` runs it with
/// its own detector.)
pub fn run_cli<P>(about: &'static str, make: fn(i64, u32) -> P) -> anyhow::Result<()>
where
    P: Processor<Key = String, In = Login, Out = Alert>,
{
    App::new("cef_alerts", about)
        .outputs_named("alerts")
        .output_key(|a: &Alert| Cow::Borrowed(a.src.as_bytes()))
        .cef_generator()
        .run(|flags: &Flags| {
            // At least a second, at most about a century.
            let window_ms = match flags.window_secs {
                1..=3_155_760_000 => flags.window_secs as i64 * 1000,
                _ => anyhow::bail!("--window-secs must be between 1 and 3155760000 (100 years)"),
            };
            Ok((make(window_ms, flags.threshold), |line: &[u8]| {
                decode_line(line, SystemClock.now_ms())
            }))
        })
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    run_cli(
        "Brute-force login alerts over CEF logs",
        |window_ms, threshold| BruteForce {
            window_ms,
            threshold,
        },
    )
}
