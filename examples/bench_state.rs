//! State benchmarks: the time to re-shard a checkpoint, and the state size
//! of a long run whose keys churn, with and without a state time to live.
//!
//! ```text
//! cargo run --release --example bench_state -- reshard [--keys 1000000] [--from 4] [--to 8]
//! cargo run --release --example bench_state -- churn [--events 20000000] [--ttl]
//! ```
//!
//! `reshard` runs a job over `--keys` keys, each with a state and a timer,
//! to a checkpoint at `--from` partitions, then re-shards it to `--to`
//! partitions with `weir::checkpoint::reshard` and prints the time.
//!
//! `churn` runs a job whose keys come and go: event `i` (1 ms of event time
//! apart) has a key drawn from a window of 10,000 keys that slides by one
//! key every 10 events, so each key is busy for about 100 s of event time
//! and then never seen again. The processor keeps a count per key and
//! never deletes it; with `--ttl` its state lives 60 s of event time after
//! the key's last record. Prints the size of the state's RocksDB files at
//! every tenth of the input; the job checkpoints every second, which
//! flushes the memtables as a running job's checkpoints do. Figures go to
//! BENCHMARKS.md.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use weir::{
    CheckpointSettings, Context, Decoded, Discard, Job, LineSource, ProcessError, Processor,
    Settings, Source, StateTtl, TimeDomain, Timer,
};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Time to re-shard a checkpoint of `--keys` keys.
    Reshard {
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        #[arg(long, default_value_t = 4)]
        from: u32,
        #[arg(long, default_value_t = 8)]
        to: u32,
    },
    /// State size over a long run of churning keys.
    Churn {
        #[arg(long, default_value_t = 20_000_000)]
        events: u64,
        /// Give the state a time to live of 60 s of event time.
        #[arg(long)]
        ttl: bool,
    },
}

/// A count per key, kept forever, with one processing-time timer per key
/// an hour ahead (so the checkpoint holds timers to move too).
struct Tally;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Count {
    records: u64,
    last: i64,
}

impl Processor for Tally {
    type Key = String;
    type In = ();
    type Out = ();
    type State = Count;

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        state: &mut Count,
        _: &(),
    ) -> Result<(), ProcessError> {
        state.records += 1;
        let at = ctx.processing_time() + 3_600_000;
        ctx.set_timer("expire", at, TimeDomain::ProcessingTime);
        Ok(())
    }

    async fn on_timer(
        &self,
        _: &mut Context<'_, Self>,
        _: &mut Count,
        _: Timer,
    ) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// A count and the last event time per key, kept until it expires: 60 s of
/// event time after the key's last record when `TTL`.
struct LastSeen<const TTL: bool>;

impl<const TTL: bool> Processor for LastSeen<TTL> {
    type Key = String;
    type In = ();
    type Out = ();
    type State = Count;
    const STATE_TTL: Option<StateTtl> = if TTL {
        Some(StateTtl {
            after_ms: 60_000,
            domain: TimeDomain::EventTime,
        })
    } else {
        None
    };

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        state: &mut Count,
        _: &(),
    ) -> Result<(), ProcessError> {
        state.records += 1;
        state.last = ctx.timestamp().unwrap_or(i64::MIN);
        Ok(())
    }
}

/// `key rt` lines.
fn decode(line: &[u8]) -> Result<Decoded<String, ()>, String> {
    let text = std::str::from_utf8(line).map_err(|e| e.to_string())?;
    let (key, rt) = text.split_once(' ').ok_or("no time")?;
    Ok(Decoded {
        key: key.to_string(),
        timestamp: Some(rt.trim().parse().map_err(|_| "bad time")?),
        value: (),
    })
}

const START: i64 = 1_767_225_600_000;

