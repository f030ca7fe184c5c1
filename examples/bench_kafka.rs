//! Benchmark of the CEF alerts job through a Kafka broker.
//!
//! ```text
//! cargo run --release --example bench_kafka                # mock cluster
//! ops/kafka/tansu.sh 19092 &
//! cargo run --release --example bench_kafka -- --brokers 127.0.0.1:19092 --input-batch 1
//! ```
//! `--brokers mock` (the default) runs librdkafka's mock cluster in this
//! process: it serves record batches as produced, a fetch from inside a
//! batch included, but keeps at most 5 MB a partition (the benchmark
//! checks that nothing was dropped). tansu 0.6 skips the rest of a batch
//! when a fetch starts inside one, so on tansu produce one record per
//! batch (`--input-batch 1`).
//!
//! 1. **Throughput**: for each of `--codecs`, produces `--events` CEF
//!    events (keyed by `src`) in batches of `--input-batch`, compressed
//!    with it, to a fresh topic, then reads them with a bare rdkafka
//!    consumer and with the weir job (consume, decode, keyed state, alerts
//!    produced), alternately in the same run, `--rounds` times each. Rates
//!    are from the first record to the last (group join excluded) and from
//!    the start (join included). Each reading also prints the process's
//!    CPU time per record and how many cores it kept busy; the mock cluster
//!    runs in this process, so both include the broker's work.
//!    With `--tls`, every round also runs against a second mock cluster
//!    that clients reach only through TLS (stunnel in front of it), for
//!    the cost of TLS against plaintext.
//! 2. **Hand-over**: a worker processes a 2-partition topic whose
//!    partitions hold `--join-keys` keys each (hour-long windows keep every
//!    key's state open); a second worker joins while records keep coming;
//!    prints the time from the second worker's start to its first record
//!    processed on the partition that moved to it (state restored).
//!
//! Figures go to BENCHMARKS.md.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir::cef::{Generator, GeneratorConfig};
use weir::kafka::{KafkaSettings, KafkaSource, LagHandle};
use weir::{CheckpointSettings, Clock, Job, Settings, SystemClock, open_store};

#[path = "cef_alerts.rs"]
#[allow(dead_code)]
mod cef_alerts;
#[path = "../tests/common/tls.rs"]
mod tls;

#[derive(Parser)]
struct Args {
    /// The broker, or `mock` for librdkafka's mock cluster in this process.
    #[arg(long, default_value = "mock")]
    brokers: String,
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Partitions of the input topic (the mock cluster keeps 5 MB of each,
    /// about 100,000 lz4-compressed events).
    #[arg(long, default_value_t = 32)]
    partitions: i32,
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Records per producer batch for the input. tansu needs 1: a partition
    /// paused mid-batch skips the rest of the batch there, which the job's
    /// record count check reports.
    #[arg(long, default_value_t = 10_000)]
    input_batch: u32,
    /// The input batches' compression codecs: one topic and one set of
    /// rounds each.
    #[arg(long, value_delimiter = ',', default_value = "lz4,zstd")]
    codecs: Vec<String>,
    /// Also run every round against a mock cluster behind TLS (stunnel),
    /// for the cost of TLS against plaintext.
    #[arg(long)]
    tls: bool,
    /// The job's checkpoint interval.
    #[arg(long, default_value_t = 1_000)]
    checkpoint_interval_ms: u64,
    /// Keys in each partition of the hand-over test (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    join_keys: u64,
}

impl Args {
    fn interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }
}

/// How clients reach the broker.
#[derive(Clone)]
struct Conn {
    bootstrap: String,
    /// librdkafka properties every client needs (TLS).
    options: Vec<(String, String)>,
}

impl Conn {
    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

/// The broker the benchmark runs against.
enum Cluster {
    Mock(rdkafka::mocking::MockCluster<'static, DefaultProducerContext>),
    Tls(TlsMock),
    External(String),
}

impl Cluster {
    fn conn(&self) -> Conn {
        match self {
            Cluster::Mock(m) => Conn {
                bootstrap: m.bootstrap_servers(),
                options: Vec::new(),
            },
            Cluster::Tls(t) => Conn {
                bootstrap: format!("127.0.0.1:{}", t.port),
                options: vec![
                    ("security.protocol".into(), "ssl".into()),
                    ("ssl.ca.location".into(), t.ca.display().to_string()),
                ],
            },
            Cluster::External(b) => Conn {
                bootstrap: b.clone(),
                options: Vec::new(),
            },
        }
    }

