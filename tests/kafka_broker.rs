//! The Kafka test support itself: a tansu broker on a free loopback port,
//! and an rdkafka producer and consumer group talking to it.

mod common;

use std::time::{Duration, Instant};

use common::broker::Broker;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[test]
#[cfg_attr(weir_skip_servers, ignore = "WEIR_TEST_SKIP_SERVERS=1: needs tansu")]
fn records_produced_to_the_test_broker_are_consumed_by_a_group() {
    let broker = Broker::shared();
    let topic = format!("smoke-{}", std::process::id());
    broker.create_topic(&topic, 4);

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for i in 0..1_000u32 {
        let key = format!("k{}", i % 37);
        let value = i.to_string();
        producer
            .send(BaseRecord::to(&topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .expect("enqueued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", format!("group-{topic}"))
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 1_000 && Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            let msg = msg.expect("no consume error");
            let value: u32 = std::str::from_utf8(msg.payload().expect("payload"))
                .expect("utf-8")
                .parse()
                .expect("number");
            seen.insert(value);
        }
    }
    assert_eq!(seen.len(), 1_000, "every produced record was consumed");
}
