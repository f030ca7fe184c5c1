//! A tansu broker for the tests of one test binary: started once, on a free
//! loopback port, and stopped when the test process exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A running broker.
pub struct Broker {
    pub port: u16,
    tansu: PathBuf,
    /// The shell that runs the broker and stops it with the test process.
    _shell: std::process::Child,
}

fn tansu_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANSU") {
        return Some(PathBuf::from(p));
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/tansu");
    if home.exists() {
        return Some(home);
    }
    Command::new("tansu")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then(|| PathBuf::from("tansu"))
}

impl Broker {
    /// The shared broker, or `None` (loudly) when tansu is not installed
    /// outside CI. Under CI its absence fails the test.
    pub fn shared() -> Option<&'static Broker> {
        static BROKER: OnceLock<Option<Broker>> = OnceLock::new();
        BROKER.get_or_init(Self::start).as_ref()
    }

    fn start() -> Option<Broker> {
        let tansu = tansu_binary();
        if !super::server::required(
            tansu.is_some(),
            "tansu",
            "cargo install tansu --locked --features dynostore,libsql",
        ) {
            return None;
        }
        let tansu = tansu?;
        let port = super::server::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        // The shell stops the broker once the test process (its parent) is
        // gone, however the tests end.
        let script = format!(
            "'{}' broker --listener-url {url} --advertised-listener-url {url} --storage-engine memory://tansu/ & \
             b=$!; while kill -0 $PPID 2>/dev/null; do sleep 1; done; kill $b",
            tansu.display()
        );
        let shell = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        super::server::wait_listening(port, "tansu", Duration::from_secs(30));
        Some(Broker {
            port,
            tansu,
            _shell: shell,
        })
    }

    /// `host:port` for Kafka clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(&self.tansu)
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .expect("tansu topic create runs");
        assert!(
            out.status.success(),
            "creating {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
