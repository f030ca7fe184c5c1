//! The admin server of a running `cef_alerts`: every documented metric is
//! exported with sensible values (file mode and Kafka mode), `/readyz`
//! follows restores and shutdown, SIGTERM ends with a final checkpoint and
//! exit 0, and the dashboard, alert rules and metrics docs name only
//! metrics that exist.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::admin::{by_partition, get, names, scrape, scrape_until, total};
use common::broker::Broker;
use common::kafka::{Group, lines, produce};
use common::server::{free_port, wait_listening};
use common::{data_set, example_bin};
use weir::telemetry::names::{ALL, Kind};

/// Checkpoint interval of the runs here, ms.
const INTERVAL_MS: u64 = 300;

fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Child {
    Command::new(example_bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "weir=info,warn")
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).expect("log file"))
        .spawn()
        .expect("cef_alerts starts")
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
}

/// `cef_alerts` reading stdin (piped, left open) in `dir`, checkpointing
/// every `interval_ms`, with `extra` flags and `env`.
fn spawn_on_stdin(dir: &Path, interval_ms: u64, extra: &[&str], env: &[(&str, &str)]) -> Child {
    let out = dir.join("alerts.jsonl");
    let state = dir.join("state");
    let interval = interval_ms.to_string();
    let mut args = vec![
        "--input",
        "-",
        "--output",
        out.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--checkpoint-interval-ms",
        &interval,
    ];
    args.extend_from_slice(extra);
    spawn(dir, &args, env, Stdio::piped())
}

