//! Property test: for random inputs and a crash injected at a random step
//! of the checkpoint protocol, restoring and replaying ends with the same
//! outputs as a run without a crash.
//!
//! Needs the crash points compiled in: `cargo test --features failpoints`
//! (what `ops/test.sh` runs). Without the feature this file is empty, and
//! says so loudly.

#[cfg(not(feature = "failpoints"))]
#[test]
fn crash_points_need_the_failpoints_feature() {
    eprintln!("SKIPPED: crash-point tests need `--features failpoints` (ops/test.sh enables it)");
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the crash-point tests: use --features failpoints"
    );
}

#[cfg(feature = "failpoints")]
mod common;

#[cfg(feature = "failpoints")]
mod with_failpoints {
    use std::collections::BTreeSet;
    use std::process::Command;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::common::{Fixture, example_bin, read_alerts, read_json_lines, summary_field};

    /// Every crash point of the protocol, in protocol order.
    const STEPS: [&str; 7] = [
        "checkpoint-inject",
        "partition-checkpoint-start",
        "partition-checkpoint-snapshot",
        "sink-before-commit",
        "checkpoint-before-upload",
        "checkpoint-before-manifest",
        "checkpoint-before-prune",
    ];

    #[test]
    fn a_crash_at_any_checkpoint_step_then_restore_and_replay_loses_nothing() {
        let crashes = std::cell::Cell::new(0u32);
        let resumed = std::cell::Cell::new(0u32);
        let mut runner = TestRunner::new(Config {
            cases: 14,
            ..Config::default()
        });
        let strategy = (0..STEPS.len(), 0u32..4, 0u64..1_000);
        runner
            .run(&strategy, |(step, skip, seed)| {
                let fx = Fixture::new(20_000, 150, seed, 400);
                let args = fx.args(&["--checkpoint-interval-ms", "5", "--job-id", "cef"]);
                let crashed = Command::new(example_bin())
                    .args(&args)
                    .env("FAILPOINTS", format!("{}={skip}*off->return", STEPS[step]))
                    .output()
                    .expect("runs");
                if !crashed.status.success() {
                    let err = String::from_utf8_lossy(&crashed.stderr);
                    prop_assert!(
                        err.contains("aborting the process"),
                        "crashed for another reason: {}",
                        err
                    );
                    crashes.set(crashes.get() + 1);
                }
                // A checkpoint the crashed run completed must be restored.
                let area = fx.dir.path().join("state/snapshots/jobs/cef");
                let completed = weir_state::LocalDirStore::new(&area)
                    .and_then(|s| weir_state::snapshot::list_checkpoints(&s))
                    .expect("store")
                    .len();
                let recovered = Command::new(example_bin())
                    .args(args)
                    .output()
                    .expect("runs");
                let err = String::from_utf8_lossy(&recovered.stderr);
                prop_assert!(recovered.status.success(), "recovery run failed: {}", err);
                if completed > 0 {
                    let summary = err
                        .lines()
                        .find(|l| l.contains("restored_checkpoint="))
                        .unwrap_or_default();
                    prop_assert!(
                        summary_field(summary, "restored_checkpoint") > 0
                            && summary_field(summary, "records") < fx.data.lines as u64,
                        "a checkpoint was there but the recovery run started over: {}",
                        summary
                    );
                    resumed.set(resumed.get() + 1);
                }
                let alerts = read_alerts(&fx.output);
                let unique: BTreeSet<_> = alerts.iter().cloned().collect();
                prop_assert_eq!(
                    unique.len(),
                    alerts.len(),
                    "an alert twice after a crash at {}",
                    STEPS[step]
                );
                prop_assert_eq!(
                    &unique,
                    &fx.data.reference,
                    "alerts differ after a crash at {}",
                    STEPS[step]
                );
                let dead = read_json_lines(&fx.dir.path().join("alerts.jsonl.dlq"));
                prop_assert_eq!(dead.len(), fx.data.malformed);
                Ok(())
            })
            .expect("property holds");
        let crashes = crashes.get();
        assert!(
            resumed.get() >= 3,
            "only {} of 14 recovery runs had a checkpoint to resume from",
            resumed.get()
        );
        assert!(
            crashes >= 7,
            "only {crashes} of 14 runs reached their crash point"
        );
    }
}
