//! Hostile input through the `cef_alerts` binary: timestamps far ahead of
//! the clock or out of range, lines far past the record bound, and the
//! same input replayed at full speed and with pauses. Each is compared to
//! the independent reference of the normal traffic around it.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    DataSet, THRESHOLD, assert_resumed, data_set, end_with_two_open_windows, example_bin,
    read_alerts, read_json_lines, run_example, run_with_kills, summary_field,
};

/// Lines that must never reach a window, with the start of the reason
/// each must be dead-lettered with (`None`: any decode error).
fn hostile_lines() -> Vec<(String, Option<&'static str>)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let line =
        |src: &str, rt: &str| format!("CEF:0|V|P|1|100|Login|5|src={src} outcome=failure rt={rt}");
    // Sources that the normal traffic uses too: a bad line must not blind
    // its key or its partition.
    vec![
        (
            line("172.16.0.1", "99999999999999"),
            Some("future_timestamp"),
        ),
        (
            line("172.16.0.2", &(now + 2 * 3_600_000).to_string()),
            Some("future_timestamp"),
        ),
        (
            line("172.16.0.3", &i64::MAX.to_string()),
            Some("timestamp_out_of_range"),
        ),
        (line("172.16.0.4", &i64::MIN.to_string()), None),
        (line("172.16.0.5", "-1"), None),
        (line("172.16.0.6", "99999999999999999999999"), None),
        (
            line("172.16.0.7", "253402300800000"),
            Some("timestamp_out_of_range"),
        ),
        (
            line("172.16.0.8", "99999999999999"),
            Some("future_timestamp"),
        ),
        (
            line("172.16.0.9", &i64::MAX.to_string()),
            Some("timestamp_out_of_range"),
        ),
    ]
}

/// `data` with the hostile lines spread through it, one after every
/// ninth of its lines.
fn with_hostile_lines(data: &DataSet, hostile: &[(String, Option<&str>)]) -> Vec<u8> {
    let lines: Vec<&[u8]> = data.text.split_inclusive(|b| *b == b'\n').collect();
    let every = lines.len() / (hostile.len() + 1);
    let mut text = Vec::with_capacity(data.text.len() + 1024);
    let mut bad = hostile.iter();
    for (i, line) in lines.iter().enumerate() {
        text.extend_from_slice(line);
        if i % every == every - 1
            && let Some((l, _)) = bad.next()
        {
            text.extend_from_slice(l.as_bytes());
            text.push(b'\n');
        }
    }
    text
}

/// Each hostile line is dead-lettered exactly once, with its reason, and
/// nothing else is.
fn assert_dead_lettered_once(dead: &[serde_json::Value], hostile: &[(String, Option<&str>)]) {
    for (line, reason) in hostile {
        let found: Vec<&serde_json::Value> = dead
            .iter()
            .filter(|d| d["input"].as_str() == Some(line.as_str()))
            .collect();
        assert_eq!(found.len(), 1, "{line} dead-lettered {} times", found.len());
        let got = found[0]["reason"].as_str().expect("a reason");
        if let Some(reason) = reason {
            assert!(
                got.starts_with(reason),
                "{line}: reason {got:?}, not {reason}"
            );
        }
    }
    assert_eq!(dead.len(), hostile.len(), "other dead letters: {dead:?}");
}

fn sorted(mut alerts: Vec<(String, i64, u32, u32, i64)>) -> Vec<(String, i64, u32, u32, i64)> {
    alerts.sort();
    alerts
}

fn reference(data: &DataSet) -> Vec<(String, i64, u32, u32, i64)> {
    data.reference.iter().cloned().collect()
}

