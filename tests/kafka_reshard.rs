//! Kafka mode: state queries across a group, and a topic grown from 4 to 8
//! partitions with its checkpoints re-sharded.
//!
//! Neither broker under the tests can grow a topic (tansu 0.6 and
//! librdkafka's mock cluster have no CreatePartitions), so the grown topic
//! is a second one with 8 partitions whose first 4 hold the old topic's
//! records at the same offsets, which is what growing leaves in place, and
//! the old topic's checkpoint folder is moved to the new topic's name, which
//! is where a grown topic's checkpoints already are. Everything else is
//! what an operator does: drain, stop the workers, re-shard, produce on
//! with the default partitioner over 8, start the workers on a new state
//! directory. The alerts must equal the independent reference, each once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::admin::{by_partition, get, scrape_until, total};
use common::broker::{Kafka, Mock};
use common::kafka::{Group, lines, produce_end_markers, produce_placed, read_alerts, src_of};
use common::{WINDOW, checkpoints_cli, data_set, reshard_cli, summary_field};

/// `rt=` of a line.
fn rt_of(line: &[u8]) -> i64 {
    let text = std::str::from_utf8(line).expect("utf-8");
    let at = text.find(" rt=").expect("rt") + 4;
    text[at..]
        .split(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("rt is a number")
}

/// (events, failed logins) per (src, window start) of `lines`.
fn windows(lines: &[&[u8]]) -> BTreeMap<(String, i64), (u64, u64)> {
    let mut out: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for line in lines {
        let src = String::from_utf8_lossy(src_of(line).expect("src")).into_owned();
        let start = rt_of(line).div_euclid(WINDOW) * WINDOW;
        let text = String::from_utf8_lossy(line);
        let failed = text.contains("|100|Login") && text.contains("outcome=failure");
        let w = out.entry((src, start)).or_default();
        w.0 += 1;
        w.1 += u64::from(failed);
    }
    out
}

/// The partition Kafka's default partitioner gives `key` among `n`.
fn partition(key: &[u8], n: u32) -> i32 {
    weir::partitioner::partition_of(key, n) as i32
}

#[test]
fn a_topic_grown_from_four_to_eight_partitions_resumes_on_its_resharded_checkpoint() {
    let broker = Mock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = data_set(120_000, 1_500, 61, 0);
    let all = lines(&data.text);
    let (first, second) = all.split_at(all.len() / 2);
    let old = Group::with_topics(&broker, dir.path(), "grow", 4);
    // The same job (group) and outputs, over the grown topic.
    let grown = Group {
        broker: &broker,
        dir: dir.path(),
        input: "grow-8-in".to_string(),
        output: old.output.clone(),
        dlq: old.dlq.clone(),
        group: old.group.clone(),
    };
    broker.create_topic(&grown.input, 8);
    let by_key4 = |line: &[u8]| src_of(line).map(|k| partition(k, 4));
    produce_placed(&broker, &old.input, first, by_key4);
    produce_placed(&broker, &grown.input, first, by_key4);
    let mut produced = [0u64; 4];
    for line in first {
        produced[by_key4(line).expect("keyed") as usize] += 1;
    }

    // Two workers share the old topic and answer state queries.
    let (mut w1, port1) = old.start_with_admin("w1", &["--serve-state"]);
    let (mut w2, port2) = old.start_with_admin("w2", &["--serve-state"]);
    // Drained: each owns two partitions, restored, with nothing left to
    // process in either.
    for port in [port1, port2] {
        scrape_until(port, Duration::from_secs(240), "drained", |m| {
            let lag = by_partition(m, "weir_consumer_lag_processed_records");
            total(m, "weir_partitions_assigned") == 2.0
                && total(m, "weir_partitions_restoring") == 0.0
                && lag.len() == 2
                && lag.values().all(|v| *v == 0.0)
        });
    }

    // The state of the last line's source (its window is still open: no
    // later event moved the watermark past it), read through either
    // worker: its owner answers with its open windows, counted as the
    // lines count them; the other says 404 and names the partition.
    let counts = windows(first);
    let last = first.last().expect("lines");
    let src = String::from_utf8_lossy(src_of(last).expect("src")).into_owned();
    let home = partition(src.as_bytes(), 4);
    let path = format!("/state/cef_alerts/{src}");
    let answers: Vec<(u16, String)> = [port1, port2]
        .iter()
        .map(|&p| get(p, &path).expect("the admin server answers"))
        .collect();
    let codes: BTreeSet<u16> = answers.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, BTreeSet::from([200, 404]), "{answers:?}");
    for (code, body) in &answers {
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["partition"].as_i64(), Some(i64::from(home)), "{body}");
        if *code == 200 {
            let open = v["state"].as_array().expect("the windows");
            assert!(!open.is_empty(), "{body}");
            for w in open {
                let start = w["start"].as_i64().expect("start");
                let seen = (
                    w["events"].as_u64().expect("events"),
                    w["failed"].as_u64().expect("failed"),
                );
                assert_eq!(
                    Some(&seen),
                    counts.get(&(src.to_string(), start)),
                    "window {start} of {src}: {body}"
                );
            }
        }
    }

    // Drained: stop. Each takes a final checkpoint of what it owns.
    assert!(w1.signal("TERM").success(), "{}", w1.log_text());
    assert!(w2.signal("TERM").success(), "{}", w2.log_text());

    // The topic grows: its checkpoints are where the grown topic's are.
    let jobs = dir.path().join("store").join("jobs").join(&old.group);
    std::fs::rename(jobs.join(&old.input), jobs.join(&grown.input)).expect("move");
    let store = dir.path().join("store");
    let url = store.to_str().expect("utf-8");
    let (printed, summary) = reshard_cli(url, &["--to-partitions", "8"]);
    assert!(
        summary.contains("mode=kafka topic=grow-8-in from=4 to=8"),
        "{summary}"
    );
    assert!(summary_field(&summary, "moved") > 0, "{summary}");
    // Old partitions keep their offsets (all read); new ones start at 0.
    for line in printed
        .lines()
        .filter(|l| l.starts_with("wrote checkpoint "))
    {
        let mut words = line.split_whitespace().skip(2);
        let id = words.next().expect("id");
        let area = words.nth(1).expect("area");
        let p: usize = area
            .rsplit_once("/p")
            .expect("partition")
            .1
            .parse()
            .expect("n");
        let inspected = checkpoints_cli("inspect", url, &["--area", area, id], &[]);
        let m: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("manifest");
        let position = m["partitions"][0]["position"].as_u64().expect("position");
        assert_eq!(
            position,
            produced.get(p).copied().unwrap_or(0),
            "{area}: {m}"
        );
    }

    // Producers go on over 8 partitions; new workers resume.
    produce_placed(&broker, &grown.input, second, |_| None);
    produce_end_markers(&broker, &grown.input, 8);
    let w3 = grown.start("w3", &[]);
    let w4 = grown.start("w4", &[]);
    let got = read_alerts(
        &broker,
        &grown.output,
        &data.reference,
        Duration::from_secs(300),
    );
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    if unique != data.reference {
        for w in [&w1, &w2, &w3, &w4] {
            eprintln!("--- {} ---\n{}", w.name, w.log_text());
        }
    }
    assert_eq!(
        unique.difference(&data.reference).count() + data.reference.difference(&unique).count(),
        0,
        "alerts differ from the reference ({} missing, {} extra)",
        data.reference.difference(&unique).count(),
        unique.difference(&data.reference).count()
    );
    assert_eq!(got.len(), unique.len(), "an alert was written twice");
    // The restarted workers restored the re-sharded checkpoints.
    let restored: Vec<(u32, u64)> = [&w3, &w4]
        .iter()
        .flat_map(|w| w.assignments())
        .filter(|(_, id)| *id > 0)
        .collect();
    let partitions: BTreeSet<u32> = restored.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions, (0..8).collect(), "{restored:?}");
}
