//! The standard flags of a job binary.

use std::path::PathBuf;

use clap::ArgGroup;

use crate::kafka::OnOffsetReset;
use crate::telemetry::TelemetryArgs;

/// The flags every job binary made with [`App`](super::App) takes, each
/// also an environment variable (`--state-dir` is `WEIR_STATE_DIR`, and so
/// on; the repeatable `--kafka-option`, `--consumer-option` and
/// `--producer-option` are `WEIR_KAFKA_OPTIONS`, `WEIR_CONSUMER_OPTIONS`
/// and `WEIR_PRODUCER_OPTIONS`, one `KEY=VALUE` per line).
#[derive(clap::Args, Debug, Clone)]
#[command(group(ArgGroup::new("in").required(true).multiple(true).args(["input", "generate", "input_topic"])))]
pub struct JobArgs {
    /// CEF lines to read ('-' for stdin).
    #[arg(long, env = "WEIR_INPUT")]
    pub input: Option<String>,
    /// Generate N synthetic events instead of reading input (jobs that
    /// have a generator).
    #[arg(long, env = "WEIR_GENERATE", value_name = "N")]
    pub generate: Option<u64>,
    /// Distinct source addresses in generated events.
    #[arg(
        long,
        env = "WEIR_KEYS",
        default_value_t = 10_000,
        requires = "generate"
    )]
    pub keys: u64,
    /// Seed of generated events.
    #[arg(long, env = "WEIR_SEED", default_value_t = 1, requires = "generate")]
    pub seed: u64,
    /// Alerts, one JSON line each; dead letters go to <output>.dlq. With
    /// --input-topic: a Kafka → file job.
    #[arg(long, env = "WEIR_OUTPUT")]
    pub output: Option<PathBuf>,
    /// The Kafka brokers (host:port[,host:port...]), for --input-topic,
    /// --output-topic or both.
    #[arg(long, env = "WEIR_BROKERS")]
    pub brokers: Option<String>,
    /// Kafka mode: the topic of CEF lines, keyed by src (needs --group and
    /// --checkpoint-store).
    #[arg(long, env = "WEIR_INPUT_TOPIC", requires = "brokers")]
    pub input_topic: Option<String>,
    /// The topic alerts go to, keyed by src. With --input or --generate: a
    /// file → Kafka job.
    #[arg(long, env = "WEIR_OUTPUT_TOPIC", requires = "brokers")]
    pub output_topic: Option<String>,
    /// The topic dead letters go to (with --output-topic).
    #[arg(long, env = "WEIR_DLQ_TOPIC", requires = "brokers")]
    pub dlq_topic: Option<String>,
    /// Kafka mode: the consumer group the workers share.
    #[arg(long, env = "WEIR_GROUP", requires = "brokers")]
    pub group: Option<String>,
    /// Kafka mode: static group membership (a stable pod name).
    #[arg(long, env = "WEIR_GROUP_INSTANCE_ID", requires = "brokers")]
    pub group_instance_id: Option<String>,
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
    pub kafka_config: Option<PathBuf>,
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
    pub kafka_options: Vec<String>,
    /// Kafka mode: a librdkafka property for the consumer only
    /// (repeatable), e.g. session.timeout.ms=10000.
    #[arg(
        long = "consumer-option",
        env = "WEIR_CONSUMER_OPTIONS",
        value_delimiter = '\n',
        value_name = "KEY=VALUE",
        requires = "brokers"
    )]
    pub consumer_options: Vec<String>,
    /// Kafka mode: a librdkafka property for the producer only
    /// (repeatable), e.g. compression.type=lz4.
    #[arg(
        long = "producer-option",
        env = "WEIR_PRODUCER_OPTIONS",
        value_delimiter = '\n',
        value_name = "KEY=VALUE",
        requires = "brokers"
    )]
    pub producer_options: Vec<String>,
    /// Kafka mode: most time a revoke spends on final checkpoints, ms.
    #[arg(long, env = "WEIR_REVOKE_DEADLINE_MS", default_value_t = 30_000)]
    pub revoke_deadline_ms: u64,
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
    pub stall_after: u64,
    /// Kafka mode: a partition stalled this long stops the worker with an
    /// error naming the topic, partition and offset (0: never).
    #[arg(
        long,
        env = "WEIR_STALL_TIMEOUT",
        value_name = "SECS",
        default_value_t = 300,
        requires = "brokers"
    )]
    pub stall_timeout: u64,
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
    pub on_offset_reset: OnOffsetReset,
    /// Where RocksDB state lives.
    #[arg(long, env = "WEIR_STATE_DIR")]
    pub state_dir: PathBuf,
    #[arg(long, env = "WEIR_PARTITIONS", default_value_t = 4)]
    pub partitions: u32,
    #[arg(long, env = "WEIR_MAX_OUT_OF_ORDERNESS_MS", default_value_t = 5_000)]
    pub max_out_of_orderness_ms: u64,
    /// Kafka input: a partition without records this long follows
    /// processing time with its watermark, so windows close when input
    /// stops (0: never). File, stdin and generated input close windows
    /// with event time and at their end only, so replays are deterministic.
    #[arg(long, env = "WEIR_IDLE_WATERMARK_MS", default_value_t = 10_000)]
    pub idle_watermark_ms: u64,
    /// A record whose event time is more than this ahead of the clock is
    /// dead-lettered (reason `future_timestamp`) and never moves the
    /// watermark (0: no bound).
    #[arg(long, env = "WEIR_MAX_FUTURE_MS", default_value_t = 3_600_000)]
    pub max_future_ms: u64,
    /// Longest line or Kafka record, in bytes: a longer one is
    /// dead-lettered (reason `too_large`) with its first 4 KiB.
    #[arg(long, env = "WEIR_MAX_RECORD_BYTES", default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
    /// Answer `GET /state/<name>/<key>` on the admin server with the key's
    /// state as JSON (read-only). A Kafka worker answers for the partitions
    /// it owns, and 404 with the owner's partition for other keys.
    #[arg(long, env = "WEIR_SERVE_STATE", requires = "admin_addr")]
    pub serve_state: bool,
    /// A panic in the processor: `stop` the job with an error naming the
    /// key and position, or roll the key back, `dead-letter` the input
    /// (reason `panic: ...`) and go on.
    #[arg(
        long,
        env = "WEIR_ON_PANIC",
        value_name = "stop|dead-letter",
        default_value = "stop"
    )]
    pub on_panic: weir_actors::OnPanic,
    /// Most key actors live at once (all partitions together).
    #[arg(long, env = "WEIR_LIVE_ACTOR_CAP", default_value_t = 100_000)]
    pub live_actor_cap: usize,
    /// RocksDB memory budget (block cache and memtables), MiB.
    #[arg(long, env = "WEIR_MEMORY_MIB", default_value_t = 64)]
    pub memory_mib: usize,
    /// Time between checkpoints, ms (0: only at shutdown and at the end).
    #[arg(long, env = "WEIR_CHECKPOINT_INTERVAL_MS", default_value_t = 1_000)]
    pub checkpoint_interval_ms: u64,
    /// Where checkpoints go: a directory or file:// URL (default:
    /// <state-dir>/snapshots).
    #[arg(long, env = "WEIR_CHECKPOINT_STORE")]
    pub checkpoint_store: Option<String>,
    /// Complete checkpoints kept in the store.
    #[arg(long, env = "WEIR_CHECKPOINT_RETAIN", default_value_t = 3)]
    pub checkpoint_retain: usize,
    /// Start from empty state when checkpoints exist but none is usable.
    #[arg(long, env = "WEIR_START_EMPTY")]
    pub start_empty: bool,
    /// The job the checkpoints belong to (they live under jobs/<id>/ in the
    /// store). Default: the group in Kafka mode; in file mode the id
    /// recorded in the state directory, else one derived from the input.
    #[arg(long, env = "WEIR_JOB_ID")]
    pub job_id: Option<String>,
    /// Seconds pruning leaves unreferenced checkpoint files alone after
    /// they were written (an upload in progress keeps its files).
    #[arg(long, env = "WEIR_PRUNE_GRACE", default_value_t = 600)]
    pub prune_grace: u64,
    /// No progress line on the terminal (it is shown only when stderr is
    /// one).
    #[arg(long, env = "WEIR_QUIET")]
    pub quiet: bool,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}
