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
}

#[derive(Subcommand)]
enum CefCommand {
    /// Decode CEF lines from stdin into one JSON object per line on stdout.
    /// An undecodable line prints {"error": "...", "line": n} and decoding
    /// goes on.
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
        let text = String::from_utf8_lossy(&line);
        match weir::cef::decode(&text) {
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
    }
}
