//! The Kafka sink against a real broker: outputs keyed by the processor's
//! key, dead letters with their error and source in headers, and commit
//! returning only once the broker acknowledged everything.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::broker::Broker;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use weir::kafka::{DeadLetterRecord, KafkaSink, headers};

/// A consumed record: key, value, headers.
type Record = (Option<Vec<u8>>, Vec<u8>, BTreeMap<String, String>);

/// Everything in `topic`.
fn read_all(broker: &Broker, topic: &str, expected: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", format!("read-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("no consume error");
            let mut hs = BTreeMap::new();
            if let Some(h) = msg.headers() {
                for header in h.iter() {
                    let value = header
                        .value
                        .map(|v| String::from_utf8_lossy(v).to_string())
                        .unwrap_or_default();
                    hs.insert(header.key.to_string(), value);
                }
            }
            out.push((
                msg.key().map(<[u8]>::to_vec),
                msg.payload().unwrap_or_default().to_vec(),
                hs,
            ));
        }
    }
    out
}

#[test]
fn outputs_are_keyed_and_dead_letters_carry_their_error_and_source() {
    let Some(broker) = Broker::shared() else {
        return;
    };
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
    for (key, value, _) in &outputs {
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
    let (_, raw, hs) = &dead[0];
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
