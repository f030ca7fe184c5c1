//! The whole file-mode job against a plain model of its semantics, on
//! random input.
//!
//! The model is written here from the documented semantics alone: records
//! are routed to partitions by key hash; each partition's watermark is the
//! largest event time it has seen minus the bounded out-of-orderness; a
//! record at or below its partition's watermark (as the record found it) is
//! late and dead-lettered; every other record counts in its key's tumbling
//! window; at the end of the input every window closes, and a window with
//! at least `threshold` failed logins is an alert. It knows nothing of
//! timers, actors, batches, RocksDB or checkpoints.
//!
//! The real job (`cef_alerts`' processor and decoder, the feed, partitions,
//! RocksDB, checkpoints to a local store, the file sinks) runs on the same
//! generated input, read in random chunks, with checkpoints requested at
//! random points, a random live-actor cap, and in a quarter of the cases a
//! stop and resume, in another quarter a simulated crash (the run's newer
//! checkpoints are removed and the job restarts from an older one, whose
//! output it must cut back and redo). Outputs must equal the model's, line
//! for line as multisets (file output is exactly-once), and so must the
//! dead letters.
//!
//! The generator makes the edge cases on purpose: few to many keys, empty
//! partitions, disorder inside and outside the bound (no bound at all
//! included), tiny and large windows, malformed and non-UTF-8 lines, tabs
//! and trailing whitespace, blank lines, and an input that ends in a burst
//! around a window boundary so keys have several open windows at the end.
//!
//! `WEIR_MODEL_CASES` (default 1500) cases from fixed seeds (starting at
//! `WEIR_MODEL_FIRST`, default 0), then `WEIR_MODEL_FRESH` (default 300)
//! from a seed taken from the clock and printed; `WEIR_MODEL_SEED=S` runs
//! case `S` alone (a failure prints it).

#[path = "../examples/cef_alerts.rs"]
#[allow(dead_code)]
mod cef_alerts;
mod common;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cef_alerts::{BruteForce, decode_line};
use weir::partitioner::partition_of;
use weir::{
    CheckpointSettings, CheckpointTrigger, DeadLetterFile, Job, JsonLines, KeyCodec, MemoryBudget,
    Settings, Source, open_store,
};

/// The tests' own generator, independent of anything in weir.
struct Rng(common::Lcg);

