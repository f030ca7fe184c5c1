//! Checkpoints in an S3-compatible object store (moto's server, started on
//! loopback by this test): the SIGKILL recovery test again, against it.

mod common;

use common::moto::Moto;
use common::{Fixture, assert_resumed, run_with_kills};

/// The checkpoint store in moto's bucket.
const STORE: &str = "s3://weir-test/jobs/cef";

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs moto")]
fn sigkill_twenty_times_with_checkpoints_in_s3() {
    let moto = Moto::start("weir-test");
    let fx = Fixture::new(1_000_000, 2_000, 23, 997);
    let args = fx.args(&[
        "--checkpoint-store",
        STORE,
        "--checkpoint-interval-ms",
        "200",
        "--job-id",
        "cef",
    ]);
    let env = moto.env();
    let log = fx.dir.path().join("run.log");
    let kills = run_with_kills(&args, &env, 20, 17, &log, Some(STORE));
    assert!(
        kills >= 20,
        "only {kills} kills landed before the run finished"
    );
    assert_resumed(&log, fx.data.lines);

    fx.assert_exactly_once();

    // The checkpoints are really in the bucket.
    let list = common::list_checkpoints_cli(STORE, &[], &env);
    let rows = common::checkpoint_rows(&list);
    assert!(!rows.is_empty(), "{list}");
    assert!(rows.iter().all(|r| r.ends_with("present")), "{list}");
    assert!(list.starts_with("job cef  area jobs/cef  epoch"), "{list}");

    // A hostile manifest planted in the bucket (names outside the state
    // directory, a real file's size and checksum) is refused as damaged;
    // the run restores the checkpoint before it and the canary is intact.
    let newest = common::newest_checkpoint(STORE, &env);
    let real = common::inspect_checkpoint(STORE, newest, &env);
    let canary = fx.dir.path().join("canary");
    std::fs::write(&canary, b"untouched").expect("canary");
    let key = format!(
        "jobs/cef/jobs/cef/{}",
        weir_state::snapshot::manifest_key(newest + 1)
    );
    moto.put_object(
        "weir-test",
        &key,
        &common::hostile_manifest(&real, newest + 1, &canary),
    );
    let log = fx.dir.path().join("hostile.log");
    run_with_kills(&args, &env, 0, 0, &log, None);
    common::assert_hostile_refused(&log, newest, &canary);
    fx.assert_exactly_once();
}
