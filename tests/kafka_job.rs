//! `cef_alerts` in Kafka mode against a real broker (tansu, one record per
//! batch) and, where a test does not need a broker process, also against
//! librdkafka's mock cluster with batches of thousands: one worker, workers
//! joining and leaving under load (SIGKILL and SIGTERM), and a broker
//! restart. Alerts read back from the output topic are compared, as
//! a set, with the independent reference of `common::data_set`; duplicates
//! (replays after a crash or a move) are allowed, anything missing or extra
//! is not.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::broker::{Broker, Endpoint, Kafka, Mock};
use common::kafka::{
    Group, Worker, lines, produce_compressed, produce_end_markers, read_alerts, read_until,
};
use common::{DataSet, data_set};

const PARTITIONS: i32 = 4;

fn topics(broker: &dyn Kafka, name: &str) -> (String, String, String) {
    let input = format!("{name}-in");
    let output = format!("{name}-out");
    let dlq = format!("{name}-dlq");
    broker.create_topic(&input, PARTITIONS as u32);
    broker.create_topic(&output, 2);
    broker.create_topic(&dlq, 1);
    (input, output, dlq)
}

fn group<'a>(broker: &'a dyn Kafka, dir: &'a std::path::Path, name: &str) -> Group<'a> {
    let (input, output, dlq) = topics(broker, name);
    Group {
        broker,
        dir,
        input,
        output,
        dlq,
        group: format!("{name}-group"),
    }
}

/// Nothing was dead-lettered (the data set has no malformed lines): a late
/// record would be, and would make alerts differ.
fn assert_no_dead_letters(g: &Group<'_>) {
    let dead = read_until(
        g.broker,
        &g.dlq,
        Duration::from_secs(5),
        Duration::ZERO,
        |_| false,
    );
    let reasons: BTreeSet<&str> = dead
        .iter()
        .map(|d| d.headers.get("weir.error").map_or("?", String::as_str))
        .collect();
    assert!(dead.is_empty(), "{} dead letters: {reasons:?}", dead.len());
}

/// Every reference alert arrived, and nothing else did.
fn assert_alerts_match(got: &[(String, i64, u32, u32, i64)], data: &DataSet, logs: &[&Worker]) {
    assert!(data.reference.len() > 20, "the data set has alerts to find");
    eprintln!(
        "alerts read: {} ({} distinct), reference: {}",
        got.len(),
        got.iter().collect::<BTreeSet<_>>().len(),
        data.reference.len()
    );
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    let missing: Vec<_> = data.reference.difference(&unique).take(5).collect();
    let extra: Vec<_> = unique.difference(&data.reference).take(5).collect();
    if !missing.is_empty() || !extra.is_empty() {
        for w in logs {
            eprintln!("--- {} ---\n{}", w.name, w.log_text());
        }
    }
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} of {} reference alerts missing, e.g. {missing:?}; alerts not in the reference: {extra:?}",
        data.reference.difference(&unique).count(),
        data.reference.len()
    );
}

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu")]
fn one_worker_matches_the_reference_and_dead_letters_poison_records() {
    let broker = Broker::shared();
    one_worker(broker, "one", "none");
}

/// The same with realistic batches (lz4, which also keeps the input under
/// the mock cluster's 5 MB a partition): produced before the worker starts,
/// they arrive faster than it processes them, so a partition that queues
/// more than it may is paused and later resumed, inside a batch.
#[test]
fn one_worker_with_realistic_batches() {
    one_worker(&Mock::new(), "one-batched", "lz4");
}