#[test]
fn hostile_timestamps_are_dead_lettered_once_and_blind_nothing_even_across_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = data_set(400_000, 400, 71, 0);
    end_with_two_open_windows(&mut data);
    let hostile = hostile_lines();
    let input = dir.path().join("hostile.cef");
    std::fs::write(&input, with_hostile_lines(&data, &hostile)).expect("write input");
    let input_arg = input.to_str().expect("utf-8").to_string();

    let run = run_example(dir.path(), "once", &["--input", &input_arg]);
    assert_eq!(sorted(run.alerts), reference(&data), "one run");
    assert_dead_lettered_once(&run.dead_letters, &hostile);

    // Killed twice, then run to the end: still each alert once and
    // each bad line dead-lettered once.
    let output = dir.path().join("killed.jsonl");
    let state = dir.path().join("killed-state");
    let store = dir.path().join("store");
    let args: Vec<String> = [
        "--input",
        &input_arg,
        "--output",
        output.to_str().expect("utf-8"),
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--checkpoint-store",
        store.to_str().expect("utf-8"),
        "--checkpoint-interval-ms",
        "100",
        "--threshold",
        &THRESHOLD.to_string(),
        "--window-secs",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = dir.path().join("killed.log");
    let kills = run_with_kills(&args, &[], 2, 5, &log, Some(store.to_str().expect("utf-8")));
    assert_eq!(kills, 2, "every kill landed before the input ended");
    assert_resumed(&log, data.lines);
    assert_eq!(
        sorted(read_alerts(&output)),
        reference(&data),
        "killed runs"
    );
    let dead = read_json_lines(&dir.path().join("killed.jsonl.dlq"));
    assert_dead_lettered_once(&dead, &hostile);
}

/// Polls `pid`'s peak resident set (VmHWM) until it exits; returns the
/// last value read, in KiB.
fn peak_rss_kib(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if child.try_wait().expect("poll").is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs cef_alerts on `input` into `name.jsonl`; returns its stderr and
/// peak RSS in KiB.
fn run_measured(dir: &Path, name: &str, input: &Path, extra: &[&str]) -> (String, u64) {
    let mut child = Command::new(example_bin())
        .args(["--input", input.to_str().expect("utf-8")])
        .args([
            "--output",
            dir.join(format!("{name}.jsonl")).to_str().expect("utf-8"),
        ])
        .args([
            "--state-dir",
            dir.join(format!("{name}-state")).to_str().expect("utf-8"),
        ])
        .args(["--threshold", &THRESHOLD.to_string(), "--window-secs", "60"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).expect("log"))
        .spawn()
        .expect("cef_alerts starts");
    let peak = peak_rss_kib(&mut child);
    let status = child.wait().expect("reaped");
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).expect("log");
    assert!(status.success(), "{name} failed: {log}");
    (log, peak)
}

#[test]
fn lines_past_the_bound_are_dead_lettered_without_being_buffered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = data_set(30_000, 200, 72, 0);
    end_with_two_open_windows(&mut data);
    let plain = dir.path().join("plain.cef");
    std::fs::write(&plain, &data.text).expect("write");

    // A 3 MiB line in the middle, a 200 MiB line without a newline at the
    // end: both CEF-shaped, with a source the traffic uses.
    let half = data.text.len() / 2;
    let cut = half
        + data.text[half..]
            .iter()
            .position(|b| *b == b'\n')
            .expect("a line")
        + 1;
    let long = |n: usize| {
        let mut l = b"CEF:0|V|P|1|100|Login|5|src=172.16.0.1 outcome=failure rt=1767225600000 msg="
            .to_vec();
        l.resize(l.len() + n, b'A');
        l
    };
    let huge = dir.path().join("huge.cef");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&huge).expect("create"));
        f.write_all(&data.text[..cut]).expect("write");
        f.write_all(&long(3 << 20)).expect("write");
        f.write_all(b"\n").expect("write");
        f.write_all(&data.text[cut..]).expect("write");
        f.write_all(&long(200 << 20)).expect("write");
        f.flush().expect("flush");
    }

    let (_, plain_peak) = run_measured(dir.path(), "plain", &plain, &[]);
    let (log, huge_peak) = run_measured(dir.path(), "huge", &huge, &[]);
    eprintln!(
        "peak RSS: {} MiB without the long lines, {} MiB with a 3 MiB and a 200 MiB line",
        plain_peak / 1024,
        huge_peak / 1024
    );
    assert!(
        huge_peak < plain_peak + 48 * 1024,
        "peak RSS {huge_peak} KiB with the long lines, {plain_peak} KiB without: they were buffered"
    );
    let alerts = read_alerts(&dir.path().join("huge.jsonl"));
    assert_eq!(sorted(alerts), reference(&data));
    let dead = read_json_lines(&dir.path().join("huge.jsonl.dlq"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        let reason = d["reason"].as_str().expect("reason");
        assert!(reason.starts_with("too_large"), "{reason}");
        let input = d["input"].as_str().expect("input");
        assert_eq!(
            input.len(),
            weir::runtime::TOO_LARGE_PREFIX,
            "a prefix is kept"
        );
        assert!(input.starts_with("CEF:0|V|P|1|100|Login|5|src=172.16.0.1"));
    }
    assert_eq!(summary_field(&log, "records") as usize, data.lines + 2);

    // Run again: everything was checkpointed past the long lines.
    let (again, _) = run_measured(dir.path(), "huge", &huge, &[]);
    assert_eq!(summary_field(&again, "records"), 0, "{again}");
}

