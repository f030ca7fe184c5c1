//! Runs the `cef_alerts` example as a user would and checks its alerts
//! against an independent, plain implementation written here.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{data_set, example_bin, run_example, summary_field};

#[test]
fn alerts_match_an_independent_reference_and_malformed_lines_are_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = data_set(60_000, 400, 42, 150);
    assert!(
        data.reference.len() > 20,
        "the data set has attacks: {}",
        data.reference.len()
    );
    let input = dir.path().join("events.cef");
    std::fs::write(&input, &data.text).expect("write input");

    let run = run_example(
        dir.path(),
        "alerts",
        &["--input", input.to_str().expect("utf-8")],
    );
    let got: BTreeSet<_> = run.alerts.iter().cloned().collect();
    assert_eq!(got.len(), run.alerts.len(), "no alert twice");
    assert_eq!(got, data.reference);

    assert_eq!(run.dead_letters.len(), data.malformed);
    for d in &run.dead_letters {
        assert!(d["reason"].as_str().is_some_and(|r| !r.is_empty()), "{d}");
        assert!(d["offset"].as_u64().is_some(), "{d}");
        assert!(d["input"].is_string(), "{d}");
    }
    let reasons: BTreeSet<_> = run
        .dead_letters
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(reasons.contains("missing src extension"), "{reasons:?}");
    assert!(reasons.contains("missing rt extension"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("column 1: expected")),
        "{reasons:?}"
    );

    assert_eq!(summary_field(&run.summary, "records"), data.lines as u64);
    assert_eq!(
        summary_field(&run.summary, "alerts"),
        data.reference.len() as u64
    );
    assert_eq!(
        summary_field(&run.summary, "dead_lettered"),
        data.malformed as u64
    );
    assert_eq!(summary_field(&run.summary, "late"), 0);
}

#[test]
fn a_live_actor_cap_of_ten_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = data_set(50_000, 10_000, 7, 0);
    let input = dir.path().join("events.cef");
    std::fs::write(&input, &data.text).expect("write input");
    let input = input.to_str().expect("utf-8");

    let capped = run_example(
        dir.path(),
        "capped",
        &["--input", input, "--live-actor-cap", "10"],
    );
    let free = run_example(dir.path(), "free", &["--input", input]);
    let capped: BTreeSet<_> = capped.alerts.into_iter().collect();
    let free: BTreeSet<_> = free.alerts.into_iter().collect();
    assert!(!free.is_empty());
    assert_eq!(capped, free);
    assert_eq!(free, data.reference);
}

#[test]
fn generated_input_runs_and_is_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--generate", "30000", "--keys", "200", "--seed", "9"];
    let a = run_example(dir.path(), "gen-a", &args);
    let b = run_example(dir.path(), "gen-b", &args);
    assert_eq!(summary_field(&a.summary, "records"), 30_000);
    assert!(!a.alerts.is_empty(), "generated bursts raise alerts");
    let sa: BTreeSet<_> = a.alerts.into_iter().collect();
    let sb: BTreeSet<_> = b.alerts.into_iter().collect();
    assert_eq!(sa, sb);
    assert!(a.dead_letters.is_empty());
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = Command::new(example_bin())
        .args([
            "--output",
            "/nonexistent-dir/x.jsonl",
            "--state-dir",
            "/tmp/unused",
            "--generate",
            "10",
        ])
        .output()
        .expect("starts");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-dir/x.jsonl"));
    let out = Command::new(example_bin())
        .args(["--output", "x", "--state-dir", "y"])
        .output()
        .expect("starts");
    assert!(!out.status.success(), "neither --input nor --generate");
}

#[test]
fn a_state_dir_refuses_another_partition_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let run = |partitions: &str| {
        Command::new(example_bin())
            .args([
                "--generate",
                "100",
                "--keys",
                "5",
                "--partitions",
                partitions,
            ])
            .args([
                "--output",
                dir.path().join("o.jsonl").to_str().expect("utf-8"),
            ])
            .args(["--state-dir", state.to_str().expect("utf-8")])
            .output()
            .expect("starts")
    };
    assert!(run("2").status.success());
    assert!(run("2").status.success());
    let out = run("3");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("written with partitions=2") && err.contains("has partitions=3"),
        "{err}"
    );

    // Another checkpoint store for the same state: refused, it would look
    // like a fresh start and truncate the outputs.
    let other = Command::new(example_bin())
        .args(["--generate", "100", "--keys", "5", "--partitions", "2"])
        .args([
            "--output",
            dir.path().join("o.jsonl").to_str().expect("utf-8"),
        ])
        .args(["--state-dir", state.to_str().expect("utf-8")])
        .args([
            "--checkpoint-store",
            dir.path().join("elsewhere").to_str().expect("utf-8"),
        ])
        .output()
        .expect("starts");
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("belongs to checkpoint store"), "{err}");
}

#[test]
fn weir_cef_decode_prints_json_and_errors_per_line() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["cef", "decode"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("weir starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"CEF:0|V|P|1|100|N|5|src=1.2.3.4 msg=a b\\=c\nnot cef\nCEF:1|V|P|1|2|N|5|\n")
        .expect("write");
    let out = child.wait_with_output().expect("runs");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["signatureId"], "100");
    assert_eq!(lines[0]["msg"], "a b=c");
    assert_eq!(lines[0]["deviceVendor"], "V");
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"]
            .as_str()
            .expect("error")
            .contains("column 1")
    );
    assert_eq!(lines[2]["version"], 1);
}
