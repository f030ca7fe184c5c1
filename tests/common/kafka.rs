//! Kafka-mode test support: producing the data set keyed by `src`, running
//! `cef_alerts` workers, reading alerts and dead letters back, and reading
//! what the workers logged about their partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::broker::Kafka;
use super::{Reference, START, example_bin};

/// The `src` of a CEF line, if it has one.
pub fn src_of(line: &[u8]) -> Option<&[u8]> {
    // The first extension follows the header's last `|`, the others a space.
    let at = (1..line.len().saturating_sub(3))
        .find(|&i| &line[i..i + 4] == b"src=" && matches!(line[i - 1], b' ' | b'|'))?
        + 4;
    let rest = &line[at..];
    let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The data set's lines (line ends removed, blank lines skipped).
pub fn lines(text: &[u8]) -> Vec<&[u8]> {
    text.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect()
}

/// A producer writing batches of up to 10,000 records, as real producers
/// do, where the broker serves them correctly (the mock cluster), and one
/// record per batch on tansu. tansu 0.6 answers a fetch from an offset
/// inside a record batch with the batches after it (or nothing), so a
/// consumer that seeks to a checkpoint or resumes a paused partition
/// mid-batch would silently skip records; Apache Kafka and Redpanda return
/// the whole batch and the client drops the records before the offset.
/// `codec` is the batches' `compression.type` (a one-record batch is
/// compressed like any other).
fn producer(broker: &dyn Kafka, codec: &str) -> ThreadedProducer<Delivery> {
    let batch = if broker.serves_batches() {
        "10000"
    } else {
        "1"
    };
    client_config(broker)
        // Keys are placed as Kafka's Java clients place them (librdkafka's
        // default hashes with CRC32): weir's queries and re-sharding
        // assume this partitioner.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("batch.num.messages", batch)
        .set("compression.type", codec)
        .set("enable.idempotence", "true")
        // A slow broker on a loaded machine delays, never drops, the input.
        .set("message.timeout.ms", "900000")
        .create_with_context(Delivery::default())
        .expect("producer")
}

/// Counts records the producer gave up on: a test's input must be whole,
/// or its reference is not the truth.
#[derive(Default)]
pub struct Delivery {
    failed: std::sync::atomic::AtomicU64,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Waits until everything `p` was given is delivered; fails the test if
/// any record was not.
fn flush_all(p: &ThreadedProducer<Delivery>, what: &str) {
    p.flush(Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{what} not produced: {e}"));
    let failed = p
        .context()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        failed, 0,
        "{failed} records of the {what} were not delivered"
    );
}

/// Produces `lines` to `topic` keyed by their `src` (lines without one are
/// unkeyed), at most `per_sec` per second when given.
pub fn produce(broker: &dyn Kafka, topic: &str, lines: &[&[u8]], per_sec: Option<u64>) {
    produce_compressed(broker, topic, lines, per_sec, "none");
}

/// Like [`produce`], in batches compressed with `codec`.
pub fn produce_compressed(
    broker: &dyn Kafka,
    topic: &str,
    lines: &[&[u8]],
    per_sec: Option<u64>,
    codec: &str,
) {
    let p = producer(broker, codec);
    let started = Instant::now();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rate) = per_sec
            && (i as u64).is_multiple_of(1000)
        {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(*line);
        if let Some(src) = src_of(line) {
            record = record.key(src);
        }
        send_waiting(&p, record);
    }
    flush_all(&p, "input");
}

/// Produces `lines` to `topic` keyed by their `src`, lz4 batches: into the
/// partition `place` gives a line, or where the partitioner puts its key
/// when it gives none.
pub fn produce_placed(
    broker: &dyn Kafka,
    topic: &str,
    lines: &[&[u8]],
    place: impl Fn(&[u8]) -> Option<i32>,
) {
    let p = producer(broker, "lz4");
    for line in lines {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(*line);
        if let Some(src) = src_of(line) {
            record = record.key(src);
        }
        if let Some(partition) = place(line) {
            record = record.partition(partition);
        }
        send_waiting(&p, record);
    }
    flush_all(&p, "input");
}

/// Queues `record`, waiting while the producer's queue is full.
pub fn send_waiting<C, K, V>(p: &ThreadedProducer<C>, mut record: BaseRecord<'_, K, V>)
where
    C: ProducerContext<DeliveryOpaque = ()>,
    K: rdkafka::message::ToBytes + ?Sized,
    V: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// One event far in the future into each partition: every window before it
/// closes (the marker's own window never alerts).
pub fn produce_end_markers(broker: &dyn Kafka, topic: &str, partitions: i32) {
    let p = producer(broker, "none");
    for partition in 0..partitions {
        let line = format!(
            "CEF:0|Test|Suite|1|300|End|1|src=end-marker-{partition} rt={}",
            START + 30 * 86_400_000
        );
        let key = format!("end-marker-{partition}");
        p.send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&line),
        )
        .map_err(|(e, _)| e)
        .expect("marker queued");
    }
    flush_all(&p, "end markers");
}

