//! A processor that panics on one key, in a file job and in a Kafka job
//! (librdkafka's mock cluster): the job stops within seconds with an error
//! that names the processor, the call, the key, the partition and the
//! position, rather than hanging or running on without the partition.

mod common;

use std::time::{Duration, Instant};

use common::broker::{Kafka, Mock};
use weir::kafka::{KafkaSettings, KafkaSource};
use weir::{
    CheckpointSettings, Context, DeadLetterFile, Job, JsonLines, LineSource, ProcessError,
    Processor, Settings, open_store,
};

/// Counts records per key, and panics on the key `boom`.
struct Boom;

impl Processor for Boom {
    type Key = String;
    type In = ();
    type Out = String;
    type State = u64;

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        n: &mut u64,
        _: &(),
    ) -> Result<(), ProcessError> {
        assert_ne!(ctx.key(), "boom", "the processor broke on purpose");
        *n += 1;
        ctx.emit(format!("{} {n}", ctx.key()));
        Ok(())
    }
}

/// 2,000 lines over 50 keys, with `boom` at line 1,234.
fn lines() -> Vec<String> {
    (0..2_000)
        .map(|i| {
            let key = if i == 1_234 {
                "boom".to_string()
            } else {
                format!("k{}", i % 50)
            };
            format!("CEF:0|V|P|1|100|Login|5|src={key} rt=1767225600000")
        })
        .collect()
}

/// The error a job started at `started` stopped with; it must have
/// stopped, and failed.
fn stopped_with(
    result: Result<weir::Result<weir::Report>, tokio::time::error::Elapsed>,
    started: Instant,
) -> String {
    let error = match result {
        Err(_) => panic!("the job ran on for {:?} after the panic", started.elapsed()),
        Ok(Ok(report)) => panic!("the job succeeded: {report:?}"),
        Ok(Err(e)) => e.to_string(),
    };
    eprintln!("stopped after {:?}: {error}", started.elapsed());
    error
}

/// The error names everything an operator needs to find the record.
fn assert_names_the_panic(error: &str) {
    for part in [
        "Boom::process",
        "panicked on key \"boom\"",
        "in partition",
        "at position",
        "the processor broke on purpose",
    ] {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
}

#[test]
fn a_file_job_stops_at_once_when_the_processor_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.cef");
    std::fs::write(&input, lines().join("\n")).expect("write");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let result = runtime.block_on(async {
        let job = Job::new(Boom)
            .settings(Settings {
                partitions: 3,
                state_dir: dir.path().join("state"),
                ..Settings::default()
            })
            .source(LineSource::open(&input).expect("open"))
            .decoder(common::by_src)
            .sink(JsonLines::file(dir.path().join("out.jsonl")).expect("sink"))
            .dead_letters(DeadLetterFile::file(dir.path().join("out.dlq")).expect("dlq"));
        tokio::time::timeout(Duration::from_secs(30), job.run()).await
    });
    let error = stopped_with(result, started);
    assert_names_the_panic(&error);
    // Line 1,234 starts at byte 1,234 lines in.
    let position: usize = lines()[..1_234].iter().map(|l| l.len() + 1).sum();
    assert!(
        error.contains(&format!("at position {position}")),
        "{error}"
    );
}

#[test]
fn a_kafka_job_stops_at_once_when_the_processor_panics() {
    let mock = Mock::new();
    mock.create_topic("in", 3);
    let lines = lines();
    let raw: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    common::kafka::produce(&mock, "in", &raw, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kafka = KafkaSettings::new(&mock.bootstrap(), "in", "out", "panics");
    kafka.dead_letter_topic = Some("dlq".into());
    let settings = Settings {
        state_dir: dir.path().join("state"),
        checkpoints: Some(CheckpointSettings {
            store: open_store(dir.path().join("store").to_str().expect("utf-8")).expect("store"),
            interval: Some(Duration::from_millis(200)),
            retain: 2,
            start_empty: false,
            job_id: None,
            prune_grace: Duration::from_secs(60),
        }),
        ..Settings::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let result = runtime.block_on(async {
        let job = Job::new(Boom)
            .settings(settings)
            .source(KafkaSource::new(kafka))
            .decoder(common::by_src);
        tokio::time::timeout(Duration::from_secs(60), job.run()).await
    });
    let error = stopped_with(result, started);
    assert_names_the_panic(&error);
}

#[test]
fn with_the_dead_letter_policy_a_file_job_goes_on_without_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.cef");
    std::fs::write(&input, lines().join("\n")).expect("write");
    let out = dir.path().join("out.jsonl");
    let dlq = dir.path().join("out.dlq");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let report = runtime
        .block_on(
            Job::new(Boom)
                .settings(Settings {
                    partitions: 3,
                    state_dir: dir.path().join("state"),
                    on_panic: weir::OnPanic::DeadLetter,
                    ..Settings::default()
                })
                .source(LineSource::open(&input).expect("open"))
                .decoder(common::by_src)
                .sink(JsonLines::file(&out).expect("sink"))
                .dead_letters(DeadLetterFile::file(&dlq).expect("dlq"))
                .run(),
        )
        .expect("the job goes on past the panic");
    assert_eq!(report.records, 2_000);
    // Every other key's count, in order: the outputs of every line but
    // the one that panicked.
    let mut want: Vec<String> = Vec::new();
    let mut counts = std::collections::HashMap::new();
    for (i, _) in lines().iter().enumerate().filter(|(i, _)| *i != 1_234) {
        let key = format!("k{}", i % 50);
        let n = counts.entry(key.clone()).or_insert(0u64);
        *n += 1;
        want.push(format!("{key} {n}"));
    }
    let mut got: Vec<String> = common::read_json_lines(&out)
        .into_iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let dead = common::read_json_lines(&dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0]["reason"].as_str().expect("reason");
    assert!(reason.starts_with("panic: "), "{reason}");
    assert_names_the_panic(reason);
}
