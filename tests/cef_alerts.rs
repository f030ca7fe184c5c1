//! Runs the `cef_alerts` example as a user would and checks its alerts
//! against an independent, plain implementation written here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const START: i64 = 1_767_225_600_000;
const WINDOW: i64 = 60_000;
const THRESHOLD: u32 = 5;

/// The example binary, built by `cargo test` next to the test binaries.
fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir
        .join("examples")
        .join(format!("cef_alerts{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} missing: run through `cargo test`, which builds examples",
        bin.display()
    );
    bin
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// (src, window_start) -> (failed, events, last_seen)
type Reference = BTreeSet<(String, i64, u32, u32, i64)>;

struct DataSet {
    text: Vec<u8>,
    malformed: usize,
    lines: usize,
    reference: Reference,
}

fn data_set(events: u64, keys: u64, seed: u64, malformed_every: u64) -> DataSet {
    let mut rng = Lcg(seed);
    let mut text = Vec::new();
    let mut windows: BTreeMap<(String, i64), (u32, u32, i64)> = BTreeMap::new();
    let mut malformed = 0;
    let mut lines = 0;
    let mut burst: Option<(u64, u32)> = None;
    for i in 0..events {
        if malformed_every > 0 && i % malformed_every == malformed_every / 2 {
            let bad: &[u8] = match malformed % 6 {
                0 => b"this is not a CEF line",
                1 => b"CEF:0|Vendor|Product|1.0",
                2 => b"CEF:0|V|P|1|100|Login|5|outcome=failure rt=1767225600000",
                3 => b"CEF:0|V|P|1|100|Login|5|src=10.9.9.9 outcome=failure",
                4 => b"CEF:0|V|P|1|100|Login|5|src=10.9.9.9 rt=Smarch 5 2026 10:00:00",
                _ => b"CEF:0|V|P|1|100|Login|5|src=10.9.\xff\xfe rt=1767225600000",
            };
            text.extend_from_slice(bad);
            text.push(b'\n');
            malformed += 1;
            lines += 1;
        }
        let rt = START + i as i64 * 7 - rng.next(2_000) as i64;
        if burst.is_none() && rng.next(500) == 0 {
            burst = Some((rng.next(keys), 8));
        }
        let (key, failed) = match burst {
            Some((k, left)) if rng.next(3) == 0 => {
                burst = (left > 1).then_some((k, left - 1));
                (k, true)
            }
            _ => (rng.next(keys), rng.next(10) == 0),
        };
        let src = format!("172.16.{}.{}", key / 250, key % 250);
        let login = failed || rng.next(2) == 0;
        let sig = if login { 100 } else { 300 + rng.next(3) };
        let outcome = if failed { "failure" } else { "success" };
        // Escapes and spaces in fields around the ones that matter.
        let line = format!(
            "<86>Jan  1 00:00:00 host-{} CEF:0|Test\\|Co|Suite|2.{}|{sig}|Login \\\\ check|7|msg=user tried x\\=y and left suser=u{} outcome={outcome} src={src} rt={rt} cs1=a b c",
            key % 3,
            i % 10,
            rng.next(100)
        );
        text.extend_from_slice(line.as_bytes());
        text.extend_from_slice(if i % 17 == 0 { b"\r\n" } else { b"\n" });
        lines += 1;
        let w = windows
            .entry((src, rt.div_euclid(WINDOW) * WINDOW))
            .or_insert((0, 0, i64::MIN));
        w.1 += 1;
        if sig == 100 && failed {
            w.0 += 1;
        }
        w.2 = w.2.max(rt);
    }
    let reference = windows
        .into_iter()
        .filter(|(_, (failed, _, _))| *failed >= THRESHOLD)
        .map(|((src, start), (failed, events, last))| (src, start, failed, events, last))
        .collect();
    DataSet {
        text,
        malformed,
        lines,
        reference,
    }
}

struct Run {
    alerts: Vec<(String, i64, u32, u32, i64)>,
    dead_letters: Vec<serde_json::Value>,
    summary: String,
}

fn run_example(dir: &Path, name: &str, extra: &[&str]) -> Run {
    let output = dir.join(format!("{name}.jsonl"));
    let state = dir.join(format!("{name}-state"));
    let out = Command::new(example_bin())
        .args(["--output", output.to_str().expect("utf-8 path")])
        .args(["--state-dir", state.to_str().expect("utf-8 path")])
        .args(["--threshold", &THRESHOLD.to_string(), "--window-secs", "60"])
        .args(extra)
        .output()
        .expect("cef_alerts starts");
    let summary = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "cef_alerts failed: {summary}");
    let alerts = std::fs::read_to_string(&output)
        .expect("output file")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("alert is JSON");
            (
                v["src"].as_str().expect("src").to_string(),
                v["window_start"].as_i64().expect("window_start"),
                v["failed"].as_u64().expect("failed") as u32,
                v["events"].as_u64().expect("events") as u32,
                v["last_seen"].as_i64().expect("last_seen"),
            )
        })
        .collect();
    let dead_letters = std::fs::read_to_string(dir.join(format!("{name}.jsonl.dlq")))
        .expect("dead-letter file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letter is JSON"))
        .collect();
    Run {
        alerts,
        dead_letters,
        summary,
    }
}

fn summary_field(summary: &str, name: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in summary: {summary}"))
}

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
        err.contains("partitions=2") && err.contains("3 partitions"),
        "{err}"
    );
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
