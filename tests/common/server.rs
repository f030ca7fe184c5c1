//! What the tests' loopback servers (tansu, moto) share: requiring the
//! program, a free port, waiting until it listens.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Whether a test needing `what` may run. Missing under CI is a failure;
/// missing elsewhere is a loud skip.
pub fn required(installed: bool, what: &str, install: &str) -> bool {
    if !installed {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the tests that need {what}: {install} (ops/setup.sh --test does)"
        );
        eprintln!(
            "\n*** SKIPPED: this test needs {what}: {install}, or run ops/setup.sh --test ***\n"
        );
    }
    installed
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