/// Bytes of the files in `dir` and below.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn reshard(keys: u64, from: u32, to: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("keys.txt");
    {
        use std::io::Write;
        let mut out = io::BufWriter::new(std::fs::File::create(&input)?);
        for i in 0..keys {
            writeln!(out, "key-{i:09} {}", START + i as i64)?;
        }
    }
    let store = weir::open_store(&dir.path().join("store").display().to_string())?;
    let settings = Settings {
        partitions: from,
        state_dir: dir.path().join("state"),
        checkpoints: Some(CheckpointSettings {
            interval: None,
            job_id: Some("tally".into()),
            ..CheckpointSettings::new(Arc::clone(&store))
        }),
        ..Settings::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(
        Job::new(Tally)
            .settings(settings)
            .source(LineSource::open(&input)?)
            .decoder(decode)
            .sink(Discard)
            .dead_letters(Discard)
            .run(),
    )?;
    let plan = weir::checkpoint::reshard::Reshard {
        job: Some("tally".into()),
        topic: None,
        to,
        work_dir: dir.path().join("work"),
    };
    let started = Instant::now();
    let done = weir::checkpoint::reshard::reshard(&store, &plan)?;
    println!(
        "reshard keys={} timers={} moved={} from={} to={} read_bytes={} job_seconds={:.3} reshard_seconds={:.3} keys_per_sec={:.0}",
        done.keys,
        done.timers,
        done.moved,
        done.from,
        done.to,
        done.read_bytes,
        report.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        done.keys as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The churning input, generated as it is read.
struct Churn {
    next: u64,
    events: u64,
    position: u64,
    read: Arc<AtomicU64>,
}

impl Source for Churn {
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
        use std::io::Write;
        if self.next >= self.events {
            return Ok(None);
        }
        buf.clear();
        let at = self.position;
        while self.next < self.events && buf.len() < 256 * 1024 {
            let i = self.next;
            // Knuth's multiplicative hash spreads picks over the window.
            let pick = (i.wrapping_mul(2_654_435_761) >> 7) % 10_000;
            writeln!(buf, "k{} {}", i / 10 + pick, START + i as i64)?;
            self.next += 1;
        }
        self.position += buf.len() as u64;
        self.read.store(self.next, Ordering::Relaxed);
        Ok(Some(at))
    }

    fn describe(&self) -> String {
        "churning keys".into()
    }
}

fn churn<P>(processor: P, events: u64, ttl: bool) -> anyhow::Result<()>
where
    P: Processor<Key = String, In = (), Out = ()>,
{
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    // Checkpoints every second flush the memtables, as a running job's do.
    let store = weir::open_store(&dir.path().join("store").display().to_string())?;
    let settings = Settings {
        partitions: 4,
        state_dir: state.clone(),
        checkpoints: Some(CheckpointSettings {
            interval: Some(Duration::from_secs(1)),
            ..CheckpointSettings::new(store)
        }),
        ..Settings::default()
    };
    let read = Arc::new(AtomicU64::new(0));
    let source = Churn {
        next: 0,
        events,
        position: 0,
        read: Arc::clone(&read),
    };
    let watcher = {
        let read = Arc::clone(&read);
        let state = state.clone();
        std::thread::spawn(move || {
            let mut tenth = 1;
            while tenth <= 10 {
                if read.load(Ordering::Relaxed) >= events * tenth / 10 {
                    println!(
                        "ttl={} events={} distinct_keys={} state_mib={:.1}",
                        if ttl { "on" } else { "off" },
                        events * tenth / 10,
                        events * tenth / 10 / 10 + 10_000,
                        dir_bytes(&state) as f64 / (1 << 20) as f64
                    );
                    tenth += 1;
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(
        Job::new(processor)
            .settings(settings)
            .source(source)
            .decoder(decode)
            .sink(Discard)
            .dead_letters(Discard)
            .run(),
    )?;
    let _ = watcher.join();
    println!(
        "ttl={} events={} seconds={:.3} records_per_sec={:.0} final_state_mib={:.1}",
        if ttl { "on" } else { "off" },
        report.records,
        report.elapsed.as_secs_f64(),
        report.records_per_sec(),
        dir_bytes(&state) as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Args::parse().bench {
        Bench::Reshard { keys, from, to } => reshard(keys, from, to),
        Bench::Churn { events, ttl: true } => churn(LastSeen::<true>, events, true),
        Bench::Churn { events, ttl: false } => churn(LastSeen::<false>, events, false),
    }
}
