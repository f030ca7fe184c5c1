//! The `sessions` example (a job written on `weir::run` in under 100
//! lines) against an independent model: per user, events closer than the
//! gap share a session. Generated clicks, a few lines that are not clicks
//! (dead-lettered), several partitions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use common::{Lcg, START, read_json_lines, summary_field};

const GAP_MS: i64 = 60_000;

fn sessions_bin() -> PathBuf {
    let bin =
        common::example_bin().with_file_name(format!("sessions{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

type Sessions = BTreeSet<(String, i64, i64, u64)>;

/// Clicks with non-decreasing times, and the sessions they make.
fn clicks(events: u64, users: u64, seed: u64) -> (String, Sessions, usize) {
    let mut rng = Lcg(seed);
    let mut text = String::new();
    let mut by_user: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut bad = 0;
    let mut ts = START;
    for i in 0..events {
        ts += rng.next(2_500) as i64;
        // A few users are busy, the rest come and go.
        let u = if rng.next(3) == 0 {
            rng.next(5)
        } else {
            rng.next(users)
        };
        let user = format!("user-{u}");
        text += &format!(
            "{{\"user\":\"{user}\",\"ts\":{ts},\"page\":\"/p{}\"}}\n",
            i % 7
        );
        by_user.entry(user).or_default().push(ts);
        if i % 997 == 500 {
            text += if bad % 2 == 0 {
                "not json\n"
            } else {
                "{\"ts\":5}\n"
            };
            bad += 1;
        }
    }
    let mut sessions = Sessions::new();
    for (user, times) in by_user {
        let (mut start, mut end, mut n) = (times[0], times[0], 0u64);
        for t in times {
            if t >= end + GAP_MS {
                sessions.insert((user.clone(), start, end, n));
                (start, n) = (t, 0);
            }
            end = t;
            n += 1;
        }
        sessions.insert((user, start, end, n));
    }
    (text, sessions, bad)
}

#[test]
fn sessions_match_the_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, reference, bad) = clicks(30_000, 60, 7);
    assert!(reference.len() > 500, "{} sessions", reference.len());
    let input = dir.path().join("clicks.jsonl");
    std::fs::write(&input, text).expect("write");
    let output = dir.path().join("sessions.jsonl");
    let out = Command::new(sessions_bin())
        .args(["--input", input.to_str().expect("utf-8")])
        .args(["--output", output.to_str().expect("utf-8")])
        .args([
            "--state-dir",
            dir.path().join("state").to_str().expect("utf-8"),
        ])
        .args([
            "--gap-secs",
            "60",
            "--partitions",
            "3",
            "--idle-watermark-ms",
            "0",
        ])
        .output()
        .expect("sessions starts");
    let summary = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "sessions failed: {summary}");
    let got: Vec<(String, i64, i64, u64)> = read_json_lines(&output)
        .iter()
        .map(|v| {
            (
                v["user"].as_str().expect("user").to_string(),
                v["start"].as_i64().expect("start"),
                v["end"].as_i64().expect("end"),
                v["events"].as_u64().expect("events"),
            )
        })
        .collect();
    assert_eq!(got.len(), reference.len(), "each session once");
    let got: Sessions = got.into_iter().collect();
    let missing: Vec<_> = reference.difference(&got).take(3).collect();
    let extra: Vec<_> = got.difference(&reference).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(summary_field(&summary, "sessions"), reference.len() as u64);
    let dead = read_json_lines(&dir.path().join("sessions.jsonl.dlq"));
    assert_eq!(dead.len(), bad);
    assert!(dead.iter().any(|d| {
        d["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not JSON"))
    }));
    assert!(
        dead.iter()
            .any(|d| d["reason"]
                == "not the expected record: missing field `user` at line 1 column 8")
    );
}