/// SIGTERM, then the exit status and how long the exit took.
fn terminate(child: &mut Child, dir: &Path) -> (std::process::ExitStatus, Duration) {
    let asked = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, asked.elapsed());
        }
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "no exit after SIGTERM:\n{}",
            log_of(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every metric of `names.rs` is in the scrape.
fn assert_every_metric(m: &BTreeMap<common::admin::Series, f64>) {
    let have = names(m);
    let missing: Vec<&str> = ALL
        .iter()
        .map(|d| d.name)
        .filter(|n| !have.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from /metrics: {missing:?}"
    );
    for d in ALL.iter().filter(|d| d.kind == Kind::Histogram) {
        assert!(
            m.keys().any(|(n, _)| n == &format!("{}_bucket", d.name)),
            "{} is not a histogram",
            d.name
        );
    }
}

/// Over a few scrapes, no partition's checkpoint is older than three
/// intervals.
fn assert_checkpoints_fresh(port: u16, interval: Duration) {
    for _ in 0..10 {
        let m = scrape(port);
        let ages = by_partition(&m, "weir_checkpoint_age_seconds");
        assert!(!ages.is_empty(), "no checkpoint ages");
        for (p, age) in ages {
            assert!(
                age < 3.0 * interval.as_secs_f64(),
                "partition {p}: last checkpoint {age} s ago, interval {interval:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// The `weir_*` names a dashboard or rule file uses.
fn names_used(path: &Path) -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("weir_") {
        let start = i + at;
        let ok_before =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if ok_before {
            found.insert(text[start..end].to_string());
        }
        i = end;
    }
    found
}

/// Every metric name the dashboard and alert rules query exists in a live
/// scrape (histogram series by their `_bucket`/`_sum`/`_count` names).
fn assert_ops_use_real_names(m: &BTreeMap<common::admin::Series, f64>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exposed: BTreeSet<&str> = m.keys().map(|(n, _)| n.as_str()).collect();
    let files = [
        root.join("ops/grafana/weir-dashboard.json"),
        root.join("ops/prometheus/alerts.yml"),
    ];
    for file in files {
        let used = names_used(&file);
        assert!(!used.is_empty(), "{} uses no weir metric", file.display());
        let unknown: Vec<&String> = used
            .iter()
            .filter(|n| !exposed.contains(n.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{} uses metrics /metrics does not have: {unknown:?}",
            file.display()
        );
    }
}

#[test]
fn metrics_docs_list_exactly_the_exported_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let documented = names_used(&root.join("docs/METRICS.md"));
    let defined: BTreeSet<String> = ALL.iter().map(|d| d.name.to_string()).collect();
    assert_eq!(
        documented, defined,
        "docs/METRICS.md and src/telemetry/names.rs disagree"
    );
}

#[test]
fn file_mode_exports_every_metric_with_sensible_values() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin = format!("127.0.0.1:{port}");
    let mut child = spawn_on_stdin(dir.path(), INTERVAL_MS, &["--admin-addr", &admin], &[]);
    wait_listening(port, "the admin server", Duration::from_secs(30));
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));

    let data = data_set(20_000, 300, 11, 97);
    // Input stays open: the job keeps running after consuming it.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data.text).unwrap();
    stdin.flush().unwrap();

    let m = scrape_until(
        port,
        Duration::from_secs(60),
        "all input processed and checkpointed",
        |m| {
            total(m, "weir_records_in_total") as usize == data.lines
                && total(m, "weir_consumer_lag_committed_records") == 0.0
                && total(m, "weir_consumer_lag_processed_records") == 0.0
        },
    );
    assert_every_metric(&m);
    assert_ops_use_real_names(&m);

    let partitions: BTreeSet<String> = (0..4).map(|p| p.to_string()).collect();
    let lag = by_partition(&m, "weir_consumer_lag_committed_records");
    assert_eq!(lag.keys().cloned().collect::<BTreeSet<_>>(), partitions);
    let dead = by_partition(&m, "weir_records_dead_lettered_total");
    assert_eq!(
        dead.get("unrouted").copied().unwrap_or(0.0) as usize,
        data.malformed,
        "undecodable lines are dead letters without a partition"
    );
    assert_eq!(total(&m, "weir_partitions_assigned"), 4.0);
    assert_eq!(total(&m, "weir_partitions_restoring"), 0.0);
    assert_eq!(total(&m, "weir_ready"), 1.0);
    assert!(total(&m, "weir_live_actors") > 0.0);
    assert!(
        total(&m, "weir_pending_timers") > 0.0,
        "open windows have timers"
    );
    assert!(total(&m, "weir_checkpoints_total") >= 1.0);
    assert_eq!(total(&m, "weir_checkpoint_failures_total"), 0.0);
    assert!(total(&m, "weir_processing_latency_seconds_count") > 0.0);
    assert!(total(&m, "weir_checkpoint_duration_seconds_count") >= 1.0);
    assert!(total(&m, "weir_rocksdb_block_cache_bytes") > 0.0);
    for (p, size) in by_partition(&m, "weir_checkpoint_size_bytes") {
        assert!(size > 0.0, "partition {p}: empty checkpoint");
    }
    for (p, size) in by_partition(&m, "weir_rocksdb_disk_bytes") {
        assert!(size > 0.0, "partition {p}: no RocksDB files");
    }
    assert_checkpoints_fresh(port, Duration::from_millis(INTERVAL_MS));
    assert_eq!(get(port, "/readyz").map(|r| r.0), Some(200));

    let (status, took) = terminate(&mut child, dir.path());
    let log = log_of(dir.path());
    assert!(status.success(), "exit {status:?}:\n{log}");
    assert!(log.contains("stopped=true"), "{log}");
    eprintln!("SIGTERM to exit: {took:?}");
}

#[test]
fn readyz_is_not_ready_while_restoring_and_ready_after() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("alerts.jsonl");
    let port = free_port();
    let admin = format!("127.0.0.1:{port}");
    let args = [
        "--generate",
        "50000000",
        "--keys",
        "2000",
        "--output",
        out.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--admin-addr",
        &admin,
    ];
    // A first run leaves a checkpoint behind (its final one at SIGTERM).
    let mut first = spawn(dir.path(), &args, &[], Stdio::null());
    wait_listening(port, "the admin server", Duration::from_secs(30));
    scrape_until(port, Duration::from_secs(60), "some state", |m| {
        total(m, "weir_live_actors") > 100.0
    });
    let (status, _) = terminate(&mut first, dir.path());
    assert!(status.success(), "{}", log_of(dir.path()));

    // The second restores it, each partition taking at least 700 ms.
    let mut second = spawn(
        dir.path(),
        &args,
        &[("FAILPOINTS", "restore-partition=sleep(700)")],
        Stdio::null(),
    );
    wait_listening(port, "the admin server", Duration::from_secs(30));
    let mut seen_restoring = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready_at = loop {
        assert!(
            Instant::now() < deadline,
            "never ready:\n{}",
            log_of(dir.path())
        );
        let (code, _) = get(port, "/readyz").expect("/readyz answers");
        let m = scrape(port);
        let restoring = total(&m, "weir_partitions_restoring");
        match code {
            503 => seen_restoring |= restoring > 0.0,
            200 => {
                assert_eq!(restoring, 0.0, "ready while restoring");
                break m;
            }
            other => panic!("/readyz answered {other}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        seen_restoring,
        "/readyz was never seen not ready during the restore"
    );
    for (p, bytes) in by_partition(&ready_at, "weir_restore_bytes") {
        let want = by_partition(&ready_at, "weir_restore_total_bytes")[&p];
        assert!(
            bytes > 0.0 && bytes == want,
            "partition {p}: restored {bytes} of {want} bytes"
        );
    }
    for (p, s) in by_partition(&ready_at, "weir_restore_duration_seconds") {
        assert!(
            s >= 0.7,
            "partition {p}: restore took {s} s, the failpoint alone sleeps 0.7 s"
        );
    }
    assert!(total(&ready_at, "weir_restore_keys") > 100.0);
    let (status, _) = terminate(&mut second, dir.path());
    assert!(status.success(), "{}", log_of(dir.path()));
}

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu")]
fn kafka_mode_exports_every_metric_and_lag_falls_to_zero() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let g = Group::with_topics(broker, dir.path(), "telemetry", 4);
    let data = data_set(4_000, 100, 5, 50);
    let input = lines(&data.text);
    produce(broker, &g.input, &input, None);

    let (mut w, port) = g.start_with_admin("a", &[]);
    let m = scrape_until(
        port,
        Duration::from_secs(120),
        "input consumed and committed",
        |m| {
            let lag = by_partition(m, "weir_consumer_lag_committed_records");
            lag.len() == 4
                && lag.values().all(|v| *v == 0.0)
                && total(m, "weir_records_in_total") as usize == input.len()
        },
    );
    assert_every_metric(&m);
    assert_ops_use_real_names(&m);
    let rebalances: BTreeMap<String, f64> = m
        .iter()
        .filter(|((n, _), _)| n == "weir_rebalances_total")
        .map(|((_, l), v)| (l["kind"].clone(), *v))
        .collect();
    assert!(rebalances["assigned"] >= 1.0, "{rebalances:?}");
    assert_eq!(total(&m, "weir_partitions_assigned"), 4.0);
    assert_eq!(total(&m, "weir_ready"), 1.0);
    assert_eq!(
        total(&m, "weir_records_dead_lettered_total") as usize,
        data.malformed,
        "every malformed line is dead-lettered, under its partition"
    );
    assert_eq!(total(&m, "weir_consumer_lag_processed_records"), 0.0);
    assert_checkpoints_fresh(port, Duration::from_millis(500));

    let (status, took) = terminate(&mut w.child, dir.path().join("a.log").parent().unwrap());
    let log = w.log_text();
    assert!(status.success(), "exit {status:?}:\n{log}");
    assert!(log.contains("final checkpoint"), "{log}");
    assert!(
        took < Duration::from_secs(30),
        "SIGTERM took {took:?}, longer than the revoke deadline"
    );
    eprintln!("SIGTERM to exit: {took:?}");
}

/// What the fake collector received: `(path, body)` of each request.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A loopback stand-in for an OTLP/HTTP collector: answers every POST with
/// 200 and keeps `(path, body)`.
fn fake_collector() -> (u16, Received) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let kept = std::sync::Arc::clone(&kept);
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                // Requests on this connection, one after another.
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    kept.lock().unwrap().push((path, body));
                    let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    if out.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn otlp_endpoint_receives_traces_and_metrics() {
    let (collector, seen) = fake_collector();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{collector}");
    let mut child = spawn_on_stdin(
        dir.path(),
        200,
        &["--log-format", "json"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let data = data_set(2_000, 50, 3, 0);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data.text).unwrap();
    stdin.flush().unwrap();
    let has = |path: &str, needle: &[u8]| {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(p, b)| p == path && b.windows(needle.len()).any(|w| w == needle))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(has("/v1/traces", b"checkpoint") && has("/v1/metrics", b"weir_records_in")) {
        assert!(
            Instant::now() < deadline,
            "the collector got {:?}\n{}",
            seen.lock()
                .unwrap()
                .iter()
                .map(|(p, b)| (p.clone(), b.len()))
                .collect::<Vec<_>>(),
            log_of(dir.path())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = terminate(&mut child, dir.path());
    let log = log_of(dir.path());
    assert!(status.success(), "{log}");
    // JSON logs: every log line is one JSON object.
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "exporting traces and metrics over OTLP"),
        "{log}"
    );
}

/// A worker the group gives no partition (more workers than partitions) is
/// ready once the group answers its join, not only after the fallback.
#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu")]
fn kafka_worker_without_partitions_is_ready_after_its_empty_assignment() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let g = Group::with_topics(broker, dir.path(), "idle-member", 1);
    let (mut a, pa) = g.start_with_admin("a", &[]);
    scrape_until(pa, Duration::from_secs(30), "a owns the partition", |m| {
        total(m, "weir_partitions_assigned") == 1.0 && total(m, "weir_ready") == 1.0
    });
    let (mut b, pb) = g.start_with_admin("b", &[]);
    // Well before the 60 s fallback.
    let m = scrape_until(pb, Duration::from_secs(40), "b ready with nothing", |m| {
        total(m, "weir_ready") == 1.0
    });
    assert_eq!(get(pb, "/readyz").map(|r| r.0), Some(200));
    assert_eq!(total(&m, "weir_partitions_assigned"), 0.0);
    let assigned = m
        .iter()
        .find(|((n, l), _)| n == "weir_rebalances_total" && l["kind"] == "assigned")
        .map(|(_, v)| *v);
    assert!(assigned >= Some(1.0), "b saw no assignment: {assigned:?}");
    assert!(
        !b.log_text().contains("reporting ready anyway"),
        "{}",
        b.log_text()
    );
    for w in [&mut b, &mut a] {
        let status = w.signal("TERM");
        assert!(status.success(), "{}", w.log_text());
    }
}
