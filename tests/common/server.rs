//! What the tests' loopback servers (tansu, moto, stunnel) share: requiring
//! the program, a free port, waiting until it listens.
//!
//! A test that needs a server runs by default and fails when the server is
//! missing, in CI or not. `WEIR_TEST_SKIP_SERVERS=1 cargo test` opts out:
//! the build script (`build.rs`) then sets the `weir_skip_servers` cfg, and
//! each such test carries
//! `#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs …")]`,
//! so cargo lists it as ignored rather than passed.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The program a test needs, `found` by the caller; a missing one fails the
/// test with a message naming it, how to install it, and the opt-out.
#[track_caller]
pub fn required<T>(found: Option<T>, what: &str, install: &str) -> T {
    match found {
        Some(program) => program,
        None => panic!("{}", missing(what, install)),
    }
}

fn missing(what: &str, install: &str) -> String {
    let opted_out = std::env::var("WEIR_TEST_SKIP_SERVERS").is_ok_and(|v| v == "1");
    let note = if cfg!(weir_skip_servers) {
        "\nThis test is ignored under WEIR_TEST_SKIP_SERVERS=1 and ran anyway (--ignored or --include-ignored)."
    } else if opted_out {
        "\nWEIR_TEST_SKIP_SERVERS=1 is set, but these tests were built without it: it takes effect when cargo builds them."
    } else {
        ""
    };
    format!(
        "this test needs {what}, which is not installed.\n\
         Install the test servers with `ops/setup.sh --test` (for {what}: {install}),\n\
         or run `WEIR_TEST_SKIP_SERVERS=1 cargo test ...` to skip the tests that need a server \
         (cargo lists them as ignored).{note}"
    )
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until something listens on `port` (at most `limit`).
pub fn wait_listening(port: u16, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
