//! Sources and sinks mixed: `cef_alerts` reading a file and writing to
//! Kafka (killed with SIGKILL several times), and reading Kafka and writing
//! a file (killed once). Both are at-least-once: the alerts, read back as
//! a set, must equal the independent reference of `common::data_set`
//! (duplicates allowed, nothing missing, nothing extra), and every
//! malformed line must reach the dead letters. Both run on librdkafka's
//! mock cluster, which serves real batches (lz4 here).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::broker::{Kafka, Mock};
use common::kafka::{
    Group, lines, produce_compressed, produce_end_markers, read_alerts, read_until,
};
use common::{
    DataSet, Reference, assert_resumed, data_set, read_alerts as read_alert_file, run_with_kills,
};

const PARTITIONS: i32 = 4;

/// A well-formed line of the data set (all come from "Test\|Co").
fn well_formed(line: &[u8]) -> bool {
    line.windows(9).any(|w| w == b"Test\\|Co|")
}

/// The byte positions of the malformed lines of `data`.
fn malformed(data: &DataSet) -> BTreeSet<i64> {
    let mut at = 0;
    let mut bad = BTreeSet::new();
    for line in data.text.split_inclusive(|&b| b == b'\n') {
        if !well_formed(line) {
            bad.insert(at as i64);
        }
        at += line.len();
    }
    assert_eq!(bad.len(), data.malformed);
    bad
}

/// The alerts, as a set, are exactly the reference.
fn assert_same_alerts(got: &[(String, i64, u32, u32, i64)], reference: &Reference) {
    assert!(reference.len() > 20, "the data set has alerts to find");
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    let missing: Vec<_> = reference.difference(&unique).take(5).collect();
    let extra: Vec<_> = unique.difference(reference).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} of {} reference alerts missing, e.g. {missing:?}; alerts not in the reference: {extra:?}",
        reference.difference(&unique).count(),
        reference.len()
    );
    eprintln!(
        "alerts: {} written, {} distinct, {} in the reference",
        got.len(),
        unique.len(),
        reference.len()
    );
}

#[test]
fn file_to_kafka_gives_every_alert_at_least_once_through_kills() {
    let broker = Mock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, dlq) = ("f2k-out", "f2k-dlq");
    broker.create_topic(output, 2);
    broker.create_topic(dlq, 1);
    let data = data_set(150_000, 1_500, 44, 700);
    let bad = malformed(&data);
    assert!(bad.len() > 100);
    let input = dir.path().join("events.cef");
    std::fs::write(&input, &data.text).expect("write input");
    let store = dir.path().join("store");
    let store_url = store.display().to_string();
    let mut args: Vec<String> = [
        "--input",
        input.to_str().expect("utf-8"),
        "--brokers",
        &broker.bootstrap(),
        "--output-topic",
        output,
        "--dlq-topic",
        dlq,
        "--state-dir",
        dir.path().join("state").to_str().expect("utf-8"),
        "--checkpoint-store",
        &store_url,
        "--checkpoint-interval-ms",
        "200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, v) in broker.client_options() {
        args.push("--kafka-option".into());
        args.push(format!("{k}={v}"));
    }
    let log = dir.path().join("run.log");
    let landed = run_with_kills(&args, &[], 4, 9, &log, Some(&store_url));
    assert!(
        landed >= 2,
        "only {landed} kills landed before the run ended"
    );
    assert_resumed(&log, data.lines);

    let got = read_alerts(&broker, output, &data.reference, Duration::from_secs(120));
    assert_same_alerts(&got, &data.reference);

    // Every malformed line is in the dead-letter topic, named by the input
    // file and its byte position.
    let offset = |r: &common::kafka::Record| -> i64 {
        r.headers["weir.source.offset"].parse().expect("offset")
    };
    let dead = read_until(
        &broker,
        dlq,
        Duration::from_secs(60),
        Duration::from_secs(1),
        |rs| rs.iter().map(offset).collect::<BTreeSet<_>>().len() >= bad.len(),
    );
    let seen: BTreeSet<i64> = dead.iter().map(offset).collect();
    assert_eq!(seen, bad, "the dead letters are the malformed lines");
    for d in &dead {
        assert_eq!(d.headers["weir.source.topic"], input.display().to_string());
        assert!(
            data.text[offset(d) as usize..].starts_with(&d.value),
            "the offset is the line's byte position"
        );
    }
}

#[test]
fn kafka_to_file_gives_every_alert_at_least_once_through_a_crash() {
    let broker = Mock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Group::with_topics(&broker, dir.path(), "k2f", PARTITIONS as u32);
    let data = data_set(120_000, 1_200, 45, 600);
    let bad = malformed(&data);
    assert!(bad.len() > 100);
    produce_compressed(&broker, &g.input, &lines(&data.text), None, "lz4");
    produce_end_markers(&broker, &g.input, PARTITIONS);
    let out = dir.path().join("alerts.jsonl");
    let dead_file = dir.path().join("alerts.jsonl.dlq");

    // The first worker dies once it has completed checkpoints.
    let mut first = g.start_writing_to("a", &out, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while first.checkpoints_complete().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no checkpoints:\n{}",
            first.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    first.signal("KILL");

    // The second resumes from them and finishes, appending to the file.
    let mut second = g.start_writing_to("b", &out, &[]);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let got: BTreeSet<_> = read_alert_file(&out).into_iter().collect();
        if data.reference.is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} alerts after 240 s:\n{}",
            got.len(),
            data.reference.len(),
            second.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = second.signal("TERM");
    assert!(status.success(), "SIGTERM exits 0:\n{}", second.log_text());
    assert!(
        second.records_read() < data.lines as u64,
        "the second worker resumed from the first one's checkpoints"
    );
    assert_same_alerts(&read_alert_file(&out), &data.reference);

    // Every malformed record is dead-lettered, at least once.
    let dead = common::read_json_lines(&dead_file);
    let places: BTreeSet<(i64, i64)> = dead
        .iter()
        .map(|v| {
            (
                v["partition"].as_i64().expect("partition"),
                v["offset"].as_i64().expect("offset"),
            )
        })
        .collect();
    assert_eq!(
        places.len(),
        bad.len(),
        "each malformed record dead-lettered"
    );
    for v in &dead {
        let input = v["input"].as_str().expect("input");
        assert!(
            !well_formed(input.as_bytes()),
            "a dead letter is a malformed line: {input}"
        );
    }
}
