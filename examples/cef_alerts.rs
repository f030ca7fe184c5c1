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
//! `/readyz`; `--log-format json` writes JSON logs.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgGroup, Parser};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use weir::cef::GeneratorConfig;
use weir::kafka::{
    KafkaDeadLetters, KafkaJob, KafkaOutput, KafkaReport, KafkaSettings, KafkaSink, Properties,
};
use weir::{
    CheckpointSettings, CheckpointTrigger, Clock, Context, DeadLetterFile, Decoded,
    GeneratorSource, Job, JsonLines, LineSource, MemoryBudget, ProcessError, Processor, Report,
    Settings, SystemClock, Telemetry, TelemetryArgs, TimeDomain, Timer, open_store,
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

#[derive(Parser, Debug)]
#[command(name = "cef_alerts", about = "Brute-force login alerts over CEF logs")]
#[command(group(ArgGroup::new("in").required(true).multiple(true).args(["input", "generate", "input_topic"])))]
struct Args {
    /// CEF lines to read ('-' for stdin).
    #[arg(long, env = "WEIR_INPUT")]
    input: Option<String>,
    /// Generate N synthetic events instead of reading input.
    #[arg(long, env = "WEIR_GENERATE", value_name = "N")]
    generate: Option<u64>,
    /// Distinct source addresses in generated events.
    #[arg(
        long,
        env = "WEIR_KEYS",
        default_value_t = 10_000,
        requires = "generate"
    )]
    keys: u64,
    /// Seed of generated events.
    #[arg(long, env = "WEIR_SEED", default_value_t = 1, requires = "generate")]
    seed: u64,
    /// Alerts, one JSON line each; dead letters go to <output>.dlq. With
    /// --input-topic: a Kafka → file job.
    #[arg(long, env = "WEIR_OUTPUT")]
    output: Option<PathBuf>,
    /// The Kafka brokers (host:port[,host:port...]), for --input-topic,
    /// --output-topic or both.
    #[arg(long, env = "WEIR_BROKERS")]
    brokers: Option<String>,
    /// Kafka mode: the topic of CEF lines, keyed by src (needs --group and
    /// --checkpoint-store).
    #[arg(long, env = "WEIR_INPUT_TOPIC", requires = "brokers")]
    input_topic: Option<String>,
    /// The topic alerts go to, keyed by src. With --input or --generate: a
    /// file → Kafka job.
    #[arg(long, env = "WEIR_OUTPUT_TOPIC", requires = "brokers")]
    output_topic: Option<String>,
    /// The topic dead letters go to (with --output-topic).
    #[arg(long, env = "WEIR_DLQ_TOPIC", requires = "brokers")]
    dlq_topic: Option<String>,
    /// Kafka mode: the consumer group the workers share.
    #[arg(long, env = "WEIR_GROUP", requires = "brokers")]
    group: Option<String>,
    /// Kafka mode: static group membership (a stable pod name).
    #[arg(long, env = "WEIR_GROUP_INSTANCE_ID", requires = "brokers")]
    group_instance_id: Option<String>,
    /// Kafka mode: a librdkafka properties file in the Java client's
    /// `client.properties` format (keys prefixed `consumer.` or `producer.`
    /// apply to that client only), e.g. mounted from a Kubernetes Secret so
    /// credentials stay off the command line. The --*-option flags apply
    /// after it. Secret values are never printed.
    #[arg(
        long,
        env = "WEIR_KAFKA_CONFIG",
        value_name = "FILE",
        requires = "brokers"
    )]
    kafka_config: Option<PathBuf>,
    /// Kafka mode: a librdkafka property for the consumer and producer
    /// (repeatable), e.g. security.protocol=ssl. The variable holds one per
    /// line (so a secret can come from the environment, not the command
    /// line).
    #[arg(
        long = "kafka-option",
        env = "WEIR_KAFKA_OPTIONS",
        value_delimiter = '\n',
        value_name = "KEY=VALUE",
        requires = "brokers"
    )]
    kafka_options: Vec<String>,
    /// Kafka mode: a librdkafka property for the consumer only
    /// (repeatable), e.g. session.timeout.ms=10000.
    #[arg(
        long = "consumer-option",
        env = "WEIR_CONSUMER_OPTIONS",
        value_delimiter = '\n',
        value_name = "KEY=VALUE",
        requires = "brokers"
    )]
    consumer_options: Vec<String>,
    /// Kafka mode: a librdkafka property for the producer only
    /// (repeatable), e.g. compression.type=lz4.
    #[arg(
        long = "producer-option",
        env = "WEIR_PRODUCER_OPTIONS",
        value_delimiter = '\n',
        value_name = "KEY=VALUE",
        requires = "brokers"
    )]
    producer_options: Vec<String>,
    /// Kafka mode: most time a revoke spends on final checkpoints, ms.
    #[arg(long, env = "WEIR_REVOKE_DEADLINE_MS", default_value_t = 30_000)]
    revoke_deadline_ms: u64,
    /// Kafka mode: a partition with records to read that reads none for
    /// this long is stalled: logged at WARN, counted, and /readyz answers
    /// not ready until it moves.
    #[arg(
        long,
        env = "WEIR_STALL_AFTER",
        value_name = "SECS",
        default_value_t = 30,
        requires = "brokers"
    )]
    stall_after: u64,
    /// Kafka mode: a partition stalled this long stops the worker with an
    /// error naming the topic, partition and offset (0: never).
    #[arg(
        long,
        env = "WEIR_STALL_TIMEOUT",
        value_name = "SECS",
        default_value_t = 300,
        requires = "brokers"
    )]
    stall_timeout: u64,
    /// Kafka mode: when retention removed input records before they were
    /// processed (the checkpoint's position is older than the log's
    /// start): `earliest` logs at WARN, counts and goes on; `fail` stops
    /// with an error. Holes in the log are always logged and counted.
    #[arg(
        long,
        env = "WEIR_ON_OFFSET_RESET",
        value_name = "earliest|fail",
        default_value = "earliest",
        requires = "brokers"
    )]
    on_offset_reset: weir::kafka::OnOffsetReset,
    /// Where RocksDB state lives.
    #[arg(long, env = "WEIR_STATE_DIR")]
    state_dir: PathBuf,
    #[arg(long, env = "WEIR_PARTITIONS", default_value_t = 4)]
    partitions: u32,
    #[arg(long, env = "WEIR_WINDOW_SECS", default_value_t = 60)]
    window_secs: u64,
    #[arg(long, env = "WEIR_THRESHOLD", default_value_t = 5)]
    threshold: u32,
    #[arg(long, env = "WEIR_MAX_OUT_OF_ORDERNESS_MS", default_value_t = 5_000)]
    max_out_of_orderness_ms: u64,
    /// A partition without records this long follows processing time with
    /// its watermark, so windows close when input stops (0: never; then only
    /// later records, or the end of a file, close them).
    #[arg(long, env = "WEIR_IDLE_WATERMARK_MS", default_value_t = 10_000)]
    idle_watermark_ms: u64,
    /// Most key actors live at once (all partitions together).
    #[arg(long, env = "WEIR_LIVE_ACTOR_CAP", default_value_t = 100_000)]
    live_actor_cap: usize,
    /// RocksDB memory budget (block cache and memtables), MiB.
    #[arg(long, env = "WEIR_MEMORY_MIB", default_value_t = 64)]
    memory_mib: usize,
    /// Time between checkpoints, ms (0: only at shutdown and at the end).
    #[arg(long, env = "WEIR_CHECKPOINT_INTERVAL_MS", default_value_t = 1_000)]
    checkpoint_interval_ms: u64,
    /// Where checkpoints go: a directory or file:// URL (default:
    /// <state-dir>/snapshots).
    #[arg(long, env = "WEIR_CHECKPOINT_STORE")]
    checkpoint_store: Option<String>,
    /// Complete checkpoints kept in the store.
    #[arg(long, env = "WEIR_CHECKPOINT_RETAIN", default_value_t = 3)]
    checkpoint_retain: usize,
    /// Start from empty state when checkpoints exist but none is usable.
    #[arg(long, env = "WEIR_START_EMPTY")]
    start_empty: bool,
    /// The job the checkpoints belong to (they live under jobs/<id>/ in the
    /// store). Default: the group in Kafka mode; in file mode the id
    /// recorded in the state directory, else one derived from the input.
    #[arg(long, env = "WEIR_JOB_ID")]
    job_id: Option<String>,
    /// Seconds pruning leaves unreferenced checkpoint files alone after
    /// they were written (an upload in progress keeps its files).
    #[arg(long, env = "WEIR_PRUNE_GRACE", default_value_t = 600)]
    prune_grace: u64,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

