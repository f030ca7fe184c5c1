//! librdkafka's mock cluster (`rdkafka::mocking`) as a test broker for
//! realistic batches: records produced in batches of thousands, lz4- and
//! zstd-compressed, are served correctly to a consumer that starts inside a
//! batch (where tansu 0.6 skips the rest of the batch), and to a consumer
//! group. It runs in-process on loopback ports, so nothing is skipped.

mod common;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const RECORDS: i64 = 20_000;

fn produce(bootstrap: &str, topic: &str, codec: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .create()
        .expect("producer");
    for i in 0..RECORDS {
        let value = format!("record {i}");
        let record = BaseRecord::<(), str>::to(topic)
            .partition(0)
            .payload(&value);
        common::kafka::send_waiting(&producer, record);
    }
    producer.flush(Duration::from_secs(30)).expect("produced");
}

/// Reads partition 0 of `topic` from `start` to the end; returns the record
/// numbers in the order they came.
fn read_from(bootstrap: &str, topic: &str, start: i64) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{topic}-{start}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(start))
        .expect("offset");
    consumer.assign(&tpl).expect("assign");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < (RECORDS - start) as usize && Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            let msg = msg.expect("no consume error");
            let text = std::str::from_utf8(msg.payload().expect("payload")).expect("utf-8");
            let n: i64 = text
                .strip_prefix("record ")
                .and_then(|n| n.parse().ok())
                .expect("a record number");
            assert_eq!(n, msg.offset(), "a record's number is its offset");
            seen.push(n);
        }
    }
    seen
}

#[test]
fn the_mock_cluster_serves_fetches_from_inside_compressed_batches() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    for codec in ["lz4", "zstd", "gzip", "snappy"] {
        let topic = format!("batches-{codec}");
        cluster.create_topic(&topic, 1, 1).expect("topic");
        produce(&bootstrap, &topic, codec);
        // From the start, and from offsets that are (with batches of
        // thousands) inside a batch: every record from there, in order.
        for start in [0, 1, 4_321, RECORDS - 7] {
            let seen = read_from(&bootstrap, &topic, start);
            let want: Vec<i64> = (start..RECORDS).collect();
            assert!(
                seen == want,
                "{codec} from {start}: {} records, first {:?}",
                seen.len(),
                seen.first()
            );
        }
    }
}
