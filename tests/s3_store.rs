//! weir_state's `ObjectStorage` against moto's S3 server (started on loopback by each
//! test): conditional create (`If-None-Match: *`), a large file streamed up
//! in parts and back, and listing with modification times.

mod common;

use std::time::{Duration, SystemTime};

use common::moto::Moto;
use weir_state::SnapshotStore;

#[test]
#[cfg_attr(
    weir_skip_servers,
    ignore = "WEIR_TEST_SKIP_SERVERS=1: needs the moto S3 server"
)]
fn put_if_absent_creates_once_in_s3() {
    let moto = Moto::start("weir-test");
    let store = moto.store("s3://weir-test/jobs/owner");
    assert!(
        store
            .put_if_absent("owner/epoch-1", b"first")
            .expect("create"),
        "the first create wins"
    );
    assert!(
        !store
            .put_if_absent("owner/epoch-1", b"second")
            .expect("second create"),
        "the server ignored If-None-Match: the second create overwrote the object"
    );
    assert_eq!(
        store.get_bytes("owner/epoch-1").expect("get"),
        Some(b"first".to_vec()),
        "the losing create wrote nothing"
    );
}

#[test]
#[cfg_attr(
    weir_skip_servers,
    ignore = "WEIR_TEST_SKIP_SERVERS=1: needs the moto S3 server"
)]
fn a_large_file_round_trips_through_s3() {
    let moto = Moto::start("weir-test");
    let store = moto.store("s3://weir-test/jobs/big");
    let dir = tempfile::tempdir().expect("tempdir");
    // Five 8 MiB parts and a short sixth.
    let data = weir_state::testing::noise(40 * 1024 * 1024 + 12_345, 42);
    let local = dir.path().join("000010.sst");
    std::fs::write(&local, &data).expect("write");
    store
        .put_file("shared/p0/000010.sst", &local)
        .expect("put file");
    assert_eq!(
        store.size("shared/p0/000010.sst").expect("size"),
        Some(data.len() as u64)
    );
    let back = dir.path().join("restored.sst");
    store
        .get_file("shared/p0/000010.sst", &back)
        .expect("get file");
    assert!(
        std::fs::read(&back).expect("read") == data,
        "the file came back different"
    );
    let err = store
        .get_file("shared/p0/missing.sst", &dir.path().join("missing"))
        .expect_err("a missing object is an error");
    assert!(err.to_string().contains("shared/p0/missing.sst"), "{err}");
}

#[test]
#[cfg_attr(
    weir_skip_servers,
    ignore = "WEIR_TEST_SKIP_SERVERS=1: needs the moto S3 server"
)]
fn list_modified_in_s3() {
    let moto = Moto::start("weir-test");
    let store = moto.store("s3://weir-test/jobs/list");
    // S3 keeps times to the second (or millisecond): allow for rounding.
    let before = SystemTime::now() - Duration::from_secs(2);
    for key in ["shared/p0/b.sst", "shared/p0/a.sst", "shared/p1/c.sst"] {
        store.put_bytes(key, b"x").expect("put");
    }
    let listed = store.list_modified("shared/p0/").expect("list");
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["shared/p0/a.sst", "shared/p0/b.sst"]);
    assert_eq!(keys, store.list("shared/p0/").expect("list"));
    let after = SystemTime::now() + Duration::from_secs(2);
    for (key, at) in &listed {
        assert!(
            before <= *at && *at <= after,
            "{key}: modified at {at:?}, not between {before:?} and {after:?}"
        );
    }
    assert!(store.list_modified("nothing/").expect("list").is_empty());
}