fn dlq_path(output: &std::path::Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".dlq");
    PathBuf::from(s)
}

async fn run(args: Args, telemetry: &Telemetry) -> anyhow::Result<Report> {
    let store_url = args
        .checkpoint_store
        .clone()
        .unwrap_or_else(|| args.state_dir.join("snapshots").display().to_string());
    let settings = settings(&args, &store_url)?;
    let processor = detector(&args);
    let job = Job::new(processor)
        .settings(settings)
        .telemetry(telemetry)
        .decoder(|line: &[u8]| decode_line(line, SystemClock.now_ms()));
    let job = match (&args.output, &args.output_topic) {
        (Some(output), None) => job
            .sink(JsonLines::file(output)?)
            .dead_letters(DeadLetterFile::file(dlq_path(output))?),
        (None, Some(topic)) => {
            // File → Kafka: alerts keyed by src, like Kafka mode's.
            let brokers = args
                .brokers
                .as_deref()
                .context("--output-topic needs --brokers")?;
            let properties = kafka_properties(&args)?;
            let producer: Vec<(String, String)> = properties.for_producer().cloned().collect();
            let sink = Arc::new(KafkaSink::with_config(
                brokers,
                topic,
                args.dlq_topic.as_deref(),
                &producer,
            )?);
            let source = args.input.clone().unwrap_or_else(|| "generator".into());
            job.sink(KafkaOutput::new(
                Arc::clone(&sink),
                |a: &Alert| Cow::Borrowed(a.src.as_bytes()),
                DELIVERY_TIMEOUT,
            ))
            .dead_letters(KafkaDeadLetters::new(sink, &source, DELIVERY_TIMEOUT))
        }
        _ => anyhow::bail!("give one of --output FILE and --output-topic T"),
    };
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
    forward_checkpoint_requests(job.checkpoint_trigger());
    Ok(job.run_until(shutdown()).await?)
}

