//! An upgrade with a changed state type, through two binaries:
//! `cef_alerts` (its detector at state version 1) is killed with SIGKILL
//! mid-stream after a checkpoint; `cef_alerts_v2`, whose window renames a
//! field and adds one, resumes from that checkpoint and migrates each key's
//! windows the first time it loads them. The alerts equal the independent
//! reference, each once.

mod common;

use common::{Fixture, example_bin_named, kill_after_a_checkpoint, resume_to_the_end};

#[test]
fn a_new_state_version_resumes_from_the_old_binarys_checkpoint() {
    let fx = Fixture::new(400_000, 2_000, 81, 997);
    let store = fx.dir.path().join("store");
    let url = store.to_str().expect("utf-8");
    // One job across both versions: the id would otherwise follow the
    // processor's type name.
    let args = fx.args(&[
        "--checkpoint-store",
        url,
        "--checkpoint-interval-ms",
        "150",
        "--job-id",
        "alerts",
        "--partitions",
        "3",
    ]);
    kill_after_a_checkpoint(
        &example_bin_named("cef_alerts"),
        &args,
        url,
        &fx.dir.path().join("v1.log"),
    );

    resume_to_the_end(
        &example_bin_named("cef_alerts_v2"),
        &args,
        &fx.dir.path().join("v2.log"),
        fx.data.lines,
    );
    fx.assert_exactly_once();
}
