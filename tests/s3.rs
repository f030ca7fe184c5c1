//! Checkpoints in an S3-compatible object store (moto's server, started on
//! loopback by this test): the SIGKILL recovery test again, against it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Fixture, assert_resumed, run_with_kills};

/// A moto S3 server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto; a missing one fails the test.
    fn start() -> Self {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        common::server::required(
            installed.then_some(()),
            "moto",
            "pip install 'moto[server]'",
        );
        let port = common::server::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts");
        let moto = Moto { child, port };
        common::server::wait_listening(port, "moto", Duration::from_secs(60));
        moto
    }

    fn create_bucket(&self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("request");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "bucket not created: {reply}"
        );
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "weir-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "weir-test".into()),
            ("AWS_REGION", "us-east-1".into()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs moto")]
fn sigkill_twenty_times_with_checkpoints_in_s3() {
    let moto = Moto::start();
    moto.create_bucket("weir-test");
    let fx = Fixture::new(1_000_000, 2_000, 23, 997);
    let args = fx.args(&[
        "--checkpoint-store",
        "s3://weir-test/jobs/cef",
        "--checkpoint-interval-ms",
        "200",
    ]);
    let env = moto.env();
    let log = fx.dir.path().join("run.log");
    let kills = run_with_kills(&args, &env, 20, 17, &log, Some("s3://weir-test/jobs/cef"));
    assert!(
        kills >= 20,
        "only {kills} kills landed before the run finished"
    );
    assert_resumed(&log, fx.data.lines);

    fx.assert_exactly_once();

    // The checkpoints are really in the bucket.
    let list = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["checkpoints", "list", "--store", "s3://weir-test/jobs/cef"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("runs");
    let list = String::from_utf8_lossy(&list.stdout);
    let rows: Vec<&str> = list
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|id| id.parse::<u64>().is_ok())
        })
        .collect();
    assert!(!rows.is_empty(), "{list}");
    assert!(rows.iter().all(|r| r.ends_with("present")), "{list}");
    assert!(list.starts_with("job "), "{list}");
}