/// SIGUSR1 asks for a checkpoint now.
fn forward_checkpoint_requests(trigger: CheckpointTrigger) {
    tokio::spawn(async move {
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            trigger.request();
        }
    });
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown() {
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
}

/// Kafka mode: one worker of the group, until SIGTERM or SIGINT.
async fn run_kafka(args: Args, telemetry: &Telemetry) -> anyhow::Result<KafkaReport> {
    let store_url = args
        .checkpoint_store
        .clone()
        .context("Kafka mode needs --checkpoint-store (shared by the workers)")?;
    let settings = settings(&args, &store_url)?;
    let processor = detector(&args);
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .with_context(|| format!("Kafka mode needs {flag}"))
    };
    if args.input.is_some() || args.generate.is_some() {
        anyhow::bail!("give one input: --input-topic, --input or --generate");
    }
    let mut kafka = KafkaSettings::new(
        &need(&args.brokers, "--brokers")?,
        &need(&args.input_topic, "--input-topic")?,
        args.output_topic.as_deref().unwrap_or_default(),
        &need(&args.group, "--group")?,
    );
    kafka.dead_letter_topic = args.dlq_topic.clone();
    kafka.instance_id = args.group_instance_id.clone();
    kafka.revoke_deadline = Duration::from_millis(args.revoke_deadline_ms);
    kafka.stall_after = Duration::from_secs(args.stall_after);
    kafka.stall_timeout = (args.stall_timeout > 0).then(|| Duration::from_secs(args.stall_timeout));
    kafka.on_offset_reset = args.on_offset_reset;
    kafka.properties = kafka_properties(&args)?;
    let job = KafkaJob::new(processor)
        .settings(settings)
        .telemetry(telemetry)
        .kafka(kafka)
        .decoder(|line: &[u8]| decode_line(line, SystemClock.now_ms()));
    let job = match (&args.output, &args.output_topic) {
        (None, Some(_)) => job,
        // Kafka → file: at-least-once, appended to the worker's file.
        (Some(output), None) => job.sinks(
            JsonLines::file(output)?,
            Some(Box::new(DeadLetterFile::file(dlq_path(output))?)),
        ),
        _ => anyhow::bail!("give one of --output FILE and --output-topic T"),
    };
    forward_checkpoint_requests(job.checkpoint_trigger());
    Ok(job.run_until(shutdown()).await?)
}

