//! Crash recovery with real processes: `cef_alerts` killed with SIGKILL at
//! random moments, restarted with the same arguments each time, must end
//! with every alert and every dead letter exactly once.

mod common;

use std::process::Command;

use common::{
    Fixture, assert_resumed, checkpoint_rows, checkpoints_cli, example_bin, inspect_checkpoint,
    list_checkpoints_cli, run_with_kills, summary_field,
};

/// Arguments for job `cef` checkpointing only at the end of input, into
/// the store directory `store`.
fn checkpoints_at_the_end(fx: &Fixture, store: &std::path::Path) -> Vec<String> {
    fx.args(&[
        "--checkpoint-store",
        store.to_str().expect("utf-8"),
        "--checkpoint-interval-ms",
        "0",
        "--job-id",
        "cef",
    ])
}

#[test]
fn sigkill_twenty_times_loses_nothing_and_repeats_nothing() {
    let fx = Fixture::new(1_000_000, 2_000, 11, 997);
    let args = fx.args(&["--checkpoint-interval-ms", "200"]);
    let log = fx.dir.path().join("run.log");
    let store = fx.dir.path().join("state").join("snapshots");
    let kills = run_with_kills(&args, &[], 20, 3, &log, store.to_str());
    assert!(
        kills >= 20,
        "only {kills} kills landed before the run finished"
    );
    assert_resumed(&log, fx.data.lines);
    fx.assert_exactly_once();

    // Run again after completion: nothing left to do, nothing rewritten.
    let before = std::fs::read(&fx.output).expect("output");
    assert_eq!(
        run_with_kills(&args, &[], 0, 0, &fx.dir.path().join("again.log"), None),
        0
    );
    assert_eq!(std::fs::read(&fx.output).expect("output"), before);
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_previous_one() {
    let fx = Fixture::new(40_000, 300, 5, 0);
    let dir = fx.dir.path();
    let store = dir.join("store");
    let args = checkpoints_at_the_end(&fx, &store);
    // The job's folder in the store.
    let area = store.join("jobs").join("cef");
    run_with_kills(&args, &[], 0, 0, &dir.join("first.log"), None);
    // Two complete checkpoints now: the end-of-input one of this run ...
    run_with_kills(&args, &[], 0, 0, &dir.join("second.log"), None);
    // ... and the one of the second run. The CLI shows both.
    let url = store.to_str().expect("utf-8");
    let list = list_checkpoints_cli(url, &[], &[]);
    let rows = checkpoint_rows(&list);
    let ids: Vec<u64> = rows
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(
        list.starts_with("job cef  area jobs/cef  epoch 2"),
        "{list}"
    );
    assert!(rows.iter().all(|r| r.ends_with("present")), "{list}");
    // Each run took the next owner epoch; ids carry it.
    assert_eq!(ids, [1_000_000_001, 2_000_000_001], "{list}");
    let end = std::fs::metadata(&fx.input).expect("input").len();
    assert!(
        rows[0].contains(&end.to_string()),
        "position is the end of input: {list}"
    );
    let v = inspect_checkpoint(url, ids[1], &[]);
    assert_eq!(v["checkpoint_id"], ids[1]);
    assert_eq!(v["partitions"].as_array().expect("partitions").len(), 4);
    assert!(v["partitions"][0]["files"][0]["crc32"].is_u64());
    assert!(v["sinks"]["output"].as_u64().expect("output length") > 0);
    let missing = checkpoints_cli("inspect", url, &["999"], &[]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("checkpoint 999"));

    // Damage the newest one's files.
    let newest = std::fs::read_dir(area.join("checkpoints"))
        .expect("checkpoints")
        .map(|e| e.expect("entry").path())
        .max()
        .expect("a checkpoint");
    let current = newest.join("p0").join("CURRENT");
    std::fs::write(&current, b"garbage").expect("corrupt");
    let list = list_checkpoints_cli(url, &[], &[]);
    assert!(
        list.contains("DAMAGED"),
        "the CLI sees the wrong size: {list}"
    );
    let log = dir.join("third.log");
    run_with_kills(&args, &[], 0, 0, &log, None);
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(log.contains("skipped a broken checkpoint"), "{log}");
    fx.assert_exactly_once();

    // With every checkpoint broken, the job refuses to start empty silently.
    for entry in std::fs::read_dir(area.join("checkpoints")).expect("checkpoints") {
        std::fs::write(
            entry.expect("entry").path().join("p0").join("CURRENT"),
            b"garbage",
        )
        .expect("corrupt");
    }
    let out = Command::new(example_bin())
        .args(&args)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no usable checkpoint") && err.contains("--start-empty"),
        "{err}"
    );
    let out = Command::new(example_bin())
        .args(&args)
        .arg("--start-empty")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_takes_a_final_checkpoint_exits_zero_and_the_next_run_resumes() {
    let fx = Fixture::new(600_000, 1_000, 29, 0);
    // No interval: the only checkpoint is the one shutdown takes.
    let args = fx.args(&["--checkpoint-interval-ms", "0"]);
    let child = Command::new(example_bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    std::thread::sleep(std::time::Duration::from_millis(600));
    // A second process on the same state directory is refused.
    let second = Command::new(example_bin())
        .args(&args)
        .output()
        .expect("runs");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SIGTERM must end with exit 0: {err}");
    assert!(
        err.contains("stopped=true"),
        "it stopped before the end of input: {err}"
    );
    assert!(
        err.contains("checkpoints=1"),
        "the shutdown checkpoint completed: {err}"
    );

    let again = Command::new(example_bin())
        .args(&args)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    let summary = err
        .lines()
        .find(|l| l.contains("restored_checkpoint="))
        .expect("summary");
    assert!(summary_field(summary, "restored_checkpoint") > 0, "{err}");
    assert!(
        summary_field(summary, "records") < fx.data.lines as u64,
        "{err}"
    );
    assert!(err.contains("stopped=false"), "{err}");
    fx.assert_exactly_once();
}

/// Someone who can write to the store plants a manifest naming files
/// outside the state directory (with the size and checksum of a real
/// checkpoint file): the job refuses it as a damaged checkpoint, restores
/// the one before, and a canary file outside is untouched.
#[test]
fn a_hostile_manifest_writes_nothing_outside_the_state_directory() {
    let fx = Fixture::new(40_000, 300, 13, 0);
    let dir = fx.dir.path();
    let store = dir.join("store");
    let args = checkpoints_at_the_end(&fx, &store);
    run_with_kills(&args, &[], 0, 0, &dir.join("first.log"), None);
    let real = inspect_checkpoint(store.to_str().expect("utf-8"), 1_000_000_001, &[]);
    // The canary sits beside the state directory, where `../../` from a
    // partition's restore folder points.
    let canary = dir.join("canary");
    std::fs::write(&canary, b"untouched").expect("canary");
    let id = 1_000_000_002;
    let planted = store
        .join("jobs/cef")
        .join(weir_state::snapshot::manifest_key(id));
    std::fs::create_dir_all(planted.parent().expect("folder")).expect("mkdir");
    std::fs::write(&planted, common::hostile_manifest(&real, id, &canary)).expect("plant");

    let log = dir.join("second.log");
    run_with_kills(&args, &[], 0, 0, &log, None);
    common::assert_hostile_refused(&log, 1_000_000_001, &canary);
    fx.assert_exactly_once();
}
