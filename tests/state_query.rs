//! `GET /state/<processor>/<key>` while `cef_alerts` runs on stdin: after
//! each batch of lines is written, the key's state read over HTTP comes to
//! exactly the counts of the lines so far (a reference computed here), and
//! never to more.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::admin::get;
use common::server::{free_port, wait_listening};

/// (events, failed) of `src`'s windows in a state answer.
fn counts(body: &str) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let windows = v["state"].as_array().expect("the state is the windows");
    windows.iter().fold((0, 0), |(e, f), w| {
        (
            e + w["events"].as_u64().expect("events"),
            f + w["failed"].as_u64().expect("failed"),
        )
    })
}

#[test]
fn a_keys_state_reads_over_http_as_the_lines_so_far_count_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Command::new(common::example_bin())
        .args(["--input", "-"])
        .args([
            "--output",
            dir.path().join("out.jsonl").to_str().expect("utf-8"),
        ])
        .args([
            "--state-dir",
            dir.path().join("state").to_str().expect("utf-8"),
        ])
        .args([
            "--admin-addr",
            &format!("127.0.0.1:{port}"),
            "--serve-state",
        ])
        .args(["--window-secs", "3600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cef_alerts starts");
    wait_listening(port, "the admin server", Duration::from_secs(30));
    // The admin server listens from the start; queries are answered once
    // the partitions run, which is when the job is ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/readyz").map(|(code, _)| code) != Some(200) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let src = "10.7.7.7";
    let path = format!("/state/cef_alerts/{src}");
    let (mut events, mut failed) = (0u64, 0u64);
    for round in 0..4u64 {
        // Lines for this source (every third a failed login) and others,
        // all inside one hour-long window, so none closes.
        for i in 0..50u64 {
            let n = round * 50 + i;
            let rt = 1_767_225_600_000 + n as i64 * 10;
            let outcome = if n % 3 == 0 { "failure" } else { "success" };
            writeln!(
                stdin,
                "CEF:0|V|P|1|100|Login|5|src={src} outcome={outcome} rt={rt}"
            )
            .expect("write");
            writeln!(stdin, "CEF:0|V|P|1|100|Login|5|src=10.0.0.{i} rt={rt}").expect("write");
            events += 1;
            failed += u64::from(n % 3 == 0);
        }
        stdin.flush().expect("flush");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body) = get(port, &path).expect("the admin server answers");
            assert_eq!(code, 200, "{body}");
            let seen = counts(&body);
            assert!(seen.0 <= events, "more than was written: {seen:?}, {body}");
            if seen == (events, failed) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {seen:?} of {events}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (code, body) = get(port, "/state/another/10.7.7.7").expect("answers");
    assert_eq!(code, 404, "{body}");
    let (code, body) = get(port, "/state/cef_alerts/10.9.9.9").expect("answers");
    assert_eq!(
        (code, counts(&body)),
        (200, (0, 0)),
        "a key never seen: {body}"
    );
    drop(stdin);
    assert!(child.wait().expect("exits").success());
}
