//! Shared by the integration tests: the example binary, an independent
//! CEF data set with its reference alerts, and running the example.
#![allow(dead_code)]

pub mod admin;
pub mod broker;
pub mod kafka;
pub mod moto;
pub mod server;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const START: i64 = 1_767_225_600_000;
pub const WINDOW: i64 = 60_000;
pub const THRESHOLD: u32 = 5;

/// The example binary, built by `cargo test` next to the test binaries.
pub fn example_bin() -> PathBuf {
    example_bin_named("cef_alerts")
}

/// The example binary `name`.
pub fn example_bin_named(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} missing: run through `cargo test`, which builds examples",
        bin.display()
    );
    bin
}

/// A small deterministic generator, independent of weir's.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// (src, window_start) -> (failed, events, last_seen)
pub type Reference = BTreeSet<(String, i64, u32, u32, i64)>;

pub struct DataSet {
    pub text: Vec<u8>,
    pub malformed: usize,
    pub lines: usize,
    pub reference: Reference,
    /// The largest event time in the data.
    pub max_rt: i64,
}

pub fn data_set(events: u64, keys: u64, seed: u64, malformed_every: u64) -> DataSet {
    let mut rng = Lcg(seed);
    let mut text = Vec::new();
    let mut windows: BTreeMap<(String, i64), (u32, u32, i64)> = BTreeMap::new();
    let mut malformed = 0;
    let mut lines = 0;
    let mut burst: Option<(u64, u32)> = None;
    let mut max_rt = START;
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
        max_rt = max_rt.max(rt);
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
        max_rt,
    }
}

/// Appends the end-of-input case to `data`: a source (one no other line
/// uses) fails five times in the two seconds before the minute boundary
/// after the last event and five times in the half second after it, so
/// when the input ends it has two open windows, each with an alert.
pub fn end_with_two_open_windows(data: &mut DataSet) {
    let src = "172.31.255.254".to_string();
    // Not late: the first line is no more than 2 s behind the largest time.
    let boundary = (data.max_rt + 2_000).div_euclid(WINDOW) * WINDOW + WINDOW;
    let before: Vec<i64> = (0..5).map(|i| boundary - 2_000 + i * 100).collect();
    let after: Vec<i64> = (0..5).map(|i| boundary + i * 100).collect();
    for rt in before.iter().chain(&after) {
        let line = format!("CEF:0|Test|Suite|1|100|Login|7|src={src} outcome=failure rt={rt}\n");
        data.text.extend_from_slice(line.as_bytes());
        data.lines += 1;
    }
    data.reference
        .insert((src.clone(), boundary - WINDOW, 5, 5, before[4]));
    data.reference.insert((src, boundary, 5, 5, after[4]));
    data.max_rt = after[4];
}

/// A record keyed by a CEF line's `src` and carrying nothing else, for
/// processors that only count keys.
pub fn by_src(line: &[u8]) -> Result<weir::Decoded<String, ()>, String> {
    let src = kafka::src_of(line).ok_or("no src")?;
    Ok(weir::Decoded {
        key: String::from_utf8_lossy(src).into_owned(),
        timestamp: None,
        value: (),
    })
}

pub struct Run {
    pub alerts: Vec<(String, i64, u32, u32, i64)>,
    pub dead_letters: Vec<serde_json::Value>,
    pub summary: String,
}

pub fn run_example(dir: &Path, name: &str, extra: &[&str]) -> Run {
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
    let alerts = read_alerts(&output);
    let dead_letters = read_json_lines(&dir.join(format!("{name}.jsonl.dlq")));
    Run {
        alerts,
        dead_letters,
        summary,
    }
}

pub fn summary_field(summary: &str, name: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in summary: {summary}"))
}

/// Every line of a JSON-lines file, parsed (a torn line fails the test).
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", path.display()))
        })
        .collect()
}

/// The alerts of an output file, as tuples.
pub fn read_alerts(path: &Path) -> Vec<(String, i64, u32, u32, i64)> {
    read_json_lines(path)
        .into_iter()
        .map(|v| {
            (
                v["src"].as_str().expect("src").to_string(),
                v["window_start"].as_i64().expect("window_start"),
                v["failed"].as_u64().expect("failed") as u32,
                v["events"].as_u64().expect("events") as u32,
                v["last_seen"].as_i64().expect("last_seen"),
            )
        })
        .collect()
}

/// `weir checkpoints <command> --store <store> <extra>` with `env`.
pub fn checkpoints_cli(
    command: &str,
    store: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["checkpoints", command, "--store", store])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("weir runs")
}

