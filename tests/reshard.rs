//! Re-sharding a checkpoint to another partition count, through the real
//! binaries: `cef_alerts` at 4 partitions is killed mid-stream, `weir
//! checkpoints reshard` turns its checkpoint into one at 7, and the job
//! resumes at 7 partitions with a new state directory. The alerts must
//! equal the independent reference, each exactly once: a key whose state
//! or timers landed in the wrong partition would split or lose a window.

mod common;

use std::process::Command;

use common::{
    Fixture, checkpoints_cli, example_bin, inspect_checkpoint, kill_after_a_checkpoint,
    newest_checkpoint, reshard_cli, resume_to_the_end, summary_field,
};

#[test]
fn file_mode_four_to_seven_partitions_mid_stream_loses_and_repeats_nothing() {
    let fx = Fixture::new(600_000, 2_000, 53, 997);
    let store = fx.dir.path().join("store");
    let url = store.to_str().expect("utf-8").to_string();
    let checkpoints = [
        "--checkpoint-store",
        &url,
        "--checkpoint-interval-ms",
        "150",
    ];
    let with = |state: &str, partitions: &str| {
        let mut extra = checkpoints.to_vec();
        extra.extend(["--partitions", partitions]);
        fx.args_in(state, &extra)
    };
    kill_after_a_checkpoint(
        &example_bin(),
        &with("state4", "4"),
        &url,
        &fx.dir.path().join("first.log"),
    );

    // Without re-sharding, seven partitions cannot use the checkpoint, and
    // the error says what to do.
    let refused = Command::new(example_bin())
        .args(with("state-refused", "7"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(err.contains("weir checkpoints reshard"), "{err}");

    let (_, summary) = reshard_cli(&url, &["--to-partitions", "7"]);
    let summary = summary.as_str();
    assert!(summary.contains("mode=file from=4 to=7"), "{summary}");
    let keys = summary_field(summary, "keys");
    assert!(keys > 100, "open windows carry state: {summary}");
    assert!(summary_field(summary, "moved") > keys / 2, "{summary}");
    assert!(summary_field(summary, "timers") > 0, "{summary}");
    let id = newest_checkpoint(&url, &[]);
    let manifest = inspect_checkpoint(&url, id, &[]);
    let parts = manifest["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 7, "{manifest}");
    let positions: Vec<u64> = parts
        .iter()
        .map(|p| p["position"].as_u64().expect("position"))
        .collect();
    assert!(
        positions.iter().all(|&p| p == positions[0] && p > 0),
        "{positions:?}"
    );

    // A second re-shard to the same count changes nothing that matters: it
    // converges on the same placement.
    let (_, again) = reshard_cli(&url, &["--to-partitions", "7"]);
    assert_eq!(summary_field(&again, "moved"), 0, "{again}");

    resume_to_the_end(
        &example_bin(),
        &with("state7", "7"),
        &fx.dir.path().join("resumed.log"),
        fx.data.lines,
    );
    fx.assert_exactly_once();
}

#[test]
fn resharding_explains_what_it_cannot_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir
        .path()
        .join("empty")
        .to_str()
        .expect("utf-8")
        .to_string();
    std::fs::create_dir_all(&url).expect("store");
    let out = checkpoints_cli("reshard", &url, &["--to-partitions", "3"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("holds no job's checkpoints"), "{err}");
    let out = checkpoints_cli("reshard", &url, &["--to-partitions", "0"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot re-shard to 0 partitions"), "{err}");
}
