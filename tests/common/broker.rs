//! Brokers for the tests: tansu, started once per test binary on a free
//! loopback port and stopped when the test process exits (or one of its
//! own: durable, restartable, behind TLS), and librdkafka's mock cluster
//! ([`Mock`]), which serves record batches as produced.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Starts tansu on `port` with `storage`, under a shell that stops it when
/// the test process (its parent) is gone or the shell gets SIGTERM.
/// Clients are told to connect to `advertised` (the TLS terminator's port
/// for a broker behind TLS, else `port`).
fn spawn(
    tansu: &std::path::Path,
    port: u16,
    advertised: u16,
    storage: &str,
    cwd: &std::path::Path,
) -> std::process::Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let script = format!(
        "'{}' broker --listener-url {url} --advertised-listener-url tcp://127.0.0.1:{advertised} --storage-engine {storage} & \
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

/// A Kafka-compatible broker the tests talk to: tansu ([`Broker`]) or
/// librdkafka's mock cluster ([`Mock`]).
pub trait Kafka {
    /// `host:port` for clients.
    fn bootstrap(&self) -> String;
    /// librdkafka properties every client needs (TLS).
    fn client_options(&self) -> &[(String, String)];
    fn create_topic(&self, topic: &str, partitions: u32);
    /// Whether a fetch from an offset inside a record batch gets the rest
    /// of that batch (tansu 0.6 skips it).
    fn serves_batches(&self) -> bool;
}

impl Kafka for Broker {
    fn bootstrap(&self) -> String {
        Broker::bootstrap(self)
    }

    fn client_options(&self) -> &[(String, String)] {
        &self.client_options
    }

    fn create_topic(&self, topic: &str, partitions: u32) {
        Broker::create_topic(self, topic, partitions)
    }

    fn serves_batches(&self) -> bool {
        false
    }
}

/// How clients reach a broker, without the broker: for a thread of its
/// own (topics cannot be created through it).
#[derive(Clone)]
pub struct Endpoint {
    bootstrap: String,
    client_options: Vec<(String, String)>,
    batches: bool,
}

impl Endpoint {
    pub fn of(broker: &dyn Kafka) -> Endpoint {
        Endpoint {
            bootstrap: broker.bootstrap(),
            client_options: broker.client_options().to_vec(),
            batches: broker.serves_batches(),
        }
    }
}

impl Kafka for Endpoint {
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    fn client_options(&self) -> &[(String, String)] {
        &self.client_options
    }

    fn create_topic(&self, topic: &str, _partitions: u32) {
        panic!("creating {topic}: an endpoint cannot create topics");
    }

    fn serves_batches(&self) -> bool {
        self.batches
    }
}

/// librdkafka's mock cluster, in the test process on a loopback port. It
/// serves record batches as produced (a fetch from inside a batch too), so
/// the tests that need realistic batches run on it. Each partition keeps
/// at most 5 MB or 100,000 batches: older batches are deleted, as
/// retention would.
pub struct Mock {
    pub cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    bootstrap: String,
}

impl Mock {
    pub fn new() -> Mock {
        let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        let bootstrap = cluster.bootstrap_servers();
        Mock { cluster, bootstrap }
    }
}

impl Kafka for Mock {
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    fn client_options(&self) -> &[(String, String)] {
        &[]
    }

    fn create_topic(&self, topic: &str, partitions: u32) {
        self.cluster
            .create_topic(topic, partitions as i32, 1)
            .unwrap_or_else(|e| panic!("creating {topic}: {e}"));
    }

    fn serves_batches(&self) -> bool {
        true
    }
}

/// A running broker.
pub struct Broker {
    pub port: u16,
    /// The port clients use: `port`, or the TLS terminator's.
    pub client_port: u16,
    /// librdkafka properties every client of this broker needs (TLS).
    pub client_options: Vec<(String, String)>,
    /// A TLS terminator in front of the broker, stopped with it.
    pub tls: Option<std::process::Child>,
    tansu: PathBuf,
    /// The shell that runs the broker and stops it with the test process.
    shell: std::sync::Mutex<std::process::Child>,
    /// Storage of a broker of its own (restartable).
    storage: Option<(String, PathBuf)>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(tls) = &mut self.tls {
            let _ = tls.kill();
            let _ = tls.wait();
        }
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

/// The tansu program; a missing one fails the test
/// ([`required`](super::server::required)).
#[track_caller]
fn tansu() -> PathBuf {
    super::server::required(
        tansu_binary(),
        "tansu",
        "cargo install tansu --locked --features dynostore,libsql",
    )
}

impl Broker {
    /// The shared broker, started by the first test that asks. A missing
    /// tansu fails the test (each test that asks, since nothing started).
    pub fn shared() -> &'static Broker {
        static BROKER: OnceLock<Broker> = OnceLock::new();
        BROKER.get_or_init(Self::start)
    }

    fn start() -> Broker {
        Self::launch("memory://tansu/", &std::env::temp_dir(), false)
    }

    /// A broker of its own with durable (sqlite) storage in `dir`, which
    /// [`restart`](Self::restart) can stop and start again.
    pub fn durable(dir: &std::path::Path) -> Broker {
        // tansu reads a sqlite path relative to its working directory.
        Self::launch("sqlite://tansu.db", dir, true)
    }

    fn launch(storage: &str, cwd: &std::path::Path, restartable: bool) -> Broker {
        let tansu = tansu();
        let port = super::server::free_port();
        let shell = spawn(&tansu, port, port, storage, cwd);
        super::server::wait_listening(port, "tansu", Duration::from_secs(30));
        Broker {
            port,
            client_port: port,
            client_options: Vec::new(),
            tls: None,
            tansu,
            shell: std::sync::Mutex::new(shell),
            storage: restartable.then(|| (storage.to_string(), cwd.to_path_buf())),
        }
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
        *shell = spawn(&self.tansu, self.port, self.client_port, &storage, &dir);
        super::server::wait_listening(self.port, "tansu", Duration::from_secs(30));
    }

    /// `host:port` for Kafka clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// A broker of its own that clients reach only through TLS: tansu
    /// (which has no working TLS listener) behind stunnel, advertising the
    /// TLS port, with a CA and a certificate for 127.0.0.1 made in `dir`.
    /// A missing tansu or stunnel fails the test. Clients need
    /// [`client_options`](Self::client_options).
    pub fn behind_tls(dir: &std::path::Path) -> Broker {
        let tansu = tansu();
        let stunnel = super::server::required(
            super::tls::stunnel_binary(),
            "stunnel",
            "apt-get install stunnel4",
        );
        let ca = super::tls::make_certificates(dir);
        let (port, tls_port) = (super::server::free_port(), super::server::free_port());
        let tls = super::tls::terminate(stunnel, dir, tls_port, port);
        let shell = spawn(&tansu, port, tls_port, "memory://tansu/", dir);
        super::server::wait_listening(port, "tansu", Duration::from_secs(30));
        super::server::wait_listening(tls_port, "stunnel", Duration::from_secs(30));
        Broker {
            port,
            client_port: tls_port,
            client_options: vec![
                ("security.protocol".into(), "ssl".into()),
                ("ssl.ca.location".into(), ca.display().to_string()),
            ],
            tls: Some(tls),
            tansu,
            shell: std::sync::Mutex::new(shell),
            storage: None,
        }
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