/// What `weir checkpoints list` prints for `store` (it must succeed).
pub fn list_checkpoints_cli(store: &str, extra: &[&str], env: &[(&str, String)]) -> String {
    let out = checkpoints_cli("list", store, extra, env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The checkpoint rows of a `weir checkpoints list`: lines that start
/// with an id.
pub fn checkpoint_rows(list: &str) -> Vec<&str> {
    list.lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|id| id.parse::<u64>().is_ok())
        })
        .collect()
}

/// The manifest `weir checkpoints inspect` prints for checkpoint `id`.
pub fn inspect_checkpoint(store: &str, id: u64, env: &[(&str, String)]) -> serde_json::Value {
    let out = checkpoints_cli("inspect", store, &[&id.to_string()], env);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect {id} printed no manifest ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs `bin` with `args` to the end of its input, logging to `log`; it
/// must succeed, and its last run must have resumed from a checkpoint
/// rather than read all of `lines` again.
pub fn resume_to_the_end(bin: &Path, args: &[String], log: &Path, lines: usize) {
    let status = Command::new(bin)
        .args(args)
        .stderr(std::fs::File::create(log).expect("log"))
        .status()
        .expect("the job runs");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    assert_resumed(log, lines);
}

/// `weir checkpoints reshard --store url <extra>`: it must succeed.
/// Returns what it printed and its summary line.
pub fn reshard_cli(url: &str, extra: &[&str]) -> (String, String) {
    let out = checkpoints_cli("reshard", url, extra, &[]);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = printed
        .lines()
        .find(|l| l.starts_with("resharded "))
        .unwrap_or_else(|| panic!("no summary: {printed}"))
        .to_string();
    (printed, summary)
}

/// Runs `bin` with `args` until the store at `store` holds a checkpoint,
/// then kills it with SIGKILL, before it reached the end of its input.
pub fn kill_after_a_checkpoint(bin: &Path, args: &[String], store: &str, log: &Path) {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("the job starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while newest_checkpoint(store, &[]) == 0 {
        assert!(Instant::now() < deadline, "no checkpoint within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ended = child.try_wait().expect("poll");
    assert!(
        ended.is_none(),
        "the run finished before it was killed: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// The highest checkpoint id in the store at `url` (any job), as `weir
/// checkpoints list` shows it; 0 when it holds none.
pub fn newest_checkpoint(url: &str, env: &[(&str, String)]) -> u64 {
    let out = checkpoints_cli("list", url, &[], env);
    checkpoint_rows(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// Runs cef_alerts with `args` until it completes, killing it `kills` times
/// first after a random 100–600 ms; the last kill also waits until the run
/// completed a checkpoint in `store` (a URL), so the final run has one to
/// resume from however slow the machine. Returns how many kills landed.
pub fn run_with_kills(
    args: &[String],
    env: &[(&str, String)],
    kills: u32,
    seed: u64,
    log: &Path,
    store: Option<&str>,
) -> u32 {
    let mut rng = Lcg(seed);
    let mut landed = 0;
    loop {
        let last_kill = landed + 1 == kills;
        let before = match store {
            Some(url) if last_kill => Some((url, newest_checkpoint(url, env))),
            _ => None,
        };
        let stderr = std::fs::File::create(log).expect("log file");
        let mut child = Command::new(example_bin())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("cef_alerts starts");
        if landed < kills {
            let deadline = Instant::now() + Duration::from_millis(100 + rng.next(500));
            loop {
                if let Some(status) = child.try_wait().expect("poll") {
                    let log = std::fs::read_to_string(log).unwrap_or_default();
                    assert!(status.success(), "run failed: {log}");
                    return landed;
                }
                let checkpointed = || {
                    before.is_none_or(|(url, id)| {
                        Instant::now() > deadline + Duration::from_secs(60)
                            || newest_checkpoint(url, env) > id
                    })
                };
                if Instant::now() >= deadline && checkpointed() {
                    child.kill().expect("SIGKILL");
                    child.wait().expect("reap");
                    landed += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            let status = child.wait().expect("runs");
            let log = std::fs::read_to_string(log).unwrap_or_default();
            assert!(status.success(), "final run failed: {log}");
            assert!(
                log.contains("restored_checkpoint="),
                "summary printed: {log}"
            );
            return landed;
        }
    }
}

/// The summary line of a run's log: it restored a checkpoint (an id above
/// zero) and read fewer than `lines`, the whole input. A job that started
/// over on every run would fail here even with the right outputs.
pub fn assert_resumed(log: &Path, lines: usize) {
    let log = std::fs::read_to_string(log).expect("log");
    let summary = log
        .lines()
        .rev()
        .find(|l| l.contains("restored_checkpoint="))
        .unwrap_or_else(|| panic!("no summary in the log: {log}"));
    let restored = summary_field(summary, "restored_checkpoint");
    let read = summary_field(summary, "records");
    assert!(
        restored > 0,
        "the last run restored no checkpoint: {summary}"
    );
    assert!(
        read < lines as u64,
        "the last run read {read} of {lines} lines: it started over: {summary}"
    );
}

/// A manifest planted by someone who can write to the store: `real` (a
/// manifest as `weir checkpoints inspect` prints it) as checkpoint `id`,
/// with partition 0 also naming a stored file (right size and checksum)
/// as `../../<canary>` and as the absolute path `canary`, and a key that
/// climbs out of the store. Restoring it must write nothing outside the
/// state directory.
pub fn hostile_manifest(real: &serde_json::Value, id: u64, canary: &Path) -> Vec<u8> {
    let mut m = real.clone();
    for extra in ["area", "total_bytes", "age"] {
        m.as_object_mut().expect("a manifest").remove(extra);
    }
    m["checkpoint_id"] = id.into();
    let files = m["partitions"][0]["files"]
        .as_array_mut()
        .expect("partition 0 has files");
    let real_file = files[0].clone();
    let name = canary.file_name().expect("a file").to_string_lossy();
    let mut climbing = real_file.clone();
    climbing["name"] = format!("../../{name}").into();
    let mut absolute = real_file.clone();
    absolute["name"] = canary.to_string_lossy().into_owned().into();
    let mut outside = real_file;
    outside["key"] = format!("../../../../{name}").into();
    files.insert(0, climbing);
    files.insert(0, absolute);
    files.insert(0, outside);
    serde_json::to_vec_pretty(&m).expect("json")
}

/// The run logged in `log` refused the planted manifest as damaged,
/// restored checkpoint `restored` instead, and left `canary` untouched.
pub fn assert_hostile_refused(log: &Path, restored: u64, canary: &Path) {
    let text = std::fs::read_to_string(log).expect("log");
    assert!(
        text.contains("skipped a broken checkpoint") && text.contains("names file"),
        "{text}"
    );
    let summary = text
        .lines()
        .find(|l| l.contains("restored_checkpoint="))
        .expect("summary");
    assert_eq!(
        summary_field(summary, "restored_checkpoint"),
        restored,
        "{text}"
    );
    assert_eq!(std::fs::read(canary).expect("canary"), b"untouched");
}

/// A data set written to `events.cef` in a temporary folder, with the
/// paths a `cef_alerts` run over it uses.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub data: DataSet,
    pub input: PathBuf,
    pub output: PathBuf,
}

impl Fixture {
    pub fn new(events: u64, keys: u64, seed: u64, malformed_every: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = data_set(events, keys, seed, malformed_every);
        let input = dir.path().join("events.cef");
        std::fs::write(&input, &data.text).expect("write input");
        let output = dir.path().join("alerts.jsonl");
        Self {
            dir,
            data,
            input,
            output,
        }
    }

    /// `--input`, `--output`, `--state-dir`, then `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        self.args_in("state", extra)
    }

    /// [`args`](Self::args) with the state directory `state` (a folder in
    /// the fixture's).
    pub fn args_in(&self, state: &str, extra: &[&str]) -> Vec<String> {
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
        let mut args = vec![
            "--input".to_string(),
            path(&self.input),
            "--output".to_string(),
            path(&self.output),
            "--state-dir".to_string(),
            path(&self.dir.path().join(state)),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// The output holds every reference alert exactly once, nothing else,
    /// and the dead-letter file every malformed line exactly once.
    pub fn assert_exactly_once(&self) {
        let alerts = read_alerts(&self.output);
        let unique: BTreeSet<_> = alerts.iter().cloned().collect();
        assert_eq!(unique.len(), alerts.len(), "an alert was written twice");
        assert_eq!(
            unique, self.data.reference,
            "alerts differ from the reference"
        );
        let mut dlq = self.output.clone().into_os_string();
        dlq.push(".dlq");
        let dead = read_json_lines(Path::new(&dlq));
        assert_eq!(
            dead.len(),
            self.data.malformed,
            "each malformed line dead-lettered once"
        );
        let offsets: BTreeSet<u64> = dead
            .iter()
            .map(|d| d["offset"].as_u64().expect("offset"))
            .collect();
        assert_eq!(offsets.len(), dead.len(), "a dead letter was written twice");
    }
}