impl Rng {
    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.0.next(n)
    }
    /// Uniform in `0..=n`.
    fn upto(&mut self, n: i64) -> i64 {
        self.0.next(n as u64 + 1) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What a generated line means, as the generator wrote it.
#[derive(Debug, Clone)]
enum Meaning {
    Event { src: String, rt: i64, failed: bool },
    Bad { reason: String },
    Blank,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Restart {
    None,
    /// Shutdown requested after this chunk; then a second run resumes.
    Stop(usize),
    /// After the first run, only the oldest this many checkpoints are kept
    /// (0: none), as if the process had died right after the last of them
    /// (or before the first); then a second run.
    Crash(usize),
}

#[derive(Debug)]
struct Case {
    seed: u64,
    partitions: u32,
    window_ms: i64,
    threshold: u32,
    bound_ms: i64,
    live_actor_cap: usize,
    passivate_idle: bool,
    /// Lines without their line end, with the line end each has.
    lines: Vec<(Vec<u8>, &'static [u8])>,
    meanings: Vec<Meaning>,
    /// Lines per chunk the source hands out, cycled.
    chunk_lines: Vec<usize>,
    /// Chunk indices after which a checkpoint is requested.
    checkpoint_after: Vec<bool>,
    restart: Restart,
}

const HEADER: &str = "CEF:0|Acme|Auth|1.0|";

fn src_of(k: u64) -> String {
    format!("10.{}.{}.{}", (k >> 16) & 255, (k >> 8) & 255, k & 255)
}

fn generate(seed: u64) -> Case {
    let mut rng = Rng(common::Lcg(
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED,
    ));
    let partitions = 1 + rng.below(6) as u32;
    let keys = rng.pick(&[1u64, 2, 3, 5, 12, 40, 300]);
    let window_ms = match rng.below(4) {
        0 => 1_000,
        1 => 60_000,
        2 => 1 + rng.upto(200),
        _ => 100 + rng.upto(120_000),
    };
    let threshold = 1 + rng.below(6) as u32;
    let bound_ms = match rng.below(6) {
        0 => 0,
        1 => window_ms / 10,
        2 => window_ms / 2,
        3 => window_ms,
        4 => 2 * window_ms,
        _ => rng.upto(3 * window_ms),
    };
    let events = if rng.chance(4) {
        0
    } else {
        let most = rng.pick(&[10, 60, 250]);
        rng.upto(most)
    };
    let fail_percent = rng.pick(&[20u64, 60, 95]);
    let divisor = rng.pick(&[1i64, 4, 20, 100]);
    let step_max = (window_ms / divisor).max(1);
    let bad_percent = rng.pick(&[0u64, 0, 3, 10]);
    let tail_burst = rng.chance(60);
    let base = 1_600_000_000_000 + rng.upto(100_000_000_000);

    let mut lines = Vec::new();
    let mut meanings = Vec::new();
    let mut cur = base;
    let burst_len = 1 + rng.upto(15);
    let burst_from = events.saturating_sub(burst_len);
    for i in 0..events {
        if tail_burst && i == burst_from {
            // End in a burst around a window boundary: with the bound,
            // the window before it is still open when the input ends.
            let boundary = (cur.div_euclid(window_ms) + 1) * window_ms;
            cur = boundary - rng.upto(bound_ms.min(window_ms)).max(1);
        }
        let step = if tail_burst && i >= burst_from {
            rng.upto((bound_ms.min(window_ms) / 4).max(1))
        } else {
            rng.upto(step_max)
        };
        cur += step;
        let disorder = match rng.below(100) {
            0..70 => rng.upto(bound_ms),
            70..85 => bound_ms + 1 + rng.upto(window_ms),
            _ => 0,
        };
        let rt = cur - disorder;
        let src = src_of(rng.below(keys));
        let (line, meaning) = if rng.chance(bad_percent) {
            bad_line(&mut rng, &src, rt)
        } else {
            event_line(&mut rng, &src, rt, fail_percent)
        };
        let end: &'static [u8] = match rng.below(20) {
            0 => b"\r\n",
            _ => b"\n",
        };
        lines.push((line, end));
        meanings.push(meaning);
        if rng.chance(2) {
            let blank = rng.pick(&[&b""[..], b"   ", b"\t"]).to_vec();
            lines.push((blank, b"\n"));
            meanings.push(Meaning::Blank);
        }
    }
    if let Some(last) = lines.last_mut()
        && rng.chance(20)
    {
        last.1 = b""; // no line end after the last line
    }
    let chunk_lines: Vec<usize> = (0..1 + rng.below(4))
        .map(|_| {
            let most = rng.pick(&[2u64, 10, 60]);
            1 + rng.below(most) as usize
        })
        .collect();
    let chunks = lines.len() / chunk_lines.iter().min().copied().unwrap_or(1) + 1;
    let checkpoint_percent = rng.pick(&[0u64, 10, 40]);
    let checkpoint_after = (0..chunks)
        .map(|_| rng.chance(checkpoint_percent))
        .collect();
    let restart = match rng.below(4) {
        0 => Restart::Stop(rng.below(chunks as u64) as usize),
        1 => Restart::Crash(rng.below(6) as usize),
        _ => Restart::None,
    };
    Case {
        seed,
        partitions,
        window_ms,
        threshold,
        bound_ms,
        live_actor_cap: rng.pick(&[1usize, 2, 7, 100_000]),
        passivate_idle: rng.chance(30),
        lines,
        meanings,
        chunk_lines,
        checkpoint_after,
        restart,
    }
}

fn event_line(rng: &mut Rng, src: &str, rt: i64, fail_percent: u64) -> (Vec<u8>, Meaning) {
    let login = rng.chance(70);
    let sig = if login { 100 } else { 200 + rng.below(3) };
    let failure = rng.chance(fail_percent);
    let outcome = if failure { "failure" } else { "success" };
    // Separators and decoration the decoder must see through.
    let sep = rng.pick(&[" ", " ", "\t", "  "]);
    let prefix = rng.pick(&["", "<86>Jan  1 00:00:00 host-1 ", "<13>Nov 22 10:00:00 fw "]);
    let msg = rng.pick(&["", "msg=user x\\=y tried ", "cs1=a b c "]);
    let trailing = rng.pick(&["", "", " ", "\t", " \t"]);
    let mut fields = [
        format!("src={src}"),
        format!("outcome={outcome}"),
        format!("rt={rt}"),
    ];
    // Field order varies too.
    let rotate = rng.below(3) as usize;
    fields.rotate_left(rotate);
    let line = format!(
        "{prefix}{HEADER}{sig}|Login|5|{msg}{}{trailing}",
        fields.join(sep)
    );
    let meaning = Meaning::Event {
        src: src.to_string(),
        rt,
        failed: sig == 100 && failure,
    };
    (line.into_bytes(), meaning)
}

fn bad_line(rng: &mut Rng, src: &str, rt: i64) -> (Vec<u8>, Meaning) {
    let (line, reason): (Vec<u8>, String) = match rng.below(4) {
        0 => (
            b"this is not a CEF line".to_vec(),
            "column 1: expected a CEF header starting with 'CEF:'".into(),
        ),
        1 => (
            format!("{HEADER}100|Login|5|outcome=failure rt={rt}").into_bytes(),
            "missing src extension".into(),
        ),
        2 => (
            format!("{HEADER}100|Login|5|src={src} outcome=failure").into_bytes(),
            "missing rt extension".into(),
        ),
        _ => {
            let mut line = format!("{HEADER}100|Login|5|src=10.").into_bytes();
            let column = line.len() + 1;
            line.extend_from_slice(b"\xff\xfe outcome=failure rt=1");
            (line, format!("column {column}: expected UTF-8 text"))
        }
    };
    (line, Meaning::Bad { reason })
}

/// An alert line: (src, window_start, failed, events, last_seen).
type Alert = (String, i64, u32, u32, i64);
/// A dead-letter line: (offset, partition, input, reason).
type Dead = (u64, Option<u32>, String, String);

#[derive(Debug, Default)]
struct Expected {
    alerts: Vec<Alert>,
    dead: Vec<Dead>,
    /// Alerts of windows still open at the end of the input whose key had
    /// an earlier window open then too: what closing at the end must get
    /// right.
    alerts_from_second_open_window: usize,
    late: usize,
    /// Some partition got no event at all.
    empty_partition: bool,
}

/// The partition `src`'s records go to: the job's partitioner over the
/// key's encoding, as Kafka's default partitioner for records keyed by it.
fn partition(src: &str, partitions: u32) -> u32 {
    let mut key = Vec::new();
    src.to_string().encode_key(&mut key);
    partition_of(&key, partitions)
}

/// The model: a plain reading of the semantics, record by record.
fn model(case: &Case) -> Expected {
    let mut max_seen: Vec<Option<i64>> = vec![None; case.partitions as usize];
    // (src, window start) -> (failed, events, last_seen)
    let mut windows: BTreeMap<(String, i64), (u32, u32, i64)> = BTreeMap::new();
    let mut out = Expected::default();
    let mut offset = 0u64;
    for ((line, end), meaning) in case.lines.iter().zip(&case.meanings) {
        let here = offset;
        offset += (line.len() + end.len()) as u64;
        let input = String::from_utf8_lossy(line).into_owned();
        match meaning {
            Meaning::Blank => {}
            Meaning::Bad { reason } => out.dead.push((here, None, input, reason.clone())),
            Meaning::Event { src, rt, failed } => {
                let p = partition(src, case.partitions);
                let seen = &mut max_seen[p as usize];
                let watermark = seen.map_or(i64::MIN, |m| m - case.bound_ms);
                *seen = Some(seen.map_or(*rt, |m| m.max(*rt)));
                if *rt <= watermark {
                    out.late += 1;
                    out.dead.push((here, Some(p), input, "late".into()));
                    continue;
                }
                let start = rt.div_euclid(case.window_ms) * case.window_ms;
                let w = windows
                    .entry((src.clone(), start))
                    .or_insert((0, 0, i64::MIN));
                w.0 += u32::from(*failed);
                w.1 += 1;
                w.2 = w.2.max(*rt);
            }
        }
    }
    let mut open_before: BTreeMap<&str, usize> = BTreeMap::new();
    for ((src, start), (failed, events, last)) in &windows {
        let p = partition(src, case.partitions) as usize;
        let watermark = max_seen[p].map_or(i64::MIN, |m| m - case.bound_ms);
        let open_at_end = start + case.window_ms > watermark;
        let earlier_open = open_before.get(src.as_str()).copied().unwrap_or(0);
        if *failed >= case.threshold {
            out.alerts
                .push((src.clone(), *start, *failed, *events, *last));
            if open_at_end && earlier_open > 0 {
                out.alerts_from_second_open_window += 1;
            }
        }
        if open_at_end {
            *open_before.entry(src.as_str()).or_default() += 1;
        }
    }
    out.empty_partition = max_seen.iter().any(Option::is_none);
    out.alerts.sort();
    out.dead.sort();
    out
}

/// The case's lines, handed out in its chunk sizes; requests checkpoints
/// and a shutdown after the chunks the case says.
struct CaseSource {
    text: Arc<Vec<u8>>,
    /// Start offsets of the lines, and the end of the input last.
    starts: Arc<Vec<u64>>,
    chunk_lines: Vec<usize>,
    checkpoint_after: Vec<bool>,
    next_line: usize,
    chunk: usize,
    trigger: CheckpointTrigger,
    stop_after: Option<usize>,
    stop: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

impl Source for CaseSource {
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
        let lines = self.starts.len() - 1;
        if self.next_line >= lines {
            return Ok(None);
        }
        let n = self.chunk_lines[self.chunk % self.chunk_lines.len()];
        let first = self.next_line;
        let last = (first + n).min(lines);
        let (from, to) = (self.starts[first], self.starts[last]);
        buf.clear();
        buf.extend_from_slice(&self.text[from as usize..to as usize]);
        self.next_line = last;
        if self
            .checkpoint_after
            .get(self.chunk)
            .copied()
            .unwrap_or(false)
        {
            self.trigger.request();
        }
        if self.stop_after == Some(self.chunk)
            && let Some(tx) = self.stop.lock().expect("not poisoned").take()
        {
            let _ = tx.send(());
        }
        self.chunk += 1;
        Ok(Some(from))
    }

    fn describe(&self) -> String {
        "the model test's input".into()
    }

    fn seek(&mut self, position: u64) -> io::Result<()> {
        match self.starts.binary_search(&position) {
            Ok(i) => {
                self.next_line = i;
                Ok(())
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("position {position} is not at a line start"),
            )),
        }
    }
}

struct Outcome {
    alerts: Vec<Alert>,
    dead: Vec<Dead>,
    restored_checkpoint: u64,
    runs: u32,
}

fn run_job(
    case: &Case,
    dir: &Path,
    text: &Arc<Vec<u8>>,
    starts: &Arc<Vec<u64>>,
    stop_after: Option<usize>,
    runtime: &tokio::runtime::Runtime,
) -> weir::Report {
    let store = open_store(dir.join("store").to_str().expect("utf-8")).expect("store");
    let settings = Settings {
        partitions: case.partitions,
        state_dir: dir.join("state"),
        memory: MemoryBudget { bytes: 8 << 20 },
        live_actor_cap: case.live_actor_cap,
        idle_passivation: case.passivate_idle.then_some(Duration::from_millis(1)),
        max_out_of_orderness: Duration::from_millis(case.bound_ms as u64),
        // A replay of a file must not depend on the wall clock.
        idle_watermark: None,
        tick: Duration::from_millis(2),
        checkpoints: Some(CheckpointSettings {
            store,
            interval: None,
            retain: 1_000,
            start_empty: false,
            job_id: Some("model".into()),
            prune_grace: weir_state::owner::DEFAULT_PRUNE_GRACE,
        }),
        ..Settings::default()
    };
    let output = dir.join("alerts.jsonl");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let job = Job::new(BruteForce {
        window_ms: case.window_ms,
        threshold: case.threshold,
    })
    .settings(settings)
    .decoder(|line: &[u8]| decode_line(line, 0))
    .sink(JsonLines::file(&output).expect("output"))
    .dead_letters(DeadLetterFile::file(dir.join("alerts.jsonl.dlq")).expect("dlq"));
    let source = CaseSource {
        text: Arc::clone(text),
        starts: Arc::clone(starts),
        chunk_lines: case.chunk_lines.clone(),
        checkpoint_after: case.checkpoint_after.clone(),
        next_line: 0,
        chunk: 0,
        trigger: job.checkpoint_trigger(),
        stop_after,
        stop: Arc::new(Mutex::new(Some(tx))),
    };
    let job = job.source(source);
    // A sender dropped unsent (the source is done) is no shutdown.
    let shutdown = async move {
        if rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    runtime
        .block_on(job.run_until(shutdown))
        .unwrap_or_else(|e| panic!("seed {}: the job failed: {e}", case.seed))
}

/// A folder for one case: in memory (`/dev/shm`) where there is one, as
/// the cases' checkpoints and RocksDB syncs would otherwise make the disk
/// the bottleneck (three times slower here).
fn case_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("weir-model")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("tempdir")
}

fn run_case(case: &Case, runtime: &tokio::runtime::Runtime) -> Outcome {
    let dir = case_dir();
    let mut text = Vec::new();
    let mut starts = Vec::with_capacity(case.lines.len() + 1);
    for (line, end) in &case.lines {
        starts.push(text.len() as u64);
        text.extend_from_slice(line);
        text.extend_from_slice(end);
    }
    starts.push(text.len() as u64);
    let (text, starts) = (Arc::new(text), Arc::new(starts));
    let stop_after = match case.restart {
        Restart::Stop(chunk) => Some(chunk),
        _ => None,
    };
    let first = run_job(case, dir.path(), &text, &starts, stop_after, runtime);
    let mut runs = 1;
    let mut restored_checkpoint = 0;
    let again = match case.restart {
        Restart::None => false,
        Restart::Stop(_) => first.stopped,
        Restart::Crash(keep) => {
            // The job's own folder in the store.
            let store = dir.path().join("store").join("jobs").join("model");
            let ids = weir_state::snapshot::list_checkpoints(
                open_store(store.to_str().expect("utf-8"))
                    .expect("store")
                    .as_ref(),
            )
            .expect("list");
            for id in ids.iter().skip(keep) {
                std::fs::remove_file(store.join(weir_state::snapshot::manifest_key(*id)))
                    .expect("remove a manifest");
            }
            true
        }
    };
    if again {
        let second = run_job(case, dir.path(), &text, &starts, None, runtime);
        assert!(!second.stopped);
        restored_checkpoint = second.recovery.checkpoint_id();
        runs = 2;
    }
    let alerts = read(&dir.path().join("alerts.jsonl"), |v| {
        (
            v["src"].as_str().expect("src").to_string(),
            v["window_start"].as_i64().expect("window_start"),
            v["failed"].as_u64().expect("failed") as u32,
            v["events"].as_u64().expect("events") as u32,
            v["last_seen"].as_i64().expect("last_seen"),
        )
    });
    let dead = read(&dir.path().join("alerts.jsonl.dlq"), |v| {
        (
            v["offset"].as_u64().expect("offset"),
            v["partition"].as_u64().map(|p| p as u32),
            v["input"].as_str().expect("input").to_string(),
            v["reason"].as_str().expect("reason").to_string(),
        )
    });
    Outcome {
        alerts,
        dead,
        restored_checkpoint,
        runs,
    }
}

fn read<T: Ord>(path: &Path, f: impl Fn(serde_json::Value) -> T) -> Vec<T> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut items: Vec<T> = text
        .lines()
        .map(|l| f(serde_json::from_str(l).expect("a whole JSON line")))
        .collect();
    items.sort();
    items
}

