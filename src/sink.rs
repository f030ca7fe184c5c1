//! Embedded sinks: JSON lines to a file or stdout, and the dead-letter file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;
use weir_actors::DeadLetter;

/// Where a job's records go.
pub trait Sink<T>: Send + 'static {
    /// Writes `items` in order.
    fn write(&mut self, items: &[T]) -> io::Result<()>;
    /// Pushes everything written so far to the underlying file or stream.
    fn flush(&mut self) -> io::Result<()>;
}

/// One JSON object per line.
pub struct JsonLines<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write + Send + 'static> JsonLines<W> {
    /// JSON lines written to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, out),
        }
    }
}

/// Creates (truncating) the file at `path` for writing.
pub fn create_file(path: impl AsRef<Path>) -> io::Result<File> {
    let path = path.as_ref();
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))
}

impl JsonLines<File> {
    /// JSON lines written to a new file at `path`.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::new(create_file(path)?))
    }
}

impl JsonLines<io::Stdout> {
    /// JSON lines written to standard output.
    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }
}

impl<T: Serialize, W: Write + Send + 'static> Sink<T> for JsonLines<W> {
    fn write(&mut self, items: &[T]) -> io::Result<()> {
        for item in items {
            serde_json::to_writer(&mut self.out, item)?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A dead letter as written to the dead-letter file: the raw input (lossy
/// UTF-8), its partition and offset (`null` when unknown), and the reason.
#[derive(Debug, Serialize)]
pub struct DeadLetterLine<'a> {
    pub input: std::borrow::Cow<'a, str>,
    pub partition: Option<u32>,
    pub offset: Option<u64>,
    pub reason: &'a str,
}

impl<'a> From<&'a DeadLetter> for DeadLetterLine<'a> {
    fn from(d: &'a DeadLetter) -> Self {
        Self {
            input: String::from_utf8_lossy(&d.raw),
            partition: d.partition,
            offset: d.position,
            reason: &d.reason,
        }
    }
}

/// The dead-letter file: one JSON line per rejected record.
pub struct DeadLetterFile<W: Write> {
    lines: JsonLines<W>,
}

impl DeadLetterFile<File> {
    /// A new dead-letter file at `path`.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            lines: JsonLines::create(path)?,
        })
    }
}

impl<W: Write + Send + 'static> Sink<DeadLetter> for DeadLetterFile<W> {
    fn write(&mut self, items: &[DeadLetter]) -> io::Result<()> {
        let lines: Vec<DeadLetterLine<'_>> = items.iter().map(DeadLetterLine::from).collect();
        self.lines.write(&lines)
    }

    fn flush(&mut self) -> io::Result<()> {
        Sink::<DeadLetterLine<'_>>::flush(&mut self.lines)
    }
}

/// Discards everything (for benchmarks of the processing path alone).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl<T> Sink<T> for Discard {
    fn write(&mut self, _: &[T]) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_lines_carry_input_partition_offset_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.dlq");
        let mut dlq = DeadLetterFile::create(&path).expect("create");
        dlq.write(&[DeadLetter {
            partition: Some(2),
            position: Some(40),
            raw: b"bad \"line\"".to_vec(),
            reason: "column 1: expected CEF".into(),
        }])
        .expect("write");
        dlq.flush().expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(v["input"], "bad \"line\"");
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 40);
        assert_eq!(v["reason"], "column 1: expected CEF");
    }
}