    fn create_topics(&self, topics: &[(&str, i32)]) -> anyhow::Result<()> {
        match self {
            Cluster::Mock(m) => {
                for (t, p) in topics {
                    m.create_topic(t, *p, 1)?;
                }
                Ok(())
            }
            Cluster::Tls(m) => m.create_topics(topics),
            Cluster::External(b) => create_topics(b, topics),
        }
    }
}

/// A mock cluster that clients reach only through TLS: its broker
/// advertises the port of a TLS terminator (stunnel) in front of it, with a
/// CA and certificate made by the openssl command. The rdkafka crate's
/// `MockCluster` cannot change what a broker advertises, so this one is
/// made with librdkafka's own calls.
struct TlsMock {
    cluster: *mut rdkafka_sys::rd_kafka_mock_cluster_t,
    /// The client the mock cluster runs in.
    _owner: rdkafka::producer::BaseProducer,
    stunnel: Option<std::process::Child>,
    port: u16,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsMock {
    fn start() -> anyhow::Result<TlsMock> {
        let stunnel = tls::stunnel_binary()
            .ok_or_else(|| anyhow::anyhow!("--tls needs stunnel (apt-get install stunnel4)"))?;
        let dir = tempfile::tempdir()?;
        let ca = tls::make_certificates(dir.path());
        let owner: rdkafka::producer::BaseProducer = ClientConfig::new().create()?;
        // SAFETY: the cluster lives in `owner`'s client, which outlives it
        // (it is destroyed first, in `drop`).
        let cluster =
            unsafe { rdkafka_sys::rd_kafka_mock_cluster_new(owner.client().native_ptr(), 1) };
        anyhow::ensure!(!cluster.is_null(), "creating a mock cluster failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut mock = TlsMock {
            cluster,
            _owner: owner,
            stunnel: None,
            port,
            ca,
            _dir: dir,
        };
        // SAFETY: a live cluster; librdkafka copies the strings.
        let bootstrap = unsafe {
            std::ffi::CStr::from_ptr(rdkafka_sys::rd_kafka_mock_cluster_bootstraps(cluster))
        }
        .to_string_lossy()
        .into_owned();
        let plain: u16 = bootstrap
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("mock bootstrap {bootstrap}"))?;
        let host = std::ffi::CString::new("127.0.0.1")?;
        unsafe {
            rdkafka_sys::rd_kafka_mock_broker_set_host_port(cluster, 1, host.as_ptr(), port.into())
        };
        mock.stunnel = Some(tls::terminate(stunnel, mock._dir.path(), port, plain));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "stunnel does not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(mock)
    }