fn one_worker(broker: &dyn Kafka, name: &str, codec: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(broker, dir.path(), name);
    // 200,000 events, one malformed line in 1,000 (poison records).
    let data = data_set(200_000, 2_000, 41, 1_000);
    assert!(data.malformed > 100);
    produce_compressed(broker, &g.input, &lines(&data.text), None, codec);
    produce_end_markers(broker, &g.input, PARTITIONS);

    let mut worker = g.start("w1", &[]);
    let got = read_alerts(broker, &g.output, &data.reference, Duration::from_secs(240));
    assert_alerts_match(&got, &data, &[&worker]);
    assert_eq!(
        got.len(),
        BTreeSet::from_iter(got.iter()).len(),
        "one worker, no crash: no alert twice"
    );

    // Poison records: each in the dead-letter topic once, with headers
    // naming the error and where it came from.
    let dead = read_until(
        broker,
        &g.dlq,
        Duration::from_secs(60),
        Duration::from_secs(1),
        |rs| rs.len() >= data.malformed,
    );
    assert_eq!(
        dead.len(),
        data.malformed,
        "each poison record dead-lettered once"
    );
    // Well-formed lines all come from "Test\\|Co"; malformed ones never.
    let input: BTreeSet<&[u8]> = lines(&data.text).into_iter().collect();
    let well_formed = |v: &[u8]| v.windows(9).any(|w| w == b"Test\\|Co|");
    let mut places = BTreeSet::new();
    for d in &dead {
        assert!(
            !d.headers["weir.error"].is_empty(),
            "error header: {:?}",
            d.headers
        );
        assert_eq!(d.headers["weir.source.topic"], g.input);
        let partition: i32 = d.headers["weir.source.partition"]
            .parse()
            .expect("partition");
        let offset: i64 = d.headers["weir.source.offset"].parse().expect("offset");
        assert!((0..PARTITIONS).contains(&partition) && offset >= 0);
        places.insert((partition, offset));
        assert!(
            input.contains(d.value.as_slice()) && !well_formed(&d.value),
            "a dead letter is a malformed input line: {}",
            String::from_utf8_lossy(&d.value)
        );
    }
    assert_eq!(places.len(), dead.len(), "distinct source offsets");

    let status = worker.signal("TERM");
    assert!(status.success(), "SIGTERM exits 0:\n{}", worker.log_text());
    let log = worker.log_text();
    assert!(
        log.contains("records=") && log.contains("stopped=true"),
        "summary line:\n{log}"
    );
}

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu")]
fn workers_join_and_leave_under_load_and_state_follows_partitions() {
    let broker = Broker::shared();
    join_and_leave(broker, "scale", "none");
}

/// The same with realistic batches: hand-overs resume inside batches.
#[test]
fn workers_join_and_leave_with_realistic_batches() {
    join_and_leave(&Mock::new(), "scale-batched", "lz4");
}

fn join_and_leave(broker: &dyn Kafka, name: &str, codec: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(broker, dir.path(), name);
    let data = data_set(200_000, 2_000, 42, 0);
    let all = lines(&data.text);
    let owned: Vec<Vec<u8>> = all.iter().map(|l| l.to_vec()).collect();

    // Input flows for about 30 s while workers come and go.
    let feeder = {
        let input = g.input.clone();
        let to = Endpoint::of(broker);
        let codec = codec.to_string();
        std::thread::spawn(move || {
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            produce_compressed(&to, &input, &refs, Some(7_000), &codec);
        })
    };
    let pause = |s| std::thread::sleep(Duration::from_secs(s));
    let mut a = g.start("a", &[]);
    pause(6);
    let mut b = g.start("b", &[]);
    pause(6);
    let c = g.start("c", &[]);
    pause(6);
    let killed = a.signal("KILL");
    assert!(!killed.success());
    pause(8);
    let status = b.signal("TERM");
    assert!(status.success(), "SIGTERM exits 0:\n{}", b.log_text());
    feeder.join().expect("feeder");
    produce_end_markers(broker, &g.input, PARTITIONS);

    let got = read_alerts(broker, &g.output, &data.reference, Duration::from_secs(240));
    let mut c = c;
    assert_no_dead_letters(&g);
    assert_alerts_match(&got, &data, &[&a, &b, &c]);
    let status = c.signal("TERM");
    assert!(status.success(), "SIGTERM exits 0:\n{}", c.log_text());

    // Each partition was owned by more than one worker, and a worker that
    // had never owned it restored it from a checkpoint (one that another
    // worker wrote, then).
    let workers = [&a, &b, &c];
    for w in workers {
        eprintln!("{}: assigned {:?}", w.name, w.assignments());
    }
    for p in 0..PARTITIONS as u32 {
        let owners: Vec<&str> = workers
            .iter()
            .filter(|w| w.assignments().iter().any(|&(q, _)| q == p))
            .map(|w| w.name.as_str())
            .collect();
        assert!(owners.len() > 1, "partition {p} owned only by {owners:?}");
        let moved = workers.iter().any(|w| {
            w.assignments()
                .iter()
                .find(|&&(q, _)| q == p)
                .is_some_and(|&(_, checkpoint)| checkpoint > 0)
        });
        assert!(
            moved,
            "partition {p}: no worker restored it from another worker's checkpoint"
        );
    }
}

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu")]
fn workers_reconnect_after_a_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::durable(dir.path());
    // sqlite storage is slower: a smaller data set.
    reconnect_after_restart(&broker, "restart", "none", 30_000, || {
        broker.restart(Duration::from_secs(3))
    });
}