/// A record read back: key, value, headers.
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// A client configuration for `broker` (its TLS settings included).
pub fn client_config(broker: &dyn Kafka) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker.bootstrap());
    for (k, v) in broker.client_options() {
        config.set(k, v);
    }
    config
}

fn consumer(broker: &dyn Kafka, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = client_config(broker)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Reads `topic` until `done` says so (checked as records arrive) or
/// `limit` passes; then drains for `settle` more.
pub fn read_until(
    broker: &dyn Kafka,
    topic: &str,
    limit: Duration,
    settle: Duration,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let c = consumer(broker, topic);
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if settle_until.is_some_and(|t| now >= t) || (settle_until.is_none() && now >= deadline) {
            return out;
        }
        if let Some(Ok(msg)) = c.poll(Duration::from_millis(200)) {
            let mut headers = BTreeMap::new();
            if let Some(h) = msg.headers() {
                for header in h.iter() {
                    let value = header
                        .value
                        .map(|v| String::from_utf8_lossy(v).to_string())
                        .unwrap_or_default();
                    headers.insert(header.key.to_string(), value);
                }
            }
            out.push(Record {
                key: msg.key().map(<[u8]>::to_vec),
                value: msg.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        if settle_until.is_none() && done(&out) {
            settle_until = Some(Instant::now() + settle);
        }
    }
}

/// An alert record as the reference writes it; panics on a malformed one
/// or one whose key is not its `src`.
pub fn alert_of(r: &Record) -> (String, i64, u32, u32, i64) {
    let v: serde_json::Value = serde_json::from_slice(&r.value).expect("alert is JSON");
    let src = v["src"].as_str().expect("src").to_string();
    assert_eq!(
        r.key.as_deref(),
        Some(src.as_bytes()),
        "an alert's key is its src"
    );
    (
        src,
        v["window_start"].as_i64().expect("window_start"),
        v["failed"].as_u64().expect("failed") as u32,
        v["events"].as_u64().expect("events") as u32,
        v["last_seen"].as_i64().expect("last_seen"),
    )
}

/// Reads alerts from `topic` until every reference alert is there (or
/// `limit` passes), then a little longer for extras. Returns them all,
/// duplicates included.
pub fn read_alerts(
    broker: &dyn Kafka,
    topic: &str,
    reference: &Reference,
    limit: Duration,
) -> Vec<(String, i64, u32, u32, i64)> {
    let mut seen = BTreeSet::new();
    let mut looked = 0;
    let records = read_until(broker, topic, limit, Duration::from_secs(3), |rs| {
        seen.extend(rs[looked..].iter().map(alert_of));
        looked = rs.len();
        reference.is_subset(&seen)
    });
    records.iter().map(alert_of).collect()
}

/// A `cef_alerts` worker process in Kafka mode, logging to a file.
pub struct Worker {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

/// The topics and store a group of workers share.
pub struct Group<'a> {
    pub broker: &'a dyn Kafka,
    pub dir: &'a Path,
    pub input: String,
    pub output: String,
    pub dlq: String,
    pub group: String,
}

impl<'a> Group<'a> {
    /// A group over new topics `<name>-in` (with `partitions`), `-out` and
    /// `-dlq` on `broker`.
    pub fn with_topics(broker: &'a dyn Kafka, dir: &'a Path, name: &str, partitions: u32) -> Self {
        let g = Group {
            broker,
            dir,
            input: format!("{name}-in"),
            output: format!("{name}-out"),
            dlq: format!("{name}-dlq"),
            group: format!("{name}-group"),
        };
        broker.create_topic(&g.input, partitions);
        broker.create_topic(&g.output, 1);
        broker.create_topic(&g.dlq, 1);
        g
    }

    /// Starts worker `name` with an admin server (`--admin-addr`) on a free
    /// port, once it listens; returns the port too.
    pub fn start_with_admin(&self, name: &str, extra: &[&str]) -> (Worker, u16) {
        let port = super::server::free_port();
        let admin = format!("127.0.0.1:{port}");
        let mut args = vec!["--admin-addr", admin.as_str()];
        args.extend_from_slice(extra);
        let w = self.start(name, &args);
        super::server::wait_listening(port, "the admin server", Duration::from_secs(30));
        (w, port)
    }

    /// Starts worker `name` with its own state directory.
    pub fn start(&self, name: &str, extra: &[&str]) -> Worker {
        self.start_with_env(name, extra, &[])
    }

    /// [`start`](Self::start) with environment variables (`FAILPOINTS`).
    pub fn start_with_env(&self, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Worker {
        let outputs = ["--output-topic", &self.output, "--dlq-topic", &self.dlq];
        self.spawn(name, &outputs, extra, env)
    }

    /// Starts worker `name` writing alerts to the file `output` (dead
    /// letters to `<output>.dlq`) instead of the topics: a Kafka → file
    /// job.
    pub fn start_writing_to(&self, name: &str, output: &Path, extra: &[&str]) -> Worker {
        let outputs = ["--output", output.to_str().expect("utf-8")];
        self.spawn(name, &outputs, extra, &[])
    }

    fn spawn(&self, name: &str, outputs: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Worker {
        let log = self.dir.join(format!("{name}.log"));
        let store = self.dir.join("store");
        let state = self.dir.join(format!("{name}-state"));
        let mut args: Vec<String> = [
            "--brokers",
            &self.broker.bootstrap(),
            "--input-topic",
            &self.input,
            "--group",
            &self.group,
            "--checkpoint-store",
            store.to_str().expect("utf-8"),
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--checkpoint-interval-ms",
            "500",
            // Windows close by event time only (the end markers): an idle
            // partition following processing time would make records after
            // a stall late, and late records are not in the reference.
            "--idle-watermark-ms",
            "0",
            "--consumer-option",
            "session.timeout.ms=6000",
            "--consumer-option",
            "heartbeat.interval.ms=500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(outputs.iter().map(|s| s.to_string()));
        for (k, v) in self.broker.client_options() {
            args.push("--kafka-option".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(example_bin())
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("WORKER_LOG").unwrap_or_else(|_| "weir=info,warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("worker starts");
        Worker {
            name: name.to_string(),
            child,
            log,
        }
    }
}

impl Worker {
    /// Sends `signal` (e.g. "STOP", "CONT") without waiting.
    pub fn send(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Waits (at most `limit`) until the log has `count` lines containing
    /// `text`.
    pub fn wait_for_log(&self, text: &str, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.log_text().matches(text).count() < count {
            assert!(
                Instant::now() < deadline,
                "{}: fewer than {count} {text:?} in the log after {limit:?}:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `records=` of the summary line printed at exit.
    pub fn records_read(&self) -> u64 {
        let log = self.log_text();
        let summary = log
            .lines()
            .rev()
            .find(|l| l.contains("assigned=") && l.contains("records="))
            .unwrap_or_else(|| panic!("{}: no summary line:\n{log}", self.name));
        super::summary_field(summary, "records")
    }

    /// Sends `signal` (e.g. "KILL", "TERM") and waits for the exit.
    pub fn signal(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill runs");
        self.exit_within(Duration::from_secs(90))
    }

    /// Waits (at most `limit`) for the worker to exit; its status.
    pub fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs after {limit:?}:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `(partition, checkpoint)` of each "partition assigned" line
    /// (checkpoint 0: started without one).
    pub fn assignments(&self) -> Vec<(u32, u64)> {
        self.events("partition assigned")
    }

    /// `(partition, checkpoint)` of each "checkpoint complete" line.
    pub fn checkpoints_complete(&self) -> Vec<(u32, u64)> {
        self.events("checkpoint complete")
    }

    fn events(&self, message: &str) -> Vec<(u32, u64)> {
        let text = self.log_text();
        text.lines()
            .filter_map(|line| {
                let (_, fields) = line.split_once(message)?;
                let field = |name: &str| -> Option<u64> {
                    fields
                        .split_whitespace()
                        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))?
                        .parse()
                        .ok()
                };
                Some((field("partition")? as u32, field("checkpoint")?))
            })
            .collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
