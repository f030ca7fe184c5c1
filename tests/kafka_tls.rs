//! Kafka over TLS, for real: tansu (which has no working TLS listener)
//! behind stunnel on loopback, advertising the TLS port, with a CA and a
//! server certificate the test makes. A job with `security.protocol=ssl`
//! and `ssl.ca.location` gives the reference alerts; a wrong CA, or a
//! plaintext client against the TLS port, is a clear start-up error within
//! seconds. No broker here speaks SASL: a SASL_SSL client with SCRAM fails
//! clearly against this broker, which offers none, without printing its
//! password, and `kafka::config`'s unit tests check that the SASL
//! mechanisms are built in and accepted.

mod common;

use std::time::{Duration, Instant};

use common::broker::Broker;
use common::data_set;
use common::kafka::{Group, lines, produce, produce_end_markers, read_alerts};

#[test]
#[cfg_attr(
    weir_skip_servers,
    ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu and stunnel"
)]
fn a_job_over_tls_matches_the_reference_and_bad_tls_settings_fail_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::behind_tls(dir.path());
    let g = Group::with_topics(&broker, dir.path(), "tls", 2);
    let data = data_set(20_000, 300, 44, 0);
    assert!(data.reference.len() > 10);
    produce(&broker, &g.input, &lines(&data.text), None);
    produce_end_markers(&broker, &g.input, 2);

    let mut worker = g.start("tls", &[]);
    let got = read_alerts(
        &broker,
        &g.output,
        &data.reference,
        Duration::from_secs(120),
    );
    let got: std::collections::BTreeSet<_> = got.into_iter().collect();
    if got != data.reference {
        eprintln!("{}", worker.log_text());
    }
    assert_eq!(got, data.reference, "alerts over TLS");
    assert!(worker.signal("TERM").success());

    // Settings that can never work stop the worker at once, saying why.
    let other_ca = dir.path().join("other-ca.pem");
    let password = "pw-never-shown-7f3a";
    let cases = [
        (
            "wrong-ca",
            vec![format!("ssl.ca.location={}", other_ca.display())],
            "certificate verify failed",
        ),
        (
            "plaintext",
            vec!["security.protocol=plaintext".to_string()],
            "security.protocol",
        ),
        // A SASL_SSL client (SCRAM) against a broker that offers no SASL:
        // the settings reach librdkafka, and the login fails clearly.
        (
            "sasl",
            vec![
                "security.protocol=sasl_ssl".to_string(),
                "sasl.mechanism=SCRAM-SHA-512".to_string(),
                "sasl.username=weir".to_string(),
                format!("sasl.password={password}"),
            ],
            "SASL",
        ),
    ];
    for (name, options, expected) in cases {
        let started = Instant::now();
        let args: Vec<&str> = options
            .iter()
            .flat_map(|o| ["--kafka-option", o.as_str()])
            .collect();
        let mut w = g.start(name, &args);
        let status = w.exit_within(Duration::from_secs(20));
        let log = w.log_text();
        assert!(!status.success(), "{name}: {log}");
        assert!(
            log.contains("cannot connect") && log.contains(expected),
            "{name}: {log}"
        );
        assert!(!log.contains(password), "{name}: the password is printed");
        let said = log.lines().find(|l| l.contains("cannot connect"));
        eprintln!("{name}: {}", said.unwrap_or_default());
        eprintln!(
            "{name}: stopped after {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}
