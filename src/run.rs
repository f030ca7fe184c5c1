//! A processor and one call make a deployable binary: [`App::run`] parses
//! the standard flags ([`JobArgs`], each also a `WEIR_*` variable) next to
//! the job's own (any `clap::Args` struct), sets up logs, metrics and the
//! admin server, picks the source and sink the flags name, handles SIGTERM
//! and SIGINT (a final checkpoint, then exit 0) and SIGUSR1 (a checkpoint
//! now), shows progress on a terminal, and prints a summary line.
//!
//! | flags | source → sink | guarantee |
//! | --- | --- | --- |
//! | `--input FILE\|-` or `--generate N`, `--output FILE` | file → file | exactly-once |
//! | the same with `--brokers B --output-topic T` | file → Kafka | at-least-once |
//! | `--brokers B --input-topic T --group G --checkpoint-store URL --output-topic T` | Kafka → Kafka | at-least-once |
//! | the same with `--output FILE` instead of `--output-topic` | Kafka → file | at-least-once |
//!
//! ```no_run
//! use weir::run::App;
//! # use weir::{Context, ProcessError, Processor, Decoded};
//! # struct Count;
//! # impl Processor for Count {
//! #     type Key = String; type In = u32; type Out = u64; type State = u64;
//! #     async fn process(&self, _: &mut Context<'_, Self>, _: &mut u64, _: &u32)
//! #         -> Result<(), ProcessError> { Ok(()) }
//! # }
//! #[derive(clap::Args)]
//! struct Flags {
//!     /// Events before an alert.
//!     #[arg(long, default_value_t = 5)]
//!     threshold: u32,
//! }
//!
//! fn main() -> anyhow::Result<()> {
//!     App::new("count", "Counts events per key").run(|flags: &Flags| {
//!         let decoder = |line: &[u8]| -> Result<Decoded<String, u32>, String> {
//!             Ok(Decoded { key: String::from_utf8_lossy(line).into(), timestamp: None, value: 1 })
//!         };
//!         Ok((Count, decoder))
//!     })
//! }
//! ```

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crate::cef::GeneratorConfig;
use crate::kafka::output::KeyOf;
use crate::kafka::settings::DEFAULT_DELIVERY_TIMEOUT;
use crate::kafka::{
    KafkaDeadLetters, KafkaOutput, KafkaSettings, KafkaSink, KafkaSource, Properties, RecordKey,
};
use crate::{
    CheckpointSettings, CheckpointTrigger, DeadLetterFile, Decode, GeneratorSource, Job, JsonLines,
    LineSource, MemoryBudget, Processor, Report, Settings, Telemetry, open_store,
};

mod args;
mod progress;

pub use args::JobArgs;

/// A job binary: see the module docs.
pub struct App<P: Processor> {
    name: &'static str,
    about: &'static str,
    outputs_name: &'static str,
    output_key: Option<KeyOf<P::Out>>,
    generator: bool,
}

/// The command line: the standard flags and the job's own.
#[derive(clap::Parser)]
struct Cli<A: clap::Args> {
    #[command(flatten)]
    job: JobArgs,
    #[command(flatten)]
    app: A,
}