#[test]
fn a_replay_with_pauses_gives_the_alerts_of_one_at_full_speed() {
    // With 2.1 s of out-of-orderness no record of this data is late when
    // read at once. Read through stdin in pieces with pauses longer than
    // the idle timeout, a watermark that followed the wall clock would
    // jump ahead during each pause and make the records after it late.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = data_set(60_000, 300, 73, 0);
    end_with_two_open_windows(&mut data);
    let input = dir.path().join("replay.cef");
    std::fs::write(&input, &data.text).expect("write");
    let timing = [
        "--max-out-of-orderness-ms",
        "2100",
        "--idle-watermark-ms",
        "100",
    ];
    let mut fast_args = vec!["--input", input.to_str().expect("utf-8")];
    fast_args.extend(timing);
    let fast = run_example(dir.path(), "fast", &fast_args);
    assert_eq!(sorted(fast.alerts.clone()), reference(&data));
    assert!(fast.dead_letters.is_empty(), "{:?}", fast.dead_letters);

    let output = dir.path().join("slow.jsonl");
    let mut child = Command::new(example_bin())
        .args(["--input", "-", "--output", output.to_str().expect("utf-8")])
        .args([
            "--state-dir",
            dir.path().join("slow-state").to_str().expect("utf-8"),
        ])
        .args(["--threshold", &THRESHOLD.to_string(), "--window-secs", "60"])
        .args(timing)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cef_alerts starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let pieces = 8;
    let lines: Vec<&[u8]> = data.text.split_inclusive(|b| *b == b'\n').collect();
    let started = Instant::now();
    for piece in lines.chunks(lines.len().div_ceil(pieces)) {
        for line in piece {
            stdin.write_all(line).expect("write stdin");
        }
        stdin.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(700));
    }
    drop(stdin);
    let out = child.wait_with_output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("slow replay took {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(sorted(read_alerts(&output)), sorted(fast.alerts));
    let dead = read_json_lines(&dir.path().join("slow.jsonl.dlq"));
    assert!(
        dead.is_empty(),
        "late or dead-lettered when slow: {}",
        dead.len()
    );
}