fn diff<T: Ord + Clone + std::fmt::Debug>(got: &[T], want: &[T]) -> String {
    let mut missing = want.to_vec();
    let mut extra = Vec::new();
    for g in got {
        match missing.iter().position(|w| w == g) {
            Some(i) => {
                missing.remove(i);
            }
            None => extra.push(g.clone()),
        }
    }
    missing.truncate(5);
    extra.truncate(5);
    format!("missing (first 5) {missing:?}; extra (first 5) {extra:?}")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

#[derive(Default)]
struct Totals {
    cases: u64,
    events: u64,
    alerts: u64,
    late: u64,
    dead: u64,
    second_window_alerts: u64,
    resumed: u64,
    resumed_from_checkpoint: u64,
    empty_partition_cases: u64,
}

fn check(seed: u64, runtime: &tokio::runtime::Runtime, totals: &mut Totals) {
    let case = generate(seed);
    let want = model(&case);
    let got = run_case(&case, runtime);
    let describe = || {
        format!(
            "seed {seed} (rerun: WEIR_MODEL_SEED={seed}): partitions {} window {} ms threshold {} bound {} ms cap {} idle passivation {} lines {} chunks {:?} restart {:?}",
            case.partitions,
            case.window_ms,
            case.threshold,
            case.bound_ms,
            case.live_actor_cap,
            case.passivate_idle,
            case.lines.len(),
            case.chunk_lines,
            case.restart
        )
    };
    assert!(
        got.alerts == want.alerts,
        "alerts differ from the model: {}\n{}",
        diff(&got.alerts, &want.alerts),
        describe()
    );
    assert!(
        got.dead == want.dead,
        "dead letters differ from the model: {}\n{}",
        diff(&got.dead, &want.dead),
        describe()
    );
    totals.cases += 1;
    totals.events += case
        .meanings
        .iter()
        .filter(|m| matches!(m, Meaning::Event { .. }))
        .count() as u64;
    totals.alerts += want.alerts.len() as u64;
    totals.late += want.late as u64;
    totals.dead += want.dead.len() as u64;
    totals.second_window_alerts += want.alerts_from_second_open_window as u64;
    if got.runs == 2 {
        totals.resumed += 1;
        if got.restored_checkpoint > 0 {
            totals.resumed_from_checkpoint += 1;
        }
    }
    if want.empty_partition {
        totals.empty_partition_cases += 1;
    }
}

#[test]
fn the_job_equals_the_model_on_random_input() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut totals = Totals::default();
    let started = Instant::now();
    if let Ok(seed) = std::env::var("WEIR_MODEL_SEED") {
        let seed = seed.parse().expect("WEIR_MODEL_SEED is a number");
        check(seed, &runtime, &mut totals);
        return;
    }
    let fixed = env_u64("WEIR_MODEL_CASES", 1_500);
    let first = env_u64("WEIR_MODEL_FIRST", 0);
    let fresh = env_u64("WEIR_MODEL_FRESH", 300);
    for seed in first..first + fixed {
        check(seed, &runtime, &mut totals);
    }
    // The fixed cases must reach the edge cases the model exists for.
    if fixed >= 500 {
        assert!(
            totals.second_window_alerts >= 20,
            "too few alerts from a key's second open window at the end: {}",
            totals.second_window_alerts
        );
        assert!(totals.late >= 100, "too few late records: {}", totals.late);
        assert!(
            totals.resumed_from_checkpoint >= 50,
            "too few resumed runs that restored a checkpoint: {}",
            totals.resumed_from_checkpoint
        );
        assert!(
            totals.empty_partition_cases >= 50,
            "too few cases with an empty partition"
        );
    }
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
        | (1 << 63);
    eprintln!("model test: fresh cases from seed {base}");
    for i in 0..fresh {
        check(base.wrapping_add(i), &runtime, &mut totals);
    }
    eprintln!(
        "model test: {} cases in {:.1} s: {} events, {} alerts ({} from a key's second open window at the end), {} late, {} dead letters, {} resumed runs ({} from a checkpoint), {} cases with an empty partition",
        totals.cases,
        started.elapsed().as_secs_f64(),
        totals.events,
        totals.alerts,
        totals.second_window_alerts,
        totals.late,
        totals.dead,
        totals.resumed,
        totals.resumed_from_checkpoint,
        totals.empty_partition_cases
    );
}