impl<P: Processor> App<P>
where
    P::Key: RecordKey + std::str::FromStr,
    P::Out: Serialize,
{
    /// A binary called `name`, described by `about` in `--help`.
    pub fn new(name: &'static str, about: &'static str) -> Self {
        Self {
            name,
            about,
            outputs_name: "outputs",
            output_key: None,
            generator: false,
        }
    }

    /// What the summary line calls the outputs (`outputs=` by default).
    pub fn outputs_named(mut self, name: &'static str) -> Self {
        self.outputs_name = name;
        self
    }

    /// The record key of each output a file job writes to Kafka (Kafka
    /// input keeps the processor's key); without one, records carry no
    /// key.
    pub fn output_key(mut self, key: impl Fn(&P::Out) -> Cow<'_, [u8]> + Send + 'static) -> Self {
        self.output_key = Some(Box::new(key));
        self
    }

    /// Accepts `--generate N [--keys K] [--seed S]`: synthetic CEF events
    /// as input (for demos and benchmarks).
    pub fn cef_generator(mut self) -> Self {
        self.generator = true;
        self
    }

    /// Parses the command line, builds the processor and decoder from the
    /// job's flags with `build`, and runs the job until its input ends or
    /// a signal stops it.
    pub fn run<A, D>(
        mut self,
        build: impl FnOnce(&A) -> anyhow::Result<(P, D)>,
    ) -> anyhow::Result<()>
    where
        A: clap::Args + FromArgMatches,
        D: Decode<P::Key, P::In>,
    {
        let matches = Cli::<A>::command()
            .name(self.name)
            .about(self.about)
            .get_matches();
        let cli = Cli::<A>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let args = cli.job;
        // Logs (RUST_LOG, default warnings), metrics and, with
        // OTEL_EXPORTER_OTLP_ENDPOINT set, OTLP export.
        let telemetry = Telemetry::init(&args.telemetry, "warn")?;
        // Crash points of the checkpoint protocol, for the crash tests
        // (only with the `failpoints` feature; configured by FAILPOINTS).
        let _failpoints = fail::FailScenario::setup();
        let (processor, decoder) = build(&cli.app)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let job = self.job(&args, processor, decoder, &telemetry)?;
        let progress = progress::Shown::start(&args, &telemetry);
        let report = runtime.block_on(async {
            forward_checkpoint_requests(job.checkpoint_trigger());
            job.run_until(shutdown()).await
        });
        progress.stop();
        print_summary(&report?, self.outputs_name);
        Ok(())
    }

    /// The job the flags describe.
    fn job(
        &mut self,
        args: &JobArgs,
        processor: P,
        decoder: impl Decode<P::Key, P::In>,
        telemetry: &Telemetry,
    ) -> anyhow::Result<Job<P>> {
        let store_url = match (&args.checkpoint_store, &args.input_topic) {
            (Some(url), _) => url.clone(),
            (None, Some(_)) => {
                anyhow::bail!("Kafka mode needs --checkpoint-store (shared by the workers)")
            }
            (None, None) => args.state_dir.join("snapshots").display().to_string(),
        };
        let mut job = Job::new(processor)
            .settings(settings(args, &store_url)?)
            .telemetry(telemetry)
            .decoder(decoder);
        if args.serve_state {
            job = job.serve_state(self.name);
        }
        let job = self.with_source(job, args)?;
        self.with_sinks(job, args)
    }

    /// `--input-topic`, `--input` or `--generate`.
    fn with_source(&self, job: Job<P>, args: &JobArgs) -> anyhow::Result<Job<P>> {
        Ok(match (&args.input_topic, &args.input, args.generate) {
            (Some(topic), None, None) => job.source(KafkaSource::new(kafka_settings(args, topic)?)),
            (None, Some(path), None) if path == "-" => job.source(LineSource::stdin()),
            (None, Some(path), None) => job.source(LineSource::open(path)?),
            (None, None, Some(_)) if !self.generator => {
                anyhow::bail!("{} has no generator: give --input FILE", self.name)
            }
            (None, None, Some(events)) => job.source(GeneratorSource::new(GeneratorConfig {
                events,
                keys: args.keys.max(1),
                seed: args.seed,
                ..GeneratorConfig::default()
            })),
            (None, None, None) => {
                anyhow::bail!("give --input FILE, --generate N or --input-topic T")
            }
            _ => anyhow::bail!("give one input: --input-topic, --input or --generate"),
        })
    }

    /// `--output FILE` or `--output-topic T`. Kafka input writes to its
    /// output topic with the processor's key; file input through
    /// [`KafkaOutput`], keyed by [`App::output_key`].
    fn with_sinks(&mut self, job: Job<P>, args: &JobArgs) -> anyhow::Result<Job<P>> {
        Ok(match (&args.output, &args.output_topic) {
            (Some(output), None) => job
                .sink(JsonLines::file(output)?)
                .dead_letters(DeadLetterFile::file(dlq_path(output))?),
            (None, Some(_)) if args.input_topic.is_some() => job,
            (None, Some(topic)) => {
                let brokers = args
                    .brokers
                    .as_deref()
                    .context("--output-topic needs --brokers")?;
                let producer: Vec<(String, String)> =
                    kafka_properties(args)?.for_producer().cloned().collect();
                let sink = Arc::new(KafkaSink::with_config(
                    brokers,
                    topic,
                    args.dlq_topic.as_deref(),
                    &producer,
                )?);
                let source = args.input.clone().unwrap_or_else(|| "generator".into());
                let key = self
                    .output_key
                    .take()
                    .unwrap_or_else(|| Box::new(|_: &P::Out| Cow::Borrowed(&[][..])));
                job.sink(KafkaOutput::new(
                    Arc::clone(&sink),
                    key,
                    DEFAULT_DELIVERY_TIMEOUT,
                ))
                .dead_letters(KafkaDeadLetters::new(
                    sink,
                    &source,
                    DEFAULT_DELIVERY_TIMEOUT,
                ))
            }
            _ => anyhow::bail!("give one of --output FILE and --output-topic T"),
        })
    }
}