/// The same on the mock cluster, with lz4 batches: its broker goes down
/// for 3 s (connections closed and refused) and comes back.
#[test]
fn workers_reconnect_after_a_broker_outage_with_realistic_batches() {
    let mock = Mock::new();
    reconnect_after_restart(&mock, "restart-batched", "lz4", 100_000, || {
        mock.cluster.broker_down(1).expect("down");
        std::thread::sleep(Duration::from_secs(3));
        mock.cluster.broker_up(1).expect("up");
    });
}

fn reconnect_after_restart(
    broker: &dyn Kafka,
    name: &str,
    codec: &str,
    events: u64,
    restart: impl FnOnce(),
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(broker, dir.path(), name);
    let data = data_set(events, 500, 43, 0);
    let all = lines(&data.text);
    let half = all.len() / 2;
    produce_compressed(broker, &g.input, &all[..half], None, codec);
    let worker = g.start("w", &[]);
    std::thread::sleep(Duration::from_secs(8));
    restart();
    produce_compressed(broker, &g.input, &all[half..], None, codec);
    produce_end_markers(broker, &g.input, PARTITIONS);
    let got = read_alerts(broker, &g.output, &data.reference, Duration::from_secs(240));
    assert_no_dead_letters(&g);
    assert_alerts_match(&got, &data, &[&worker]);
    let mut worker = worker;
    let status = worker.signal("TERM");
    assert!(status.success(), "SIGTERM exits 0:\n{}", worker.log_text());
}

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu")]
fn bad_kafka_settings_are_clear_errors() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(broker, dir.path(), "bad");
    let run = |g: &Group<'_>, name: &str, extra: &[&str]| {
        let mut w = g.start(name, extra);
        let status = w.child.wait().expect("exits by itself");
        (status, w.log_text())
    };

    let missing = Group {
        input: "no-such-topic".into(),
        ..group_named(&g)
    };
    let (status, log) = run(&missing, "missing", &[]);
    assert!(!status.success());
    assert!(
        log.contains("input topic no-such-topic does not exist"),
        "{log}"
    );

    let (status, log) = run(
        &g,
        "unsafe",
        &["--consumer-option", "enable.auto.commit=true"],
    );
    assert!(!status.success());
    assert!(
        log.contains("enable.auto.commit=true is not allowed"),
        "{log}"
    );

    let (status, log) = run(&g, "malformed", &["--kafka-option", "linger.ms"]);
    assert!(!status.success());
    assert!(log.contains("expected KEY=VALUE"), "{log}");
}

/// The same group and topics, for variations.
fn group_named<'a>(g: &Group<'a>) -> Group<'a> {
    Group {
        broker: g.broker,
        dir: g.dir,
        input: g.input.clone(),
        output: g.output.clone(),
        dlq: g.dlq.clone(),
        group: g.group.clone(),
    }
}

