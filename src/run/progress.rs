//! The progress line a job shows on a terminal once a second: records and
//! rate, how much of a file is read or the Kafka lag, checkpoints and dead
//! letters. Off when stderr is not a terminal or with `--quiet`; logs are
//! unaffected (the line is redrawn after them).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::JobArgs;
use crate::telemetry::{Progress, Telemetry};

/// The progress thread, if one runs.
pub(super) struct Shown(Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>);

impl Shown {
    /// Starts showing progress, if stderr is a terminal and not `--quiet`.
    pub(super) fn start(args: &JobArgs, telemetry: &Telemetry) -> Self {
        if args.quiet || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let size = args
            .input
            .as_deref()
            .filter(|p| *p != "-")
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len());
        let input = match (size, args.generate, args.input_topic.is_some()) {
            (_, _, true) => Input::Kafka,
            (Some(bytes), _, _) => Input::Bytes(bytes),
            (None, Some(records), _) => Input::Records(records),
            _ => Input::Stream,
        };
        let metrics = telemetry.metrics().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("weir-progress".into())
            .spawn(move || {
                let mut last = (Instant::now(), metrics.progress());
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.0.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                    let now = metrics.progress();
                    let rate = (now.records.saturating_sub(last.1.records)) as f64
                        / last.0.elapsed().as_secs_f64();
                    eprint!("\r\x1b[2K{}", line(&now, rate, input));
                    last = (Instant::now(), now);
                }
            })
            .ok();
        Self(thread.map(|t| (stop, t)))
    }

    /// Stops the line and clears it.
    pub(super) fn stop(self) {
        if let Some((stop, thread)) = self.0 {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
            eprint!("\r\x1b[2K");
        }
    }
}

/// What the job reads, for the share read or the lag.
#[derive(Debug, Clone, Copy)]
enum Input {
    /// A file of this many bytes.
    Bytes(u64),
    /// Generated: this many records.
    Records(u64),
    /// Kafka: the lag is what is left.
    Kafka,
    /// Stdin: no end known.
    Stream,
}

/// The progress line: `rate` records a second.
fn line(p: &Progress, rate: f64, input: Input) -> String {
    let mut s = format!(
        "{} records ({}/s)",
        grouped(p.records),
        grouped(rate as u64)
    );
    let share = |done: u64, all: u64| (done as f64 / all.max(1) as f64 * 100.0).min(100.0);
    match input {
        Input::Bytes(size) => {
            s += &format!(" · {:.0}% of the input read", share(p.input_position, size));
        }
        Input::Records(n) => s += &format!(" · {:.0}% of the input read", share(p.records, n)),
        Input::Kafka => match p.lag {
            Some(lag) => s += &format!(" · lag {}", grouped(lag)),
            None => s += " · lag unknown",
        },
        Input::Stream => {}
    }
    s += &format!(
        " · {} checkpoints · {} dead letters",
        grouped(p.checkpoints),
        grouped(p.dead_lettered)
    );
    s
}

/// `n` with thousands separated by commas.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_records_rate_share_lag_checkpoints_and_dead_letters() {
        let p = Progress {
            records: 1_234_567,
            dead_lettered: 3,
            checkpoints: 12,
            input_position: 430,
            lag: None,
        };
        assert_eq!(
            line(&p, 250_123.4, Input::Bytes(1_000)),
            "1,234,567 records (250,123/s) · 43% of the input read · 12 checkpoints · 3 dead letters"
        );
        let kafka = Progress {
            lag: Some(1_000),
            ..Progress::default()
        };
        assert_eq!(
            line(&kafka, 0.0, Input::Kafka),
            "0 records (0/s) · lag 1,000 · 0 checkpoints · 0 dead letters"
        );
        assert_eq!(
            line(&p, 0.0, Input::Records(2_469_134)),
            "1,234,567 records (0/s) · 50% of the input read · 12 checkpoints · 3 dead letters"
        );
        assert!(!line(&p, 0.0, Input::Stream).contains('%'));
    }
}
