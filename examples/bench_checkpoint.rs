//! Checkpoint benchmark: duration and size of a checkpoint, restore time,
//! and how much an incremental checkpoint uploads after touching 1 % of
//! the keys.
//!
//! ```text
//! cargo run --release --example bench_checkpoint                # 10k and 1M keys
//! cargo run --release --example bench_checkpoint -- --keys 1000000
//! ```
//! Run 1 writes one record to each of N keys (state: a count and a sum per
//! key) and ends with a checkpoint into a local snapshot store. Run 2
//! restores it, touches 1 % of the keys and checkpoints again.

use std::io;
use std::sync::Arc;

use clap::Parser;
use serde::{Deserialize, Serialize};
use weir::{
    CheckpointSettings, Context, Decoded, Discard, Job, ProcessError, Processor, Report, Settings,
    Source,
};

#[derive(Parser)]
struct Args {
    /// Keys; without it, runs 10,000 and 1,000,000.
    #[arg(long)]
    keys: Option<u64>,
    #[arg(long, default_value_t = 4)]
    partitions: u32,
}

/// Keeps a count and a sum per key.
struct Tally;

#[derive(Default, Serialize, Deserialize)]
struct Sums {
    count: u64,
    sum: u64,
}

impl Processor for Tally {
    type Key = String;
    type In = u64;
    type Out = ();
    type State = Sums;

    async fn process(
        &self,
        _: &mut Context<'_, Self>,
        s: &mut Sums,
        v: &u64,
    ) -> Result<(), ProcessError> {
        s.count += 1;
        s.sum += v;
        Ok(())
    }
}

/// Lines `key-<i> <i>` for i in `start..end` stepping by `step`.
struct Keys {
    next: u64,
    end: u64,
    step: u64,
    position: u64,
}

impl Source for Keys {
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
        use std::io::Write;
        buf.clear();
        while self.next < self.end && buf.len() < 256 * 1024 {
            writeln!(buf, "key-{:08} {}", self.next, self.next)?;
            self.next += self.step;
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let start = self.position;
        self.position += buf.len() as u64;
        Ok(Some(start))
    }

    fn describe(&self) -> String {
        "keys".into()
    }

    fn seek(&mut self, position: u64) -> io::Result<()> {
        // Each run reads its whole input: positions from the other run's
        // input do not apply.
        let _ = position;
        Ok(())
    }
}

fn decode(line: &[u8]) -> Result<Decoded<String, u64>, String> {
    let text = std::str::from_utf8(line).map_err(|e| e.to_string())?;
    let (k, v) = text.split_once(' ').ok_or("no value")?;
    Ok(Decoded {
        key: k.to_string(),
        timestamp: None,
        value: v.parse().map_err(|e| format!("bad value: {e}"))?,
    })
}

fn run(
    args: &Args,
    keys: u64,
    step: u64,
    dir: &std::path::Path,
    store: &Arc<dyn weir_state::SnapshotStore>,
) -> anyhow::Result<Report> {
    let settings = Settings {
        partitions: args.partitions,
        state_dir: dir.join("state"),
        live_actor_cap: 100_000,
        checkpoints: Some(CheckpointSettings {
            store: Arc::clone(store),
            interval: None,
            retain: 2,
            start_empty: false,
            job_id: None,
            prune_grace: weir_state::owner::DEFAULT_PRUNE_GRACE,
        }),
        ..Settings::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(
        Job::new(Tally)
            .settings(settings)
            .source(Keys {
                next: 0,
                end: keys,
                step,
                position: 0,
            })
            .decoder(decode)
            .sink(Discard)
            .dead_letters(Discard)
            .run(),
    )?)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn bench(args: &Args, keys: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn weir_state::SnapshotStore> =
        Arc::new(weir_state::LocalDirStore::new(dir.path().join("store"))?);
    let full = run(args, keys, 1, dir.path(), &store)?;
    let c = &full.checkpoints;
    println!(
        "keys={keys} full checkpoint: duration_ms={:.0} size_mib={:.2} uploaded_mib={:.2} (run: {} records in {:.2}s)",
        c.last_duration.as_secs_f64() * 1000.0,
        mib(c.last_total_bytes),
        mib(c.last_uploaded_bytes),
        full.records,
        full.elapsed.as_secs_f64()
    );
    let touched = run(args, keys, 100, dir.path(), &store)?;
    let c = &touched.checkpoints;
    println!(
        "keys={keys} restore: seconds={:.3} (until running: {:.3}) restored_mib={:.2}; after touching 1% ({} keys): checkpoint duration_ms={:.0} size_mib={:.2} uploaded_mib={:.2} uploaded_fraction={:.3}",
        touched.recovery.elapsed.as_secs_f64(),
        touched.startup.as_secs_f64(),
        mib(touched.recovery.bytes),
        touched.records,
        c.last_duration.as_secs_f64() * 1000.0,
        mib(c.last_total_bytes),
        mib(c.last_uploaded_bytes),
        c.last_uploaded_bytes as f64 / c.last_total_bytes.max(1) as f64,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for keys in args.keys.map_or(vec![10_000, 1_000_000], |k| vec![k]) {
        bench(&args, keys)?;
    }
    Ok(())
}
