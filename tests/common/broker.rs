//! A tansu broker for the tests of one test binary: started once, on a free
//! loopback port, and stopped when the test process exits.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
        let Some(tansu) = tansu_binary() else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the Kafka tests: install tansu (ops/setup.sh does)"
            );
            eprintln!(
                "\n*** SKIPPED: Kafka tests need tansu; run ops/setup.sh (cargo install tansu) ***\n"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
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