/// Runs a worker against a port no broker listens on, with `args` and
/// `env`; it must fail (on its settings) before it needs a broker. Returns
/// everything it printed.
fn worker_without_broker(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(common::example_bin())
        .args(["--brokers", "127.0.0.1:1", "--input-topic", "in"])
        .args(["--output-topic", "out", "--group", "g"])
        .arg("--checkpoint-store")
        .arg(dir.join("store"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    assert!(!out.status.success(), "{text}");
    text
}

/// `WEIR_*_OPTIONS` hold librdkafka options one per line, as the flags do
/// (checked before any broker is contacted, so no broker is needed).
#[test]
fn kafka_options_come_from_the_environment_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = worker_without_broker(
        dir.path(),
        &[],
        &[(
            "WEIR_CONSUMER_OPTIONS",
            "session.timeout.ms=6000\nenable.auto.commit=true",
        )],
    );
    assert!(
        log.contains("enable.auto.commit=true is not allowed"),
        "the second line of WEIR_CONSUMER_OPTIONS was applied: {log}"
    );
}

/// Credentials come from a `client.properties` file (`--kafka-config`),
/// per-client prefixes apply, and a secret value never appears in what the
/// worker prints, even when librdkafka rejects the configuration next to
/// it (checked before any broker is contacted, so no broker is needed).
#[test]
fn kafka_config_file_applies_and_secrets_are_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "s3cr3t-Hunter2-do-not-print";
    let config = dir.path().join("client.properties");
    let config_arg = config.to_str().expect("utf-8").to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["--kafka-config", config_arg.as_str()];
        args.extend_from_slice(extra);
        worker_without_broker(dir.path(), &args, &[("RUST_LOG", "debug")])
    };

    // A bad option beside the password: the error names the option, the
    // password is nowhere.
    std::fs::write(
        &config,
        format!("# mounted from a Secret\nsasl.username=alice\nsasl.password={secret}\nno.such.property=1\n"),
    )
    .expect("write");
    let log = run(&[]);
    assert!(log.contains("no.such.property"), "{log}");
    assert!(!log.contains(secret), "the password was printed: {log}");

    // A secret on the command line beside a setting weir refuses.
    std::fs::write(&config, format!("ssl.key.password={secret}\n")).expect("write");
    let log = run(&[
        "--kafka-option",
        &format!("ssl.key.password={secret}"),
        "--kafka-option",
        "enable.idempotence=false",
    ]);
    assert!(
        log.contains("enable.idempotence=false is not allowed"),
        "{log}"
    );
    assert!(!log.contains(secret), "a secret was printed: {log}");

    // Per-client prefixes reach the right client: a consumer-only setting
    // the worker reserves is refused as a consumer setting.
    std::fs::write(&config, "consumer.enable.auto.commit=true\n").expect("write");
    let log = run(&[]);
    assert!(
        log.contains("enable.auto.commit=true is not allowed"),
        "{log}"
    );
    std::fs::write(
        &config,
        "producer.enable.auto.commit=true\nproducer.acks=0\n",
    )
    .expect("write");
    let log = run(&[]);
    assert!(log.contains("acks=0 is not allowed"), "{log}");
}

/// Input in gzip, snappy, lz4 and zstd batches of thousands (a quarter of
/// the input each) gives the reference alerts, and the alerts (lz4 by
/// default) read back. On librdkafka's mock cluster, which serves batches
/// as produced: the first worker is killed at its first checkpoints, a
/// few seconds before it would be done, and the second resumes from them,
/// where a fetch starts inside a batch (batches hold hundreds to thousands
/// of records).
#[test]
fn every_compression_codec_is_consumed_and_produced() {
    let mock = Mock::new();
    let broker = &mock;
    let dir = tempfile::tempdir().expect("tempdir");
    let g = group(broker, dir.path(), "codecs");
    let data = data_set(200_000, 2_000, 43, 0);
    let all = lines(&data.text);
    let quarter = all.len().div_ceil(4);
    for (part, codec) in all.chunks(quarter).zip(["gzip", "snappy", "lz4", "zstd"]) {
        produce_compressed(broker, &g.input, part, None, codec);
    }
    produce_end_markers(broker, &g.input, PARTITIONS);
    let mut first = g.start("w1", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !first.log_text().contains("checkpoint complete") {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint:\n{}",
            first.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.signal("KILL");
    let mut second = g.start("w2", &[]);
    let got = read_alerts(broker, &g.output, &data.reference, Duration::from_secs(180));
    assert_alerts_match(&got, &data, &[&first, &second]);
    assert!(
        second
            .assignments()
            .iter()
            .any(|(_, checkpoint)| *checkpoint > 0),
        "the second worker restored checkpoints: {:?}\n{}\n{}",
        second.assignments(),
        first.log_text(),
        second.log_text()
    );
    assert_no_dead_letters(&g);
    assert!(second.signal("TERM").success());
}
