//! Benchmark of the CEF alerts job: prints records/s and peak RSS.
//!
//! ```text
//! cargo run --release --example bench_cef                 # 1M events, 10k and 1M keys
//! cargo run --release --example bench_cef -- --events N --keys K [--one]
//! cargo run --release --example bench_cef -- --metrics-compare 5   # metrics on vs off
//! cargo run --release --example bench_cef -- --one --keys 10000 --metrics --scrapers 100
//! cargo run --release --example bench_cef -- --keys 1000000 --ttl   # with a state time to live
//! ```
//! `--scrapers N` makes N threads scrape `/metrics` together once a second
//! (a burst of N concurrent requests), instead of one scrape a second, and
//! prints how many scrapes were answered.
//! With `--metrics` the job reports to a `Telemetry` whose admin server a
//! thread scrapes every second, as Prometheus would; `--metrics-compare N`
//! runs N rounds of the same configuration without and with it,
//! alternating, and prints the medians.
//! Each configuration runs in a child process of its own, so its peak RSS
//! (VmHWM) is its own. Figures go to BENCHMARKS.md.

use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use weir::cef::{Generator, GeneratorConfig};
use weir::{DeadLetterFile, GeneratorSource, Job, JsonLines, Settings};

#[path = "cef_alerts.rs"]
#[allow(dead_code)]
mod cef_alerts;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct keys; without --one, runs 10,000 and 1,000,000.
    #[arg(long)]
    keys: Option<u64>,
    /// Run one configuration in this process.
    #[arg(long)]
    one: bool,
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    #[arg(long, default_value_t = 100_000)]
    live_actor_cap: usize,
    /// Checkpoint every N ms into a local snapshot store (0: off).
    #[arg(long, default_value_t = 0)]
    checkpoint_interval_ms: u64,
    /// Report metrics, served on loopback and scraped every second.
    #[arg(long)]
    metrics: bool,
    /// Runs N rounds with metrics off and on, alternating.
    #[arg(long, value_name = "N")]
    metrics_compare: Option<usize>,
    /// With --metrics: N threads scraping together once a second (0: one
    /// scrape a second).
    #[arg(long, default_value_t = 0)]
    scrapers: usize,
    /// `stop` or `dead-letter` (which copies each key's state before every
    /// call).
    #[arg(long, default_value = "stop")]
    on_panic: weir::OnPanic,
    /// The detector with a state time to live (ten minutes of event time),
    /// as `Expiring`: every value carries its write time and a compaction
    /// filter runs on every partition.
    #[arg(long)]
    ttl: bool,
}

/// The detector with a state time to live of ten minutes of event time: a
/// key silent for ten windows is forgotten. (Its windows delete themselves
/// when they close, so this measures what a time to live costs.)
struct Expiring(cef_alerts::BruteForce);

impl weir::Processor for Expiring {
    type Key = String;
    type In = cef_alerts::Login;
    type Out = cef_alerts::Alert;
    type State = cef_alerts::Windows;
    const STATE_TTL: Option<weir::StateTtl> = Some(weir::StateTtl {
        after_ms: 600_000,
        domain: weir::TimeDomain::EventTime,
    });

    async fn process(
        &self,
        ctx: &mut weir::Context<'_, Self>,
        windows: &mut Self::State,
        ev: &Self::In,
    ) -> Result<(), weir::ProcessError> {
        self.0.count(ctx, windows, ev);
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut weir::Context<'_, Self>,
        windows: &mut Self::State,
        t: weir::Timer,
    ) -> Result<(), weir::ProcessError> {
        self.0.close(ctx, windows, t);
        Ok(())
    }
}

/// Scrapes answered by the `--scrapers` threads.
static SCRAPES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Telemetry with its admin server on a free loopback port, and a thread
/// scraping `/metrics` every second.
fn scraped_telemetry(scrapers: usize) -> anyhow::Result<weir::Telemetry> {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let args = weir::TelemetryArgs {
        admin_addr: Some(([127, 0, 0, 1], port).into()),
        ..weir::TelemetryArgs::default()
    };
    let telemetry = weir::Telemetry::init(&args, "warn")?;
    let together = std::sync::Arc::new(std::sync::Barrier::new(scrapers.max(1)));
    for _ in 0..scrapers.max(1) {
        let together = std::sync::Arc::clone(&together);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                together.wait();
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(
                        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    );
                    let mut body = Vec::new();
                    if s.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                        SCRAPES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
    }
    Ok(telemetry)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn config(args: &Args, keys: u64) -> GeneratorConfig {
    GeneratorConfig {
        events: args.events,
        keys,
        seed: 1,
        ..GeneratorConfig::default()
    }
}

/// The cost of producing and decoding the input alone, for comparison.
fn input_only(args: &Args, keys: u64) -> (f64, f64) {
    let mut g = Generator::new(config(args, keys));
    let mut buf = Vec::new();
    let t = Instant::now();
    let mut lines = 0u64;
    let mut decode = Duration::ZERO;
    while !g.is_done() {
        buf.clear();
        lines += g.fill(&mut buf, 256 * 1024) as u64;
        let d = Instant::now();
        for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            std::hint::black_box(cef_alerts::decode_line(line, 2026).ok());
        }
        decode += d.elapsed();
    }
    let total = t.elapsed();
    (
        lines as f64 / (total - decode).as_secs_f64(),
        lines as f64 / decode.as_secs_f64(),
    )
}

