//! A tansu broker for the tests of one test binary: started once, on a free
//! loopback port, and stopped when the test process exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Starts tansu on `port` with `storage`, under a shell that stops it when
/// the test process (its parent) is gone or the shell gets SIGTERM.
fn spawn(
    tansu: &std::path::Path,
    port: u16,
    storage: &str,
    cwd: &std::path::Path,
) -> std::process::Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let script = format!(
        "'{}' broker --listener-url {url} --advertised-listener-url {url} --storage-engine {storage} & \
         b=$!; trap 'kill $b; wait $b; exit 0' TERM; while kill -0 $PPID 2>/dev/null; do sleep 1; done; kill $b",
        tansu.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts")
}

/// A running broker.
pub struct Broker {
    pub port: u16,
    tansu: PathBuf,
    /// The shell that runs the broker and stops it with the test process.
    shell: std::sync::Mutex<std::process::Child>,
    /// Storage of a broker of its own (restartable).
    storage: Option<(String, PathBuf)>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let shell = self.shell.get_mut().expect("shell");
        let _ = Command::new("kill")
            .args(["-TERM", &shell.id().to_string()])
            .status();
        let _ = shell.wait();
    }
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
        Self::launch("memory://tansu/", &std::env::temp_dir(), false)
    }

    /// A broker of its own with durable (sqlite) storage in `dir`, which
    /// [`restart`](Self::restart) can stop and start again. `None` as for
    /// [`shared`](Self::shared).
    pub fn durable(dir: &std::path::Path) -> Option<Broker> {
        // tansu reads a sqlite path relative to its working directory.
        Self::launch("sqlite://tansu.db", dir, true)
    }

    fn launch(storage: &str, cwd: &std::path::Path, restartable: bool) -> Option<Broker> {
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
        let shell = spawn(&tansu, port, storage, cwd);
        super::server::wait_listening(port, "tansu", Duration::from_secs(30));
        Some(Broker {
            port,
            tansu,
            shell: std::sync::Mutex::new(shell),
            storage: restartable.then(|| (storage.to_string(), cwd.to_path_buf())),
        })
    }

    /// Stops the broker, waits `down`, starts it again on the same port and
    /// storage (durable brokers only).
    pub fn restart(&self, down: Duration) {
        let (storage, dir) = self
            .storage
            .clone()
            .expect("restart needs a durable broker");
        let mut shell = self.shell.lock().expect("shell");
        let _ = Command::new("kill")
            .args(["-TERM", &shell.id().to_string()])
            .status();
        let _ = shell.wait();
        std::thread::sleep(down);
        *shell = spawn(&self.tansu, self.port, &storage, &dir);
        super::server::wait_listening(self.port, "tansu", Duration::from_secs(30));
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
