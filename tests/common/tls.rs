//! A TLS terminator on loopback for brokers without a TLS listener (tansu,
//! librdkafka's mock cluster): stunnel in front of the broker's port, with
//! a CA and a server certificate for 127.0.0.1 made by the openssl command.
//! Used by the tests and by `bench_kafka --tls`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The stunnel command, if installed.
pub fn stunnel_binary() -> Option<&'static str> {
    ["stunnel4", "stunnel"].into_iter().find(|p| {
        Command::new(p)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// Starts `stunnel` accepting TLS on `tls_port` and forwarding to `port`,
/// with the certificate [`make_certificates`] made in `dir`; it logs to
/// `dir/stunnel.log`.
pub fn terminate(stunnel: &str, dir: &Path, tls_port: u16, port: u16) -> Child {
    let conf = dir.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{port}\ncert = {}\nkey = {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ),
    )
    .expect("stunnel config");
    Command::new(stunnel)
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stunnel.log")).expect("log"))
        .spawn()
        .expect("stunnel starts")
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it (and a
/// second CA that signed nothing) in `dir` with the openssl command.
/// Returns the CA certificate's path.
pub fn make_certificates(dir: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for ca in ["ca", "other-ca"] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=weir test {ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ]);
    }
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    dir.join("ca.pem")
}