/// The Kafka settings of `--input-topic topic` and the flags around it.
fn kafka_settings(args: &JobArgs, topic: &str) -> anyhow::Result<KafkaSettings> {
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .with_context(|| format!("Kafka mode needs {flag}"))
    };
    let mut kafka = KafkaSettings::new(
        &need(&args.brokers, "--brokers")?,
        topic,
        args.output_topic.as_deref().unwrap_or_default(),
        &need(&args.group, "--group")?,
    );
    kafka.dead_letter_topic = args.dlq_topic.clone();
    kafka.instance_id = args.group_instance_id.clone();
    kafka.revoke_deadline = Duration::from_millis(args.revoke_deadline_ms);
    kafka.stall_after = Duration::from_secs(args.stall_after);
    kafka.stall_timeout = (args.stall_timeout > 0).then(|| Duration::from_secs(args.stall_timeout));
    kafka.on_offset_reset = args.on_offset_reset;
    kafka.properties = kafka_properties(args)?;
    Ok(kafka)
}

/// The summary line: `records=… stopped=…`.
fn print_summary(report: &Report, outputs_name: &str) {
    match &report.kafka {
        Some(r) => eprintln!(
            "records={} dead_lettered={} seconds={:.3} records_per_sec={:.0} checkpoints={} checkpoint_failures={} assigned={} restored={} stopped=true",
            r.records,
            r.decode_errors,
            report.elapsed.as_secs_f64(),
            report.records_per_sec(),
            r.checkpoints,
            r.checkpoint_failures,
            r.assigned,
            r.restored,
        ),
        None => eprintln!(
            "records={} {outputs_name}={} dead_lettered={} late={} seconds={:.3} records_per_sec={:.0} restored_checkpoint={} checkpoints={} stopped={}",
            report.records,
            report.totals.emitted,
            report.dead_lettered(),
            report.totals.late,
            report.elapsed.as_secs_f64(),
            report.records_per_sec(),
            report.recovery.checkpoint_id(),
            report.checkpoints.count,
            report.stopped,
        ),
    }
}

/// Where dead letters of `--output FILE` go.
fn dlq_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".dlq");
    PathBuf::from(s)
}

/// librdkafka properties: the --kafka-config file, then the option flags.
fn kafka_properties(args: &JobArgs) -> anyhow::Result<Properties> {
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

/// Job settings from the standard flags.
fn settings(args: &JobArgs, store_url: &str) -> anyhow::Result<Settings> {
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
        max_future: (args.max_future_ms > 0).then(|| Duration::from_millis(args.max_future_ms)),
        max_record_bytes: args.max_record_bytes,
        on_panic: args.on_panic,
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
