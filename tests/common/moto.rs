//! moto's S3-compatible server on loopback, for the object-store tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir_state::ObjectStorage;

/// A moto S3 server on a free loopback port with one bucket, stopped on
/// drop.
pub struct Moto {
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
    /// Starts moto with the bucket `bucket`; a missing moto fails the test.
    pub fn start(bucket: &str) -> Self {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        super::server::required(
            installed.then_some(()),
            "moto",
            "pip install 'moto[server]'",
        );
        let port = super::server::free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts");
        let moto = Moto { child, port };
        super::server::wait_listening(port, "moto", Duration::from_secs(60));
        moto.request("PUT", &format!("/{bucket}"), b"");
        moto
    }

    /// Writes an object with a plain, unsigned PUT (moto accepts it).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        self.request("PUT", &format!("/{bucket}/{key}"), body);
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .expect("request");
        s.write_all(body).expect("body");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "{method} {path}: {reply}"
        );
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
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

    /// The environment a process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.settings()
    }

    /// A store on `url` in this server, configured without touching the
    /// process environment.
    pub fn store(&self, url: &str) -> ObjectStorage {
        let settings = self.settings();
        let options: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ObjectStorage::s3_with_options(url, &options).expect("store")
    }
}