/// A Kafka record past the bound, and one under it that does not decode
/// but is longer than the producer's message limit: both are
/// dead-lettered (the first cut to its 4 KiB prefix, the second cut to fit
/// the producer with `weir.truncated` giving its length), and the worker
/// goes on and stops cleanly.
#[test]
fn kafka_records_past_the_bounds_become_dead_letters_that_fit() {
    use common::broker::{Kafka, Mock};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
    use weir::kafka::{KafkaSettings, KafkaSource, headers};

    let mock = Mock::new();
    mock.create_topic("in", 2);
    mock.create_topic("out", 2);
    mock.create_topic("dlq", 1);
    let producer: ThreadedProducer<DefaultProducerContext> = common::kafka::client_config(&mock)
        .create()
        .expect("producer");
    // The job's bound is 300 KB and its producer's message limit 100 KB
    // (scaled down from 1 MiB and 1 MB, to stay under the mock broker's).
    let big = vec![b'A'; 200_000]; // under the bound, over the limit
    let huge = vec![b'B'; 600_000]; // over the bound
    let ok = b"CEF:0|V|P|1|100|Login|5|src=10.0.0.1 outcome=failure rt=1767225600000".to_vec();
    for value in [&ok, &big, &ok, &huge, &ok] {
        common::kafka::send_waiting(
            &producer,
            BaseRecord::<[u8], [u8]>::to("in")
                .partition(0)
                .payload(value.as_slice()),
        );
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("flushed");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut kafka = KafkaSettings::new(&mock.bootstrap(), "in", "out", "bounds");
    kafka.dead_letter_topic = Some("dlq".into());
    kafka
        .properties
        .producer
        .push(("message.max.bytes".into(), "100000".into()));
    let settings = weir::Settings {
        state_dir: dir.path().join("state"),
        max_record_bytes: 300_000,
        checkpoints: Some(weir::CheckpointSettings {
            store: weir::open_store(dir.path().join("store").to_str().expect("utf-8"))
                .expect("store"),
            interval: Some(Duration::from_millis(200)),
            retain: 2,
            start_empty: false,
            job_id: None,
            prune_grace: Duration::from_secs(60),
        }),
        ..weir::Settings::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let job = runtime.spawn(
        weir::Job::new(Counter)
            .settings(settings)
            .source(KafkaSource::new(kafka))
            .decoder(common::by_src)
            .run_until(async move {
                let _ = stopped.await;
            }),
    );
    let dead = common::kafka::read_until(
        &mock,
        "dlq",
        Duration::from_secs(60),
        Duration::from_secs(1),
        |r| r.len() >= 2,
    );
    let _ = stop.send(());
    let report = runtime
        .block_on(job)
        .expect("joined")
        .expect("the worker stopped cleanly");
    assert_eq!(report.records, 5, "{report:?}");
    assert_eq!(dead.len(), 2, "two dead letters");
    let cut = dead
        .iter()
        .find(|d| d.headers.contains_key(headers::TRUNCATED))
        .expect("a dead letter cut to fit the producer");
    assert_eq!(cut.headers[headers::TRUNCATED], "200000");
    assert!(cut.value.len() < 100_000 && cut.value.iter().all(|b| *b == b'A'));
    let large = dead
        .iter()
        .find(|d| d.headers[headers::ERROR].starts_with("too_large"))
        .expect("a too_large dead letter");
    assert_eq!(large.value.len(), weir::runtime::TOO_LARGE_PREFIX);
    assert_eq!(large.headers[headers::SOURCE_OFFSET], "3");
}

/// Counts per key: enough to run a Kafka job in-process.
struct Counter;

impl weir::Processor for Counter {
    type Key = String;
    type In = ();
    type Out = u64;
    type State = u64;

    async fn process(
        &self,
        ctx: &mut weir::Context<'_, Self>,
        n: &mut u64,
        _: &(),
    ) -> Result<(), weir::ProcessError> {
        *n += 1;
        ctx.emit(*n);
        Ok(())
    }
}

#[test]
fn input_appended_after_a_finished_run_is_on_time() {
    // A run that reaches the end of its input closes every window: its
    // last checkpoint holds the watermark at the maximum. Run again after
    // more lines were appended (the same event times over again), those
    // lines are processed, not late.
    let dir = tempfile::tempdir().expect("tempdir");
    let first = data_set(20_000, 100, 74, 0);
    let second = data_set(20_000, 100, 75, 0);
    let input = dir.path().join("growing.cef");
    std::fs::write(&input, &first.text).expect("write");
    let args = ["--input", input.to_str().expect("utf-8")];
    let run = run_example(dir.path(), "growing", &args);
    assert_eq!(sorted(run.alerts), reference(&first));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .expect("open");
    file.write_all(&second.text).expect("append");
    let again = run_example(dir.path(), "growing", &args);
    assert_eq!(
        summary_field(&again.summary, "records") as usize,
        second.lines
    );
    assert!(
        again.dead_letters.is_empty(),
        "{} dead letters, e.g. {:?}",
        again.dead_letters.len(),
        again.dead_letters.first()
    );
    let mut both = reference(&first);
    both.extend(reference(&second));
    assert_eq!(sorted(again.alerts), sorted(both));
}
