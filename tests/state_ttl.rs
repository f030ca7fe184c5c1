//! A state time to live in a real job: every key of a churning input is
//! written to RocksDB with its time, and compaction drops each one whose
//! time to live passed, while a processor without one keeps them all.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use weir::{
    Context, Decoded, Discard, Job, LineSource, ProcessError, Processor, Settings, StateTtl,
    TimeDomain,
};
use weir_state::{MemoryBudget, Space, StateEnv, Store, TtlFilter};

/// Counts records per key; with `TTL`, a key's count lives 50 ms after its
/// last change.
struct Count<const TTL: bool>;

impl<const TTL: bool> Processor for Count<TTL> {
    type Key = String;
    type In = ();
    type Out = ();
    type State = u64;
    const STATE_TTL: Option<StateTtl> = if TTL {
        Some(StateTtl {
            after_ms: 50,
            domain: TimeDomain::ProcessingTime,
        })
    } else {
        None
    };

    async fn process(
        &self,
        _: &mut Context<'_, Self>,
        n: &mut u64,
        _: &(),
    ) -> Result<(), ProcessError> {
        *n += 1;
        Ok(())
    }
}

/// Runs `processor` over `keys` distinct keys, each seen twice.
fn run<P: Processor<Key = String, In = (), Out = ()>>(processor: P, dir: &Path, keys: usize) {
    let input = dir.join("in.txt");
    let text: String = (0..keys * 2).map(|i| format!("k{}\n", i / 2)).collect();
    std::fs::write(&input, text).expect("write");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(
            Job::new(processor)
                .settings(Settings {
                    partitions: 2,
                    state_dir: dir.join("state"),
                    live_actor_cap: 1_000,
                    ..Settings::default()
                })
                .source(LineSource::open(&input).expect("open"))
                .decoder(|line: &[u8]| -> Result<Decoded<String, ()>, String> {
                    Ok(Decoded {
                        key: String::from_utf8_lossy(line).into_owned(),
                        timestamp: None,
                        value: (),
                    })
                })
                .sink(Discard)
                .dead_letters(Discard)
                .run(),
        )
        .expect("the job runs");
}

/// State values in the job's RocksDB instances after a full compaction,
/// with a clock far past every value's time to live.
fn state_keys_after_compaction(dir: &Path) -> usize {
    let env = StateEnv::new(dir.join("state"), MemoryBudget { bytes: 16 << 20 }).expect("env");
    let mut n = 0;
    for p in 0..2 {
        let ttl = TtlFilter {
            after_ms: 50,
            now: Arc::new(AtomicI64::new(i64::MAX)),
        };
        let mut store = env.open_partition_with_ttl(p, Some(ttl)).expect("opens");
        store.db().flush().expect("flush");
        store.db().compact_range(None::<&[u8]>, None::<&[u8]>);
        store
            .for_each(Space::State, &mut |_, _| {
                n += 1;
                Ok(())
            })
            .expect("reads");
    }
    n
}

#[test]
fn compaction_drops_expired_state_and_keeps_state_without_a_ttl() {
    let keys = 20_000;
    let with = tempfile::tempdir().expect("tempdir");
    run(Count::<true>, with.path(), keys);
    let without = tempfile::tempdir().expect("tempdir");
    run(Count::<false>, without.path(), keys);
    let (kept_with, kept_without) = (
        state_keys_after_compaction(with.path()),
        state_keys_after_compaction(without.path()),
    );
    eprintln!("state values after compaction: {kept_with} with a TTL, {kept_without} without");
    assert_eq!(kept_without, keys, "no TTL: every key's count is kept");
    assert_eq!(kept_with, 0, "every count expired and was compacted away");
}
