//! The `weir` command line.

use std::io::{BufRead, BufWriter, Write};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "weir", version, about = "weir stream processor tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CEF tools.
    Cef {
        #[command(subcommand)]
        command: CefCommand,
    },
    /// Inspect the checkpoints in a snapshot store.
    Checkpoints {
        #[command(subcommand)]
        command: CheckpointsCommand,
    },
}

#[derive(Subcommand)]
enum CheckpointsCommand {
    /// For each checkpoint area (a job, or one partition of a Kafka job):
    /// the job id, the owner epoch, then one line per checkpoint: id,
    /// epoch, partitions, positions, watermark, size, age, and whether its
    /// files are present with the right sizes.
    List {
        /// The store: a directory, file:// or s3:// URL.
        #[arg(long)]
        store: String,
        /// Only this job's checkpoints.
        #[arg(long)]
        job: Option<String>,
    },
    /// Everything a checkpoint's manifest records, as JSON.
    Inspect {
        #[arg(long)]
        store: String,
        /// The area holding it (as `list` prints it); needed when the id is
        /// in several.
        #[arg(long)]
        area: Option<String>,
        /// The checkpoint id.
        id: u64,
    },
    /// Turn a job's newest usable checkpoint at N partitions into one at M:
    /// every key's state and timers move to the partition its key hashes to
    /// under M. Stop the job first (a job still running is fenced: what it
    /// checkpoints afterwards is never restored).
    ///
    /// File mode: then start the job with the same --checkpoint-store, the
    /// same --output, a new --state-dir and --partitions M; it resumes
    /// where it stopped. Kafka mode (a topic grown to M partitions): the old
    /// partitions keep their offsets, the new ones are read from their
    /// beginning; start the workers with a new --state-dir. Run it again
    /// after an interruption: it converges.
    Reshard {
        /// The store: a directory, file:// or s3:// URL.
        #[arg(long)]
        store: String,
        /// The partition count to end with.
        #[arg(long)]
        to_partitions: u32,
        /// The job (as `list` prints it); needed when the store holds several.
        #[arg(long)]
        job: Option<String>,
        /// Kafka mode: the input topic; needed when the job has several.
        #[arg(long)]
        topic: Option<String>,
        /// A local folder for the state while it moves (default: a new
        /// folder in the system's temporary directory).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
    },
}

