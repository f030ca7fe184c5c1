//! Build script of the `weir` package: only the opt-out of the tests that
//! need a loopback server (tansu, moto, stunnel). With
//! `WEIR_TEST_SKIP_SERVERS=1` at build time it sets the `weir_skip_servers`
//! cfg, under which those tests carry `#[ignore]` and cargo lists them as
//! ignored; without it they run, and fail when their server is missing
//! (`tests/common/server.rs`). No dependencies, and it reruns only when the
//! variable or this file changes.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WEIR_TEST_SKIP_SERVERS");
    println!("cargo:rustc-check-cfg=cfg(weir_skip_servers)");
    match std::env::var("WEIR_TEST_SKIP_SERVERS").as_deref() {
        Ok("1") => println!("cargo:rustc-cfg=weir_skip_servers"),
        Ok("" | "0") | Err(std::env::VarError::NotPresent) => {}
        Ok(other) => println!(
            "cargo:warning=WEIR_TEST_SKIP_SERVERS={other:?} is not 1: the tests that need a server run"
        ),
        Err(std::env::VarError::NotUnicode(_)) => println!(
            "cargo:warning=WEIR_TEST_SKIP_SERVERS is not 1: the tests that need a server run"
        ),
    }
}