fn run_one(args: &Args, keys: u64) -> anyhow::Result<()> {
    let (gen_rate, decode_rate) = input_only(args, keys);
    let dir = tempfile::tempdir()?;
    let settings = Settings {
        partitions: args.partitions,
        state_dir: dir.path().join("state"),
        live_actor_cap: args.live_actor_cap,
        on_panic: args.on_panic,
        checkpoints: (args.checkpoint_interval_ms > 0)
            .then(|| -> anyhow::Result<_> {
                Ok(weir::CheckpointSettings {
                    store: weir::open_store(&dir.path().join("store").display().to_string())?,
                    interval: Some(Duration::from_millis(args.checkpoint_interval_ms)),
                    retain: 3,
                    start_empty: false,
                    job_id: None,
                    prune_grace: weir_state::owner::DEFAULT_PRUNE_GRACE,
                })
            })
            .transpose()?,
        ..Settings::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let telemetry = args
        .metrics
        .then(|| scraped_telemetry(args.scrapers))
        .transpose()?;
    let detector = cef_alerts::BruteForce {
        window_ms: 60_000,
        threshold: 5,
    };
    let report = if args.ttl {
        run_job(
            Expiring(detector),
            &runtime,
            settings,
            telemetry.as_ref(),
            config(args, keys),
            dir.path(),
        )?
    } else {
        run_job(
            detector,
            &runtime,
            settings,
            telemetry.as_ref(),
            config(args, keys),
            dir.path(),
        )?
    };
    println!(
        "ttl={} metrics={} scrapers={} scrapes={} on_panic={:?} events={} keys={} partitions={} cap={} checkpoint_interval_ms={} checkpoints={} alerts={} seconds={:.3} records_per_sec={:.0} peak_rss_mib={:.1} (generate-only {:.0}/s, decode-only {:.0}/s, activations={}, passivations={})",
        if args.ttl { "on" } else { "off" },
        if args.metrics { "on" } else { "off" },
        args.scrapers,
        SCRAPES.load(std::sync::atomic::Ordering::Relaxed),
        args.on_panic,
        report.records,
        keys,
        args.partitions,
        args.live_actor_cap,
        args.checkpoint_interval_ms,
        report.checkpoints.completed,
        report.totals.emitted,
        report.elapsed.as_secs_f64(),
        report.records_per_sec(),
        peak_rss_mib(),
        gen_rate,
        decode_rate,
        report.totals.activations,
        report.totals.passivations,
    );
    Ok(())
}

/// Runs `processor` over the generated input into files in `dir`.
fn run_job<P>(
    processor: P,
    runtime: &tokio::runtime::Runtime,
    settings: Settings,
    telemetry: Option<&weir::Telemetry>,
    input: GeneratorConfig,
    dir: &std::path::Path,
) -> anyhow::Result<weir::Report>
where
    P: weir::Processor<Key = String, In = cef_alerts::Login, Out = cef_alerts::Alert>,
{
    let mut job = Job::new(processor);
    if let Some(t) = telemetry {
        job = job.telemetry(t);
    }
    Ok(runtime.block_on(
        job.settings(settings)
            .source(GeneratorSource::new(input))
            .decoder(|line: &[u8]| cef_alerts::decode_line(line, 2026))
            .sink(JsonLines::file(dir.join("alerts.jsonl"))?)
            .dead_letters(DeadLetterFile::file(dir.join("alerts.jsonl.dlq"))?)
            .run(),
    )?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.one {
        return run_one(&args, args.keys.unwrap_or(10_000));
    }
    if let Some(rounds) = args.metrics_compare {
        return compare_metrics(&args, rounds);
    }
    let keys = args.keys.map_or(vec![10_000, 1_000_000], |k| vec![k]);
    for k in keys {
        let status = child(&args, k, args.metrics).status()?;
        anyhow::ensure!(status.success(), "benchmark with {k} keys failed");
    }
    Ok(())
}

/// Runs one configuration in a child process.
fn child(args: &Args, k: u64, metrics: bool) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own path"));
    c.args([
        "--one",
        "--events",
        &args.events.to_string(),
        "--keys",
        &k.to_string(),
    ]);
    c.args(["--partitions", &args.partitions.to_string()])
        .args(["--live-actor-cap", &args.live_actor_cap.to_string()])
        .args([
            "--checkpoint-interval-ms",
            &args.checkpoint_interval_ms.to_string(),
        ]);
    if metrics {
        c.arg("--metrics");
    }
    if args.ttl {
        c.arg("--ttl");
    }
    c
}

/// Metrics off and on, alternating, `rounds` times each; prints medians.
fn compare_metrics(args: &Args, rounds: usize) -> anyhow::Result<()> {
    let keys = args.keys.unwrap_or(10_000);
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for metrics in [round % 2 == 1, round % 2 == 0] {
            let out = child(args, keys, metrics).output()?;
            anyhow::ensure!(out.status.success(), "benchmark run failed");
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            let rate: f64 = text
                .split_whitespace()
                .find_map(|f| f.strip_prefix("records_per_sec="))
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no records_per_sec in {text}"))?;
            rates[usize::from(metrics)].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(&mut rates[0]);
    let on = median(&mut rates[1]);
    println!(
        "median records/s over {rounds} rounds: metrics off {off:.0}, on {on:.0}, difference {:+.2}%",
        (on - off) / off * 100.0
    );
    Ok(())
}
