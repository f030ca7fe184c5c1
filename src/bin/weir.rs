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
    /// One line per complete checkpoint: id, partitions, positions,
    /// watermark, size, age.
    List {
        /// The store: a directory or file:// URL.
        #[arg(long)]
        store: String,
    },
    /// Everything a checkpoint's manifest records, as JSON.
    Inspect {
        #[arg(long)]
        store: String,
        /// The checkpoint id.
        id: u64,
    },
}

fn age(created_at_ms: i64) -> String {
    use weir::Clock as _;
    let secs = (weir::SystemClock.now_ms() - created_at_ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn checkpoints(command: CheckpointsCommand) -> anyhow::Result<()> {
    use weir_state::snapshot::{list_checkpoints, load_manifest};
    match command {
        CheckpointsCommand::List { store } => {
            let store = weir::open_store(&store)?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>8}  {:>10}  {:>25}  {:>15}  {:>12}  {:>6}",
                "id", "partitions", "positions", "watermark", "bytes", "age"
            )?;
            for id in list_checkpoints(store.as_ref())? {
                match load_manifest(store.as_ref(), id) {
                    Ok(m) => {
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
                        writeln!(
                            out,
                            "{:>8}  {:>10}  {:>25}  {:>15}  {:>12}  {:>6}",
                            id,
                            m.partitions.len(),
                            range,
                            wm,
                            m.total_bytes(),
                            age(m.created_at_ms)
                        )?;
                    }
                    Err(e) => writeln!(out, "{id:>8}  unreadable: {e}")?,
                }
            }
        }
        CheckpointsCommand::Inspect { store, id } => {
            let store = weir::open_store(&store)?;
            let m =
                load_manifest(store.as_ref(), id).with_context(|| format!("checkpoint {id}"))?;
            let mut v = serde_json::to_value(&m)?;
            v["total_bytes"] = m.total_bytes().into();
            v["age"] = age(m.created_at_ms).into();
            serde_json::to_writer_pretty(std::io::stdout().lock(), &v)?;
            println!();
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
