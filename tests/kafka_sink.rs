//! The Kafka sink against a real broker: outputs keyed by the processor's
//! key, dead letters with their error and source in headers, and commit
//! returning only once the broker acknowledged everything.

mod common;

use std::time::Duration;

use common::broker::Broker;
use common::kafka::{Record, read_until};
use weir::kafka::{DeadLetterRecord, KafkaSink, headers};

/// Everything in `topic`: reads until `expected` records arrived (at most
/// a minute), then a second more.
fn read_all(broker: &Broker, topic: &str, expected: usize) -> Vec<Record> {
    read_until(
        broker,
        topic,
        Duration::from_secs(60),
        Duration::from_secs(1),
        |rs| rs.len() >= expected,
    )
}

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu")]
fn outputs_are_keyed_and_dead_letters_carry_their_error_and_source() {
    let broker = Broker::shared();
    let out_topic = format!("alerts-{}", std::process::id());
    let dlq_topic = format!("dlq-{}", std::process::id());
    broker.create_topic(&out_topic, 3);
    broker.create_topic(&dlq_topic, 1);

    let sink = KafkaSink::new(&broker.bootstrap(), &out_topic, Some(&dlq_topic)).expect("sink");
    for i in 0..200u32 {
        sink.send(
            format!("10.0.0.{}", i % 7).as_bytes(),
            format!("{{\"n\":{i}}}").as_bytes(),
        )
        .expect("sent");
    }
    sink.send_dead_letter(&DeadLetterRecord {
        raw: b"not CEF at all",
        error: "column 1: expected a CEF header starting with 'CEF:'",
        source_topic: "events",
        source_partition: 2,
        source_offset: 41,
    })
    .expect("dead letter sent");
    sink.commit(Duration::from_secs(30))
        .expect("everything acknowledged");

    let outputs = read_all(broker, &out_topic, 200);
    assert_eq!(outputs.len(), 200);
    for Record { key, value, .. } in &outputs {
        let n: u32 = serde_json::from_slice::<serde_json::Value>(value).expect("json")["n"]
            .as_u64()
            .expect("n") as u32;
        assert_eq!(
            key.as_deref(),
            Some(format!("10.0.0.{}", n % 7).as_bytes()),
            "keyed by the processor's key"
        );
    }

    let dead = read_all(broker, &dlq_topic, 1);
    assert_eq!(dead.len(), 1);
    let Record {
        value: raw,
        headers: hs,
        ..
    } = &dead[0];
    assert_eq!(raw, b"not CEF at all");
    assert_eq!(
        hs[headers::ERROR],
        "column 1: expected a CEF header starting with 'CEF:'"
    );
    assert_eq!(hs[headers::SOURCE_TOPIC], "events");
    assert_eq!(hs[headers::SOURCE_PARTITION], "2");
    assert_eq!(hs[headers::SOURCE_OFFSET], "41");

    // Without a dead-letter topic, rejecting a record is an error, not a drop.
    let no_dlq = KafkaSink::new(&broker.bootstrap(), &out_topic, None).expect("sink");
    let err = no_dlq
        .send_dead_letter(&DeadLetterRecord {
            raw: b"x",
            error: "bad",
            source_topic: "events",
            source_partition: 0,
            source_offset: 0,
        })
        .unwrap_err();
    assert!(err.to_string().contains("no dead-letter topic"), "{err}");
}

#[test]
fn commit_fails_when_the_broker_is_unreachable() {
    // A port nothing listens on: deliveries cannot be acknowledged.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sink = KafkaSink::new(&format!("127.0.0.1:{port}"), "nowhere", None).expect("sink");
    sink.send(b"k", b"v").expect("queued locally");
    assert!(sink.commit(Duration::from_millis(500)).is_err());
}
