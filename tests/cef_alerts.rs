//! Runs the `cef_alerts` example as a user would and checks its alerts
//! against an independent, plain implementation written here.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{data_set, end_with_two_open_windows, example_bin, run_example, summary_field};

/// Runs `cef_alerts` over `data` in `dir`; its alerts must be the
/// reference, each once.
fn run_and_compare(dir: &std::path::Path, data: &common::DataSet) -> common::Run {
    let input = dir.join("events.cef");
    std::fs::write(&input, &data.text).expect("write input");
    let run = run_example(dir, "alerts", &["--input", input.to_str().expect("utf-8")]);
    let got: BTreeSet<_> = run.alerts.iter().cloned().collect();
    assert_eq!(got.len(), run.alerts.len(), "no alert twice");
    let missing: Vec<_> = data.reference.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&data.reference).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} alerts, reference {}; missing {missing:?}, extra {extra:?}",
        got.len(),
        data.reference.len()
    );
    run
}

#[test]
fn alerts_match_an_independent_reference_and_malformed_lines_are_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = data_set(60_000, 400, 42, 150);
    end_with_two_open_windows(&mut data);
    assert!(
        data.reference.len() > 20,
        "the data set has attacks: {}",
        data.reference.len()
    );
    let run = run_and_compare(dir.path(), &data);

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
        .write_all(b"CEF:0|V|P|1|100|N|5|src=1.2.3.4 msg=a b\\=c\nnot cef\nCEF:1|V|P|1|2|N|5|\nCEF:0|V|P|1|1|N|1|src=\xff\xfe\nCEF:0|V|P|1|1|N|1|a=1\tb=x y\t\r\n")
        .expect("write");
    let out = child.wait_with_output().expect("runs");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 5);
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
    assert_eq!(
        lines[3],
        serde_json::json!({"error": "column 23: expected UTF-8 text", "line": 4}),
        "bytes that are not UTF-8 are an error, not replaced"
    );
    assert_eq!(
        (lines[4]["a"].as_str(), lines[4]["b"].as_str()),
        (Some("1"), Some("x y")),
        "a tab separates pairs; trailing tab and CR are not part of a value"
    );
}

#[test]
fn the_last_window_of_a_finite_input_is_not_lost() {
    // Five failed logins in the two seconds before a minute boundary and
    // five in the half second after it: at the end of the file the first
    // window is still open (the watermark trails by 5 s), so the source has
    // two open windows and one close timer that re-arms from the first to
    // the second.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for rt in (0..5)
        .map(|i| 1_700_000_098_000i64 + i * 100)
        .chain((0..5).map(|i| 1_700_000_100_000 + i * 100))
    {
        text.push_str(&format!(
            "CEF:0|V|P|1|100|Login|5|src=10.1.1.1 outcome=failure rt={rt}\n"
        ));
    }
    let input = dir.path().join("ten.cef");
    std::fs::write(&input, text).expect("write input");
    let run = run_example(
        dir.path(),
        "ten",
        &["--input", input.to_str().expect("utf-8")],
    );
    let starts: Vec<i64> = run.alerts.iter().map(|a| a.1).collect();
    assert_eq!(starts, vec![1_700_000_040_000, 1_700_000_100_000]);
    assert!(run.dead_letters.is_empty(), "{:?}", run.dead_letters);
}

#[test]
fn a_million_events_match_the_reference_including_the_last_window() {
    // The sizes a user tries first: 1,000,000 events over 10,000, 50,000
    // and 1,000,000 source addresses, each ending with a source that has
    // two open windows when the input ends.
    for (keys, seed) in [(10_000, 11), (50_000, 12), (1_000_000, 13)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = data_set(1_000_000, keys, seed, 0);
        end_with_two_open_windows(&mut data);
        let run = run_and_compare(dir.path(), &data);
        eprintln!(
            "{keys} keys: {} alerts equal the reference ({})",
            run.alerts.len(),
            run.summary.trim()
        );
    }
}