    fn create_topics(&self, topics: &[(&str, i32)]) -> anyhow::Result<()> {
        for (t, p) in topics {
            let name = std::ffi::CString::new(*t)?;
            // SAFETY: a live cluster and a valid C string.
            let err = unsafe {
                rdkafka_sys::rd_kafka_mock_topic_create(self.cluster, name.as_ptr(), *p, 1)
            };
            anyhow::ensure!(
                err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                "creating {t}: {err:?}"
            );
        }
        Ok(())
    }
}

impl Drop for TlsMock {
    fn drop(&mut self) {
        if let Some(stunnel) = &mut self.stunnel {
            let _ = stunnel.kill();
            let _ = stunnel.wait();
        }
        // SAFETY: created in `start`, destroyed once, before its client.
        unsafe { rdkafka_sys::rd_kafka_mock_cluster_destroy(self.cluster) };
    }
}

/// Checks that the log of every partition of `topic` still starts at 0
/// (the mock cluster drops a partition's oldest batches beyond 5 MB).
fn nothing_dropped(conn: &Conn, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let c: BaseConsumer = conn.config().create()?;
    for p in 0..partitions {
        let (low, _) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        anyhow::ensure!(
            low == 0,
            "partition {p} of {topic} starts at {low}: the broker dropped records (the mock \
             cluster keeps 5 MB a partition; use more --partitions)"
        );
    }
    Ok(())
}

fn create_topics(brokers: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Runtime::new()?;
    for r in rt.block_on(admin.create_topics(&new, &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// The input producer. One record per batch: tansu 0.6 answers a fetch
/// from inside a record batch with the batches after it, so a partition
/// paused for backpressure and resumed mid-batch would skip records there
/// (Apache Kafka and Redpanda do not).
fn producer(
    conn: &Conn,
    batch: u32,
    codec: &str,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(conn
        .config()
        .set("linger.ms", "10")
        .set("batch.num.messages", batch.max(1).to_string())
        .set("compression.type", codec)
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "300000")
        .create()?)
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, record: BaseRecord<'_, [u8], [u8]>) {
    let mut record = record;
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn src_of(line: &[u8]) -> Option<&[u8]> {
    // The first extension follows the header's last `|`, the others a space.
    let at = (1..line.len().saturating_sub(3))
        .find(|&i| &line[i..i + 4] == b"src=" && matches!(line[i - 1], b' ' | b'|'))?
        + 4;
    let rest = &line[at..];
    let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Produces the generator's events keyed by `src`, in batches compressed
/// with `codec`; returns records/s.
fn produce_generated(args: &Args, conn: &Conn, topic: &str, codec: &str) -> anyhow::Result<f64> {
    let p = producer(conn, args.input_batch, codec)?;
    let mut generator = Generator::new(GeneratorConfig {
        events: args.events,
        keys: args.keys,
        seed: 7,
        ..GeneratorConfig::default()
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    while !generator.is_done() {
        buf.clear();
        generator.fill(&mut buf, 1 << 20);
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut r = BaseRecord::<[u8], [u8]>::to(topic).payload(line);
            if let Some(src) = src_of(line) {
                r = r.key(src);
            }
            send(&p, r);
        }
    }
    p.flush(Duration::from_secs(300))?;
    Ok(args.events as f64 / started.elapsed().as_secs_f64())
}

/// Rates of one reading: (first record to last, start to last), and the
/// process's CPU time.
struct Rates {
    steady: f64,
    with_join: f64,
    /// CPU time per record over the whole reading, the join included.
    cpu_us_per_record: f64,
    /// CPU time over wall time from the first record to the last: how many
    /// cores the process kept busy.
    cores_busy: f64,
}

/// A moment of a reading: the wall clock and the process's CPU time.
#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    cpu: Option<f64>,
}

impl Mark {
    fn now() -> Mark {
        Mark {
            at: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
}

/// CPU time this process used so far (all threads, user and system), from
/// `/proc/self/stat`; `None` where there is no procfs. Its unit, USER_HZ,
/// is 100 ticks a second on Linux whatever the kernel's own tick.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may
    // hold spaces: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

impl Rates {
    /// Rates of `n` records read from `started` until now, the first at
    /// `first`.
    fn of(n: u64, started: Mark, first: Mark) -> Rates {
        let end = Mark::now();
        let cpu = |from: Mark| from.cpu.zip(end.cpu).map_or(f64::NAN, |(a, b)| b - a);
        let steady_secs = (end.at - first.at).as_secs_f64();
        Rates {
            steady: n as f64 / steady_secs,
            with_join: n as f64 / (end.at - started.at).as_secs_f64(),
            cpu_us_per_record: cpu(started) * 1e6 / n as f64,
            cores_busy: cpu(first) / steady_secs,
        }
    }
}

fn bare_consumer(args: &Args, conn: &Conn, topic: &str, round: u32) -> anyhow::Result<Rates> {
    let started = Mark::now();
    let c: BaseConsumer = conn
        .config()
        .set(
            "group.id",
            format!("bench-bare-{}-{round}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    c.subscribe(&[topic])?;
    let mut first = None;
    let mut n = 0u64;
    let mut bytes = 0usize;
    while n < args.events {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m?;
            bytes += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
            first.get_or_insert_with(Mark::now);
            n += 1;
        }
        anyhow::ensure!(
            started.at.elapsed() < Duration::from_secs(600),
            "bare consumer too slow"
        );
    }
    std::hint::black_box(bytes);
    Ok(Rates::of(n, started, first.unwrap_or(started)))
}

fn processed(lag: &LagHandle) -> u64 {
    lag.snapshot()
        .iter()
        .map(|l| l.processed.unwrap_or(0).max(0) as u64)
        .sum()
}

/// A running in-process worker.
struct Worker {
    lag: LagHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<weir::Result<weir::Report>>,
}

/// Where a worker reads and writes.
fn kafka(conn: &Conn, input: &str, output: &str, group: &str) -> KafkaSettings {
    let mut kafka = KafkaSettings::new(&conn.bootstrap, input, output, group);
    kafka.properties.client = conn.options.clone();
    kafka
        .properties
        .consumer
        .push(("session.timeout.ms".into(), "6000".into()));
    kafka
        .properties
        .consumer
        .push(("heartbeat.interval.ms".into(), "500".into()));
    kafka
}

fn start_worker(
    rt: &tokio::runtime::Runtime,
    kafka: KafkaSettings,
    dir: &std::path::Path,
    name: &str,
    window_secs: i64,
    interval: Duration,
) -> anyhow::Result<Worker> {
    let settings = Settings {
        state_dir: dir.join(name),
        checkpoints: Some(CheckpointSettings {
            store: open_store(dir.join("store").to_str().unwrap_or("store"))?,
            interval: Some(interval),
            retain: 2,
            start_empty: false,
            job_id: None,
            prune_grace: weir_state::owner::DEFAULT_PRUNE_GRACE,
        }),
        ..Settings::default()
    };
    let source = KafkaSource::new(kafka);
    let lag = source.lag_handle();
    let job = Job::new(cef_alerts::BruteForce {
        window_ms: window_secs * 1000,
        threshold: 5,
    })
    .settings(settings)
    .source(source)
    .decoder(|line: &[u8]| cef_alerts::decode_line(line, SystemClock.now_ms()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(job.run_until(async move {
        let _ = rx.await;
    }));
    Ok(Worker {
        lag,
        stop: Some(tx),
        task,
    })
}

impl Worker {
    fn stop(mut self, rt: &tokio::runtime::Runtime) -> anyhow::Result<weir::kafka::KafkaReport> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let report = rt.block_on(self.task)??;
        report
            .kafka
            .context("a Kafka job reports what its worker did")
    }
}

fn job(
    args: &Args,
    conn: &Conn,
    rt: &tokio::runtime::Runtime,
    topic: &str,
    output: &str,
    round: u32,
) -> anyhow::Result<Rates> {
    let dir = tempfile::tempdir()?;
    let started = Mark::now();
    let group = format!("bench-job-{}-{round}", std::process::id());
    let w = start_worker(
        rt,
        kafka(conn, topic, output, &group),
        dir.path(),
        "w",
        60,
        args.interval(),
    )?;
    let mut first = None;
    loop {
        let n = processed(&w.lag);
        if n > 0 {
            first.get_or_insert_with(Mark::now);
        }
        if n >= args.events {
            break;
        }
        anyhow::ensure!(!w.task.is_finished(), "the job stopped early");
        anyhow::ensure!(
            started.at.elapsed() < Duration::from_secs(600),
            "job too slow"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let rates = Rates::of(args.events, started, first.unwrap_or(started));
    let report = w.stop(rt)?;
    anyhow::ensure!(report.records >= args.events, "job read {}", report.records);
    Ok(rates)
}

fn handover(args: &Args, cluster: &Cluster, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let id = std::process::id();
    let input = format!("bench-{id}-handover-in");
    let output = format!("bench-{id}-handover-out");
    cluster.create_topics(&[(&input, 2), (&output, 1)])?;
    // Every key twice, keys split evenly over the two partitions.
    let keys = args.join_keys * 2;
    let start = 1_767_225_600_000i64;
    let line = |k: u64, t: i64| {
        format!(
            "CEF:0|Bench|Gen|1|100|Login|5|src=10.{}.{}.{} rt={t} outcome=failure",
            k >> 16,
            (k >> 8) & 255,
            k & 255
        )
    };
    let conn = cluster.conn();
    let p = producer(&conn, args.input_batch, "lz4")?;
    for round in 0..2u64 {
        for k in 0..keys {
            let t = start + (round * keys + k) as i64 / 100;
            let l = line(k, t);
            send(
                &p,
                BaseRecord::<[u8], [u8]>::to(&input)
                    .partition((k % 2) as i32)
                    .payload(l.as_bytes()),
            );
        }
    }
    p.flush(Duration::from_secs(300))?;
    let total = keys * 2;
    let dir = tempfile::tempdir()?;
    let group = format!("bench-{id}-handover");
    let settings = kafka(&conn, &input, &output, &group);
    let a = start_worker(rt, settings.clone(), dir.path(), "a", 3600, args.interval())?;
    let started = Instant::now();
    while processed(&a.lag) < total {
        anyhow::ensure!(!a.task.is_finished(), "worker a stopped early");
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "worker a too slow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "handover: worker a processed {total} records ({} keys per partition) in {:.1} s",
        args.join_keys,
        started.elapsed().as_secs_f64()
    );
    // Records keep coming while b joins.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        let conn = conn.clone();
        let input = input.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let p = producer(&conn, 1, "none")?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = i % keys;
                let l = line(k, start + (total + i) as i64 / 100);
                send(
                    &p,
                    BaseRecord::<[u8], [u8]>::to(&input)
                        .partition((k % 2) as i32)
                        .payload(l.as_bytes()),
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            p.flush(Duration::from_secs(60))?;
            Ok(())
        })
    };
    let b = start_worker(rt, settings, dir.path(), "b", 3600, args.interval())?;
    let joined = Instant::now();
    let first = loop {
        if let Some(d) = b.lag.first_record_on_restored_partition() {
            break d;
        }
        anyhow::ensure!(!b.task.is_finished(), "worker b stopped early");
        anyhow::ensure!(
            joined.elapsed() < Duration::from_secs(120),
            "worker b got no moved partition"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let moved: BTreeSet<i32> = b.lag.snapshot().iter().map(|l| l.partition).collect();
    println!(
        "handover: worker b joined; first record processed on moved partition(s) {moved:?} \
         {:.3} s after its start",
        first.as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    trickle
        .join()
        .map_err(|_| anyhow::anyhow!("trickle panicked"))??;
    let rb = b.stop(rt)?;
    let ra = a.stop(rt)?;
    println!(
        "handover: a checkpoints={} b checkpoints={} b restored={}",
        ra.checkpoints, rb.checkpoints, rb.restored
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut clusters = vec![(
        "plaintext",
        if args.brokers == "mock" {
            Cluster::Mock(rdkafka::mocking::MockCluster::new(1)?)
        } else {
            Cluster::External(args.brokers.clone())
        },
    )];
    if args.tls {
        anyhow::ensure!(
            args.brokers == "mock",
            "--tls runs on the mock cluster only"
        );
        clusters.push(("tls", Cluster::Tls(TlsMock::start()?)));
    }
    println!(
        "broker: {}",
        match &clusters[0].1 {
            Cluster::External(b) => b.as_str(),
            _ => "librdkafka's mock cluster, in process",
        }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let id = std::process::id();
    for codec in &args.codecs {
        let topic = format!("bench-{id}-{codec}-in");
        let output = format!("bench-{id}-{codec}-out");
        for (name, cluster) in &clusters {
            let conn = cluster.conn();
            cluster.create_topics(&[(&topic, args.partitions), (&output, 1)])?;
            let rate = produce_generated(&args, &conn, &topic, codec)?;
            nothing_dropped(&conn, &topic, args.partitions)?;
            println!(
                "{codec} {name}: produced {} events ({} keys, {} partitions, batches of {}) at \
                 {rate:.0} records/s",
                args.events, args.keys, args.partitions, args.input_batch
            );
        }
        for round in 0..args.rounds {
            for (name, cluster) in &clusters {
                let conn = cluster.conn();
                let bare = bare_consumer(&args, &conn, &topic, round)?;
                let job = job(&args, &conn, &rt, &topic, &output, round)?;
                println!(
                    "{codec} {name} round {round}: bare consumer {:.0} records/s ({:.0} with \
                     join), weir job {:.0} records/s ({:.0} with join): {:.0} % of bare; \
                     cpu_us_per_record bare={:.2} job={:.2}, cores busy bare={:.2} job={:.2}",
                    bare.steady,
                    bare.with_join,
                    job.steady,
                    job.with_join,
                    100.0 * job.steady / bare.steady,
                    bare.cpu_us_per_record,
                    job.cpu_us_per_record,
                    bare.cores_busy,
                    job.cores_busy,
                );
            }
        }
    }
    if args.join_keys > 0 {
        handover(&args, &clusters[0].1, &rt)?;
    }
    Ok(())
}
