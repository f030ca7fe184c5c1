//! Whose checkpoints are whose, in Kafka mode, on librdkafka's mock cluster
//! (in process, so nothing is skipped):
//! - two consumer groups read one topic with one checkpoint store, each
//!   killed with SIGKILL twice: each gets the reference alerts, and each
//!   restores only its own checkpoints (the store listing shows both jobs,
//!   every manifest naming its own);
//! - a worker paused with SIGSTOP while another takes its partitions over
//!   and checkpoints them is refused further checkpoints when it resumes,
//!   and the alerts are still the reference.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::broker::{Kafka, Mock};
use common::kafka::{Group, Worker, lines, produce_compressed, produce_end_markers, read_alerts};
use common::{DataSet, data_set};

const PARTITIONS: u32 = 4;

/// The alerts read from `g`'s output are the reference, each at least once.
fn assert_reference(g: &Group<'_>, data: &DataSet, workers: &[&Worker]) {
    let got = read_alerts(
        g.broker,
        &g.output,
        &data.reference,
        Duration::from_secs(180),
    );
    let unique: BTreeSet<_> = got.into_iter().collect();
    if unique != data.reference {
        for w in workers {
            eprintln!("--- {} ---\n{}", w.name, w.log_text());
        }
    }
    let missing = data.reference.difference(&unique).count();
    let extra = unique.difference(&data.reference).count();
    assert!(
        missing == 0 && extra == 0,
        "group {}: {missing} alerts missing, {extra} not in the reference",
        g.group
    );
}

/// `weir checkpoints list` over the group's store.
fn store_listing(dir: &Path, job: Option<&str>) -> String {
    let store = dir.join("store");
    let extra: Vec<&str> = job.map(|j| vec!["--job", j]).unwrap_or_default();
    common::list_checkpoints_cli(store.to_str().expect("utf-8"), &extra, &[])
}

#[test]
fn two_groups_on_one_topic_and_one_store_keep_to_their_own_checkpoints() {
    let mock = Mock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Group::with_topics(&mock, dir.path(), "owners", PARTITIONS);
    let second = Group {
        broker: &mock,
        dir: dir.path(),
        input: first.input.clone(),
        output: "owners-b-out".into(),
        dlq: "owners-b-dlq".into(),
        group: "owners-b-group".into(),
    };
    mock.create_topic(&second.output, 1);
    mock.create_topic(&second.dlq, 1);
    let data = data_set(150_000, 1_500, 47, 0);
    produce_compressed(&mock, &first.input, &lines(&data.text), None, "lz4");
    produce_end_markers(&mock, &first.input, PARTITIONS as i32);

    let mut done = Vec::new();
    for (g, tag) in [(&first, "a"), (&second, "b")] {
        // Killed twice, each time once every partition completed a
        // checkpoint.
        let mut workers = Vec::new();
        for round in 1..=2 {
            let mut w = g.start(&format!("{tag}{round}"), &[]);
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let done: BTreeSet<u32> =
                    w.checkpoints_complete().iter().map(|&(p, _)| p).collect();
                if done.len() == PARTITIONS as usize {
                    break;
                }
                assert!(Instant::now() < deadline, "{}:\n{}", w.name, w.log_text());
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(!w.signal("KILL").success());
            workers.push(w);
        }
        let last = g.start(&format!("{tag}3"), &[]);
        done.push((g, workers, last));
    }
    for (g, workers, mut last) in done {
        let all: Vec<&Worker> = workers.iter().chain([&last]).collect();
        assert_reference(g, &data, &all);
        // The last worker resumed from its own group's checkpoints.
        let restored: Vec<u64> = last.assignments().iter().map(|&(_, c)| c).collect();
        assert!(
            restored.len() >= PARTITIONS as usize && restored.iter().all(|&c| c > 0),
            "{}: restored {restored:?}\n{}",
            last.name,
            last.log_text()
        );
        assert!(last.signal("TERM").success(), "{}", last.log_text());
        let read = last.records_read();
        assert!(
            read < data.lines as u64,
            "{} read {read} of {} records: it started over",
            last.name,
            data.lines
        );
    }

    // Both jobs are in the store, each area holds only its own job's
    // manifests, and every file of every checkpoint is there.
    let listing = store_listing(dir.path(), None);
    eprintln!("{listing}");
    for g in [&first, &second] {
        for p in 0..PARTITIONS {
            let area = format!(
                "job {}  area jobs/{}/{}/p{p}  epoch",
                g.group, g.group, g.input
            );
            assert!(listing.contains(&area), "no {area:?} in:\n{listing}");
        }
    }
    assert!(!listing.contains("manifest names job"), "{listing}");
    assert!(!listing.contains("DAMAGED"), "{listing}");
    let own = store_listing(dir.path(), Some(&second.group));
    assert!(
        !own.contains(&format!("jobs/{}/", first.group)),
        "--job shows one job: {own}"
    );
}

/// A worker stopped with SIGSTOP in the middle of its checkpoints, while a
/// second worker takes its partitions over, restores and checkpoints them:
/// when it resumes, its uploads meet the new owners' epochs and are refused.
#[cfg(feature = "failpoints")]
#[test]
fn a_paused_worker_is_fenced_when_it_resumes() {
    let mock = Mock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Group::with_topics(&mock, dir.path(), "zombie", PARTITIONS);
    let data = data_set(200_000, 2_000, 53, 0);
    let owned: Vec<Vec<u8>> = lines(&data.text).iter().map(|l| l.to_vec()).collect();
    let feeder = {
        let input = g.input.clone();
        let to = common::broker::Endpoint::of(&mock);
        std::thread::spawn(move || {
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            produce_compressed(&to, &input, &refs, Some(8_000), "lz4");
        })
    };
    // Every upload of the first worker waits 2 s before its owner check, so
    // the pause almost surely finds one in flight (and if not, the next one
    // meets the check).
    let mut a = g.start_with_env(
        "a",
        &[],
        &[("FAILPOINTS", "checkpoint-before-owner-check=sleep(2000)")],
    );
    a.wait_for_log("checkpoint complete", 2, Duration::from_secs(60));
    a.send("STOP");
    let mut b = g.start("b", &[]);
    // The session of the paused worker times out; the second takes every
    // partition, restores it and completes checkpoints of its own.
    b.wait_for_log(
        "partition assigned",
        PARTITIONS as usize,
        Duration::from_secs(90),
    );
    b.wait_for_log(
        "checkpoint complete",
        2 * PARTITIONS as usize,
        Duration::from_secs(90),
    );
    let before = store_listing(dir.path(), None);
    a.send("CONT");
    a.wait_for_log("checkpoint refused", 1, Duration::from_secs(60));
    let refusal = a
        .log_text()
        .lines()
        .find(|l| l.contains("checkpoint refused"))
        .map(str::to_string)
        .unwrap_or_default();
    eprintln!("the resumed worker: {refusal}");
    assert!(refusal.contains("superseded by epoch"), "{refusal}");

    feeder.join().expect("feeder");
    produce_end_markers(&mock, &g.input, PARTITIONS as i32);
    assert_reference(&g, &data, &[&a, &b]);
    assert!(b.signal("TERM").success(), "{}", b.log_text());
    let _ = a.signal("TERM");

    // The new owner's checkpoints stayed whole: every listed checkpoint has
    // all its files, before the end and after.
    let after = store_listing(dir.path(), None);
    eprintln!("before the resume:\n{before}\nat the end:\n{after}");
    assert!(
        !before.contains("DAMAGED") && !after.contains("DAMAGED"),
        "{after}"
    );
}