fn age(created_at_ms: i64) -> String {
    use weir::Clock as _;
    let secs = weir::SystemClock
        .now_ms()
        .saturating_sub(created_at_ms)
        .max(0)
        / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The checkpoint areas of a store (folders holding `checkpoints/` or
/// `owner/`), under `within`.
fn areas(store: &dyn weir_state::SnapshotStore, within: &str) -> anyhow::Result<Vec<String>> {
    let mut found = std::collections::BTreeSet::new();
    for key in store.list(within)? {
        for marker in ["checkpoints/", "owner/"] {
            let area = if key.starts_with(marker) {
                Some(String::new())
            } else {
                key.find(&format!("/{marker}"))
                    .map(|i| key[..i].to_string())
            };
            if let Some(area) = area {
                found.insert(area);
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// The job an area belongs to, from its path.
fn job_of(area: &str) -> String {
    match area.strip_prefix("jobs/") {
        Some(rest) => rest.split('/').next().unwrap_or(rest).to_string(),
        None => "(none: written before job ids)".to_string(),
    }
}

fn list_area(
    out: &mut impl Write,
    root: &std::sync::Arc<dyn weir_state::SnapshotStore>,
    area: &str,
) -> anyhow::Result<()> {
    use weir_state::owner::{eligibility, epoch_of, load_epochs};
    use weir_state::snapshot::{list_checkpoints, load_manifest, verify_present};
    let store = weir_state::Prefixed::new(std::sync::Arc::clone(root), area);
    let epochs = load_epochs(&store)?;
    let owner = match epochs.last() {
        Some(e) => format!(
            "epoch {} (taken by {}, {} ago)",
            e.epoch,
            e.owner,
            age(e.taken_at_ms)
        ),
        None => "no owner epoch".to_string(),
    };
    let shown = if area.is_empty() { "/" } else { area };
    writeln!(out, "job {}  area {shown}  {owner}", job_of(area))?;
    writeln!(
        out,
        "{:>20}  {:>6}  {:>10}  {:>25}  {:>15}  {:>12}  {:>6}  files",
        "id", "epoch", "partitions", "positions", "watermark", "bytes", "age"
    )?;
    let ids = list_checkpoints(&store)?;
    let split = eligibility(&ids, &epochs);
    for id in ids {
        let m = match load_manifest(&store, id) {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "{id:>20}  unreadable: {e}")?;
                continue;
            }
        };
        let positions: Vec<u64> = m.partitions.iter().map(|p| p.position).collect();
        let (lo, hi) = (
            positions.iter().min().copied().unwrap_or(0),
            positions.iter().max().copied().unwrap_or(0),
        );
        let wm = m
            .partitions
            .iter()
            .map(|p| p.watermark)
            .min()
            .unwrap_or(i64::MIN);
        let range = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}..{hi}")
        };
        let mut files = match verify_present(&store, &m) {
            Ok(()) => "present".to_string(),
            Err(e) => format!("DAMAGED: {e}"),
        };
        if let Some((_, why)) = split.excluded.iter().find(|(x, _)| *x == id) {
            files.push_str(&format!(" (not restorable: {why})"));
        }
        if let Some(other) = m.job_id.as_deref().filter(|j| *j != job_of(area)) {
            files.push_str(&format!(" (manifest names job {other})"));
        }
        writeln!(
            out,
            "{:>20}  {:>6}  {:>10}  {:>25}  {:>15}  {:>12}  {:>6}  {files}",
            id,
            epoch_of(id),
            m.partitions.len(),
            range,
            wm,
            m.total_bytes(),
            age(m.created_at_ms)
        )?;
    }
    Ok(())
}

fn checkpoints(command: CheckpointsCommand) -> anyhow::Result<()> {
    use weir_state::snapshot::{list_checkpoints, load_manifest};
    match command {
        CheckpointsCommand::List { store, job } => {
            let root = weir::open_store(&store)?;
            let within = match &job {
                Some(j) => format!("{}/", weir_state::owner::job_prefix(j)),
                None => String::new(),
            };
            let found = areas(root.as_ref(), &within)?;
            if found.is_empty() {
                anyhow::bail!(
                    "{} holds no checkpoints{}",
                    root.describe(),
                    job.map(|j| format!(" of job {j}")).unwrap_or_default()
                );
            }
            let mut out = std::io::stdout().lock();
            for (i, area) in found.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                list_area(&mut out, &root, area)?;
            }
        }
        CheckpointsCommand::Inspect { store, area, id } => {
            let root = weir::open_store(&store)?;
            let candidates = match area {
                Some(a) => vec![a],
                None => areas(root.as_ref(), "")?
                    .into_iter()
                    .filter(|a| {
                        let s = weir_state::Prefixed::new(std::sync::Arc::clone(&root), a);
                        list_checkpoints(&s).is_ok_and(|ids| ids.contains(&id))
                    })
                    .collect(),
            };
            let area = match candidates.as_slice() {
                [one] => one.clone(),
                [] => anyhow::bail!("no checkpoint {id} in {}", root.describe()),
                many => anyhow::bail!(
                    "checkpoint {id} is in several areas, give --area: {}",
                    many.join(", ")
                ),
            };
            let s = weir_state::Prefixed::new(std::sync::Arc::clone(&root), &area);
            let m = load_manifest(&s, id).with_context(|| format!("checkpoint {id} in {area}"))?;
            let mut v = serde_json::to_value(&m)?;
            v["area"] = area.into();
            v["total_bytes"] = m.total_bytes().into();
            v["age"] = age(m.created_at_ms).into();
            serde_json::to_writer_pretty(std::io::stdout().lock(), &v)?;
            println!();
        }
        CheckpointsCommand::Reshard {
            store,
            to_partitions,
            job,
            topic,
            work_dir,
        } => {
            let root = weir::open_store(&store)?;
            let work_dir = work_dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("weir-reshard-{}", std::process::id()))
            });
            let plan = weir::checkpoint::reshard::Reshard {
                job,
                topic,
                to: to_partitions,
                work_dir,
            };
            let done = weir::checkpoint::reshard::reshard(&root, &plan)?;
            let mode = match &done.layout {
                weir::checkpoint::reshard::Layout::File => "file".to_string(),
                weir::checkpoint::reshard::Layout::Kafka { topic } => {
                    format!("kafka topic={topic}")
                }
            };
            for (area, id) in &done.written {
                println!("wrote checkpoint {id} in {area}");
            }
            println!(
                "resharded job={} mode={mode} from={} to={} keys={} moved={} timers={} read_bytes={} seconds={:.3}",
                done.job,
                done.from,
                done.to,
                done.keys,
                done.moved,
                done.timers,
                done.read_bytes,
                done.elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum CefCommand {
    /// Decode CEF lines from stdin into one JSON object per line on stdout.
    /// An undecodable line (one that is not UTF-8 included) prints
    /// {"error": "...", "line": n} and decoding goes on.
    Decode,
}

fn decode_stdin() -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut line = Vec::new();
    let mut reader = std::io::BufReader::new(stdin);
    let mut n = 0u64;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        n += 1;
        // Not UTF-8 is an error for this line, as in a job: bytes are never
        // replaced.
        match weir::cef::decode_bytes(&line) {
            Ok(ev) => weir::cef::write_json(&ev, &mut out)?,
            Err(e) => {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({"error": e.to_string(), "line": n}),
                )?;
            }
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Cef {
            command: CefCommand::Decode,
        } => decode_stdin(),
        Command::Checkpoints { command } => checkpoints(command),
    }
}
