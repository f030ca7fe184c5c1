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
//! Checkpoints are taken every `--checkpoint-interval-ms` (0: only at
//! shutdown and at the end) into `--checkpoint-store` (default: a directory
//! under `--state-dir`). Killed at any moment and run again with the same
//! arguments, it resumes from its last checkpoint; the output and dead-letter
//! files then hold every line exactly once. SIGTERM or SIGINT stops it after
//! a final checkpoint (exit 0); SIGUSR1 asks for a checkpoint now.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgGroup, Parser};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use weir::cef::GeneratorConfig;
use weir::{
    CheckpointSettings, Clock, Context, DeadLetterFile, Decoded, GeneratorSource, Job, JsonLines,
    LineSource, MemoryBudget, ProcessError, Processor, Report, Settings, SystemClock, TimeDomain,
    Timer, open_store,
};

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
    /// Re-arms the close timer at the earliest open window's end.
    fn arm(&self, ctx: &mut Context<'_, Self>, windows: &Windows) {
        match windows.0.iter().map(|w| w.start + self.window_ms).min() {
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
        let start = ev.rt.div_euclid(self.window_ms) * self.window_ms;
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
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        windows: &mut Windows,
        t: Timer,
    ) -> Result<(), ProcessError> {
        let mut closed: Vec<Window> = Vec::new();
        windows.0.retain(|w| {
            let due = w.start + self.window_ms <= t.at;
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
        Ok(())
    }
}

/// Decodes a CEF line into (src, rt, login). `now_ms` places dates written
/// without a year.
pub fn decode_line(line: &[u8], now_ms: i64) -> Result<Decoded<String, Login>, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("input is not UTF-8: {e}"))?;
    let ev = weir::cef::decode(text).map_err(|e| e.to_string())?;
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

#[derive(Parser, Debug)]
#[command(name = "cef_alerts", about = "Brute-force login alerts over CEF logs")]
#[command(group(ArgGroup::new("in").required(true).args(["input", "generate"])))]
struct Args {
    /// CEF lines to read ('-' for stdin).
    #[arg(long)]
    input: Option<String>,
    /// Generate N synthetic events instead of reading input.
    #[arg(long, value_name = "N")]
    generate: Option<u64>,
    /// Distinct source addresses in generated events.
    #[arg(long, default_value_t = 10_000, requires = "generate")]
    keys: u64,
    /// Seed of generated events.
    #[arg(long, default_value_t = 1, requires = "generate")]
    seed: u64,
    /// Alerts, one JSON line each; dead letters go to <output>.dlq.
    #[arg(long)]
    output: PathBuf,
    /// Where RocksDB state lives.
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    #[arg(long, default_value_t = 5)]
    threshold: u32,
    #[arg(long, default_value_t = 5_000)]
    max_out_of_orderness_ms: u64,
    /// Most key actors live at once (all partitions together).
    #[arg(long, default_value_t = 100_000)]
    live_actor_cap: usize,
    /// RocksDB memory budget (block cache and memtables), MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// Time between checkpoints, ms (0: only at shutdown and at the end).
    #[arg(long, default_value_t = 1_000)]
    checkpoint_interval_ms: u64,
    /// Where checkpoints go: a directory or file:// URL (default:
    /// <state-dir>/snapshots).
    #[arg(long)]
    checkpoint_store: Option<String>,
    /// Complete checkpoints kept in the store.
    #[arg(long, default_value_t = 3)]
    checkpoint_retain: usize,
    /// Start from empty state when checkpoints exist but none is usable.
    #[arg(long)]
    start_empty: bool,
}

fn dlq_path(output: &std::path::Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".dlq");
    PathBuf::from(s)
}

async fn run(args: Args) -> anyhow::Result<Report> {
    if args.window_secs == 0 {
        anyhow::bail!("--window-secs must be at least 1");
    }
    let store_url = args
        .checkpoint_store
        .clone()
        .unwrap_or_else(|| args.state_dir.join("snapshots").display().to_string());
    let settings = Settings {
        partitions: args.partitions,
        state_dir: args.state_dir.clone(),
        memory: MemoryBudget {
            bytes: args.memory_mib << 20,
        },
        live_actor_cap: args.live_actor_cap,
        max_out_of_orderness: Duration::from_millis(args.max_out_of_orderness_ms),
        checkpoints: Some(CheckpointSettings {
            store: open_store(&store_url)?,
            interval: (args.checkpoint_interval_ms > 0)
                .then(|| Duration::from_millis(args.checkpoint_interval_ms)),
            retain: args.checkpoint_retain,
            start_empty: args.start_empty,
        }),
        ..Settings::default()
    };
    let processor = BruteForce {
        window_ms: args.window_secs as i64 * 1000,
        threshold: args.threshold,
    };
    let job = Job::new(processor)
        .settings(settings)
        .decoder(|line: &[u8]| decode_line(line, SystemClock.now_ms()))
        .sink(JsonLines::file(&args.output)?)
        .dead_letters(DeadLetterFile::file(dlq_path(&args.output))?);
    let job = match (&args.input, args.generate) {
        (Some(path), _) if path == "-" => job.source(LineSource::stdin()),
        (Some(path), _) => job.source(LineSource::open(path)?),
        (None, Some(events)) => job.source(GeneratorSource::new(GeneratorConfig {
            events,
            keys: args.keys.max(1),
            seed: args.seed,
            ..GeneratorConfig::default()
        })),
        (None, None) => anyhow::bail!("give --input FILE or --generate N"),
    };
    let trigger = job.checkpoint_trigger();
    tokio::spawn(async move {
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            trigger.request();
        }
    });
    let shutdown = async {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    Ok(job.run_until(shutdown).await?)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Crash points of the checkpoint protocol, for the crash tests (only
    // with the `failpoints` feature; configured by FAILPOINTS).
    let _failpoints = fail::FailScenario::setup();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(run(args))?;
    eprintln!(
        "records={} alerts={} dead_lettered={} late={} seconds={:.3} records_per_sec={:.0} restored_checkpoint={} checkpoints={} stopped={}",
        report.lines,
        report.totals.emitted,
        report.dead_lettered(),
        report.totals.late,
        report.elapsed.as_secs_f64(),
        report.lines_per_sec(),
        report.recovery.checkpoint_id(),
        report.checkpoints.completed,
        report.stopped,
    );
    Ok(())
}