/// How long a checkpoint waits for the broker to acknowledge outputs.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// librdkafka properties: the --kafka-config file, then the option flags.
fn kafka_properties(args: &Args) -> anyhow::Result<Properties> {
    let pairs = |flag: &str, options: &[String]| -> anyhow::Result<Vec<(String, String)>> {
        options
            .iter()
            .map(|option| {
                let (k, v) = option
                    .split_once('=')
                    .with_context(|| format!("--{flag} {option}: expected KEY=VALUE"))?;
                Ok((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    };
    let mut properties = match &args.kafka_config {
        Some(path) => Properties::read(path)?,
        None => Properties::default(),
    };
    properties.extend(Properties {
        client: pairs("kafka-option", &args.kafka_options)?,
        consumer: pairs("consumer-option", &args.consumer_options)?,
        producer: pairs("producer-option", &args.producer_options)?,
    });
    Ok(properties)
}

fn detector(args: &Args) -> BruteForce {
    BruteForce {
        window_ms: args.window_secs as i64 * 1000,
        threshold: args.threshold,
    }
}

/// Job settings shared by both modes.
fn settings(args: &Args, store_url: &str) -> anyhow::Result<Settings> {
    if args.window_secs == 0 {
        anyhow::bail!("--window-secs must be at least 1");
    }
    Ok(Settings {
        partitions: args.partitions,
        state_dir: args.state_dir.clone(),
        memory: MemoryBudget {
            bytes: args.memory_mib << 20,
        },
        live_actor_cap: args.live_actor_cap,
        max_out_of_orderness: Duration::from_millis(args.max_out_of_orderness_ms),
        idle_watermark: (args.idle_watermark_ms > 0)
            .then(|| Duration::from_millis(args.idle_watermark_ms)),
        checkpoints: Some(CheckpointSettings {
            store: open_store(store_url)?,
            interval: (args.checkpoint_interval_ms > 0)
                .then(|| Duration::from_millis(args.checkpoint_interval_ms)),
            retain: args.checkpoint_retain,
            start_empty: args.start_empty,
            job_id: args.job_id.clone(),
            prune_grace: Duration::from_secs(args.prune_grace),
        }),
        ..Settings::default()
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs (RUST_LOG, default warnings), metrics and, with
    // OTEL_EXPORTER_OTLP_ENDPOINT set, OTLP export.
    let telemetry = Telemetry::init(&args.telemetry, "warn")?;
    // Crash points of the checkpoint protocol, for the crash tests (only
    // with the `failpoints` feature; configured by FAILPOINTS).
    let _failpoints = fail::FailScenario::setup();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if args.input_topic.is_some() {
        let r = runtime.block_on(run_kafka(args, &telemetry))?;
        eprintln!(
            "records={} dead_lettered={} seconds={:.3} records_per_sec={:.0} checkpoints={} checkpoint_failures={} assigned={} restored={} stopped=true",
            r.records,
            r.decode_errors,
            r.elapsed.as_secs_f64(),
            r.records as f64 / r.elapsed.as_secs_f64().max(1e-9),
            r.checkpoints,
            r.checkpoint_failures,
            r.assigned,
            r.restored,
        );
        return Ok(());
    }
    let report = runtime.block_on(run(args, &telemetry))?;
    eprintln!(
        "records={} alerts={} dead_lettered={} late={} seconds={:.3} records_per_sec={:.0} restored_checkpoint={} checkpoints={} stopped={}",
        report.lines,
        report.totals.emitted,
        report.dead_lettered(),
        report.totals.late,
        report.elapsed.as_secs_f64(),
        report.lines_per_sec(),
        report.recovery.checkpoint_id(),
        report.checkpoints.count,
        report.stopped,
    );
    Ok(())
}
