//! librdkafka's mock cluster (`rdkafka::mocking`) as a test broker for
//! realistic batches: records produced in batches of thousands, lz4- and
//! zstd-compressed, are served correctly to a consumer that starts inside a
//! batch (where tansu 0.6 skips the rest of the batch), and to a consumer
//! group. It runs in-process on loopback ports, so nothing is skipped.
//!
//! Its error injection and its retention (each partition keeps at most
//! 5 MB) also show the worker's input watch: a partition whose fetches keep
//! failing is reported, made not ready, and then stops the worker; records
//! retention deleted before they were processed are reported, or refused.

mod common;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Message, Offset, TopicPartitionList};

use common::admin::{by_partition, get, scrape_until, total};
use common::broker::{Kafka, Mock};
use common::data_set;
use common::kafka::{Group, lines, produce_compressed};

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

/// Every fetch answered with Kafka's corrupt-message error (`INVALID_MSG`,
/// code 2, as for a batch that fails its CRC): both partitions have
/// records and read none, so within the stall time each is counted, logged
/// at WARN with its offset, and `/readyz` answers not ready. Once fetches
/// work again they move, and the worker is ready. A second worker, stalled
/// past `--stall-timeout`, stops with an error naming the topic, partition
/// and offset.
#[test]
fn a_partition_that_cannot_fetch_is_reported_then_stops_the_worker() {
    let mock = Mock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Group::with_topics(&mock, dir.path(), "stall", 2);
    let data = data_set(2_000, 50, 7, 0);
    let input = lines(&data.text);
    produce_compressed(&mock, &g.input, &input, None, "lz4");
    let failing = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_MSG; 1_000_000];
    mock.cluster.request_errors(RDKafkaApiKey::Fetch, &failing);

    let started = Instant::now();
    let (mut a, port) = g.start_with_admin("a", &["--stall-after", "2", "--stall-timeout", "0"]);
    let m = scrape_until(
        port,
        Duration::from_secs(60),
        "both partitions stalled",
        |m| {
            let stalls = by_partition(m, "weir_input_stalls_total");
            stalls.len() == 2 && stalls.values().all(|n| *n >= 1.0)
        },
    );
    eprintln!(
        "stalled and reported {:?} after the start",
        started.elapsed()
    );
    let stalled = by_partition(&m, "weir_input_stalled_seconds");
    assert!(
        stalled.len() == 2 && stalled.values().all(|s| *s >= 2.0),
        "{stalled:?}"
    );
    assert_eq!(total(&m, "weir_ready"), 0.0);
    assert_eq!(total(&m, "weir_records_in_total"), 0.0);
    assert!(total(&m, "weir_consumer_errors_total") >= 1.0);
    let (status, _) = get(port, "/readyz").expect("readyz answers");
    assert_eq!(status, 503, "a stalled worker is not ready");
    let log = a.log_text();
    for p in 0..2 {
        let warned = log.lines().any(|l| {
            l.contains("WARN")
                && l.contains("stalled")
                && l.contains(&format!("partition={p} "))
                && l.contains("offset=0 ")
                && l.contains("topic=stall-in")
        });
        assert!(warned, "partition {p}'s stall is logged:\n{log}");
    }

    // Fetches work again: the partitions move, and the worker is ready.
    mock.cluster.clear_request_errors(RDKafkaApiKey::Fetch);
    scrape_until(port, Duration::from_secs(60), "moving and ready", |m| {
        total(m, "weir_ready") == 1.0
            && total(m, "weir_records_in_total") as usize == input.len()
            && total(m, "weir_input_stalled_seconds") == 0.0
    });
    assert!(a.log_text().contains("the partition reads again"));
    assert!(a.signal("TERM").success(), "{}", a.log_text());

    // Stalled past the timeout: the worker stops, naming what is stuck.
    produce_compressed(&mock, &g.input, &input[..500], None, "lz4");
    mock.cluster.request_errors(RDKafkaApiKey::Fetch, &failing);
    let stopping = Instant::now();
    let mut b = g.start("b", &["--stall-after", "1", "--stall-timeout", "4"]);
    let status = b.exit_within(Duration::from_secs(90));
    eprintln!("stopped {:?} after the start", stopping.elapsed());
    mock.cluster.clear_request_errors(RDKafkaApiKey::Fetch);
    let log = b.log_text();
    assert!(
        !status.success(),
        "a worker that gave up exits non-zero:\n{log}"
    );
    assert!(
        log.contains("of topic stall-in made no progress at offset")
            && log.contains("with records to read"),
        "the error names the topic, partition and offset:\n{log}"
    );
}

/// The log start and end of `topic`'s partition 0.
fn watermarks(mock: &Mock, topic: &str) -> (i64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap())
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks")
}

/// A worker checkpoints offset N and stops; then retention (the mock
/// cluster keeps 5 MB a partition) deletes records from N on before anyone
/// read them. With `--on-offset-reset fail` the next worker exits non-zero
/// naming both offsets; by default it logs the reset at WARN with both
/// offsets, counts the skipped records, and processes the rest.
#[test]
fn records_deleted_before_they_were_processed_are_reported_or_refused() {
    let mock = Mock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Group::with_topics(&mock, dir.path(), "skip", 1);
    let data = data_set(70_000, 500, 9, 0);
    let all = lines(&data.text);
    let (first, rest) = all.split_at(300);
    produce_compressed(&mock, &g.input, first, None, "none");
    let (mut a, port) = g.start_with_admin("a", &[]);
    scrape_until(
        port,
        Duration::from_secs(60),
        "the first records committed",
        |m| {
            total(m, "weir_records_in_total") as usize == first.len()
                && by_partition(m, "weir_consumer_lag_committed_records").get("0") == Some(&0.0)
        },
    );
    assert!(a.signal("TERM").success(), "{}", a.log_text());
    let checkpointed = first.len() as i64;

    // Uncompressed, the rest is well over 5 MB: older batches go.
    produce_compressed(&mock, &g.input, rest, None, "none");
    let (low, high) = watermarks(&mock, &g.input);
    assert!(
        low > checkpointed,
        "retention removed unread records: log starts at {low}"
    );

    let mut refusing = g.start("refusing", &["--on-offset-reset", "fail"]);
    let status = refusing.exit_within(Duration::from_secs(90));
    let log = refusing.log_text();
    assert!(!status.success(), "{log}");
    let said = format!(
        "partition 0 of topic skip-in: offsets {checkpointed} to {} were never processed",
        low - 1
    );
    assert!(
        log.contains(&said) && log.contains("older than the log's start"),
        "{log}"
    );

    let (mut b, port) = g.start_with_admin("b", &[]);
    let m = scrape_until(port, Duration::from_secs(120), "the rest processed", |m| {
        total(m, "weir_records_in_total") as i64 == high - low
    });
    let skipped: Vec<(String, f64)> = m
        .iter()
        .filter(|((n, _), _)| n == "weir_input_skipped_records_total")
        .map(|((_, l), v)| (l["reason"].clone(), *v))
        .collect();
    assert!(
        skipped.contains(&("log_start".to_string(), (low - checkpointed) as f64))
            && skipped.contains(&("gap".to_string(), 0.0)),
        "{skipped:?}"
    );
    let log = b.log_text();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("older than the log's start")
            && l.contains(&format!("expected={checkpointed} "))
            && l.contains(&format!("resumed_at={low} "))),
        "the reset is logged with both offsets:\n{log}"
    );
    assert!(b.signal("TERM").success());
}
