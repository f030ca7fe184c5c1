//! Embedded sinks: JSON lines to a file or stdout, and the dead-letter file.
//!
//! File sinks take part in checkpoints: [`Sink::commit`] makes everything
//! written durable and returns the file's length, which the checkpoint
//! records; after a crash, [`Sink::rewind`] cuts the file back to that
//! length before input is replayed, so the file holds each output exactly
//! once. Sinks that cannot rewind (stdout) are at-least-once.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use weir_actors::DeadLetter;

/// Where a job's records go.
pub trait Sink<T>: Send + 'static {
    /// Writes `items` in order.
    fn write(&mut self, items: &[T]) -> io::Result<()>;

    /// Makes everything written so far durable. Returns the durable length
    /// for sinks that can [`rewind`](Sink::rewind), `None` for others.
    fn commit(&mut self) -> io::Result<Option<u64>>;

    /// Cuts the output back to `len` (a length `commit` returned), before a
    /// replay. Sinks that cannot rewind accept only 0 and do nothing.
    fn rewind(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Ok(())
    }
}

/// One JSON object per line, to a file or any writer.
pub struct JsonLines {
    out: BufWriter<Box<dyn Write + Send>>,
    file: Option<(File, PathBuf)>,
    len: u64,
}

impl JsonLines {
    /// JSON lines written to `out` (not rewindable).
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, Box::new(out)),
            file: None,
            len: 0,
        }
    }

    /// JSON lines written to standard output.
    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }

    /// JSON lines appended to the file at `path` (created when missing).
    /// The job rewinds it to its checkpointed length, or empties it on a
    /// fresh start, before writing.
    pub fn file(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
            })?;
        let len = file.seek(SeekFrom::End(0))?;
        let writer = file.try_clone()?;
        Ok(Self {
            out: BufWriter::with_capacity(64 * 1024, Box::new(writer)),
            file: Some((file, path)),
            len,
        })
    }

    fn write_one<T: Serialize>(&mut self, item: &T) -> io::Result<()> {
        let mut counter = Counting {
            inner: &mut self.out,
            n: 0,
        };
        serde_json::to_writer(&mut counter, item)?;
        counter.write_all(b"\n")?;
        self.len += counter.n;
        Ok(())
    }
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Serialize> Sink<T> for JsonLines {
    fn write(&mut self, items: &[T]) -> io::Result<()> {
        items.iter().try_for_each(|item| self.write_one(item))
    }

    fn commit(&mut self) -> io::Result<Option<u64>> {
        self.out.flush()?;
        match &self.file {
            Some((file, _)) => {
                file.sync_data()?;
                Ok(Some(self.len))
            }
            None => Ok(None),
        }
    }

    fn rewind(&mut self, len: u64) -> io::Result<()> {
        self.out.flush()?;
        let Some((file, path)) = &mut self.file else {
            return if len == 0 {
                Ok(())
            } else {
                Err(io::Error::other("this sink cannot rewind"))
            };
        };
        let actual = file.metadata()?.len();
        if actual < len {
            return Err(io::Error::other(format!(
                "{} holds {actual} bytes but the checkpoint recorded {len}: output was lost",
                path.display()
            )));
        }
        file.set_len(len)?;
        file.sync_data()?;
        // The writer shares the file's offset: move it to the new end.
        file.seek(SeekFrom::Start(len))?;
        self.len = len;
        Ok(())
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
pub struct DeadLetterFile {
    lines: JsonLines,
}

impl DeadLetterFile {
    /// The dead-letter file at `path` (see [`JsonLines::file`]).
    pub fn file(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            lines: JsonLines::file(path)?,
        })
    }
}

impl Sink<DeadLetter> for DeadLetterFile {
    fn write(&mut self, items: &[DeadLetter]) -> io::Result<()> {
        items
            .iter()
            .try_for_each(|d| self.lines.write_one(&DeadLetterLine::from(d)))
    }

    fn commit(&mut self) -> io::Result<Option<u64>> {
        Sink::<()>::commit(&mut self.lines)
    }

    fn rewind(&mut self, len: u64) -> io::Result<()> {
        Sink::<()>::rewind(&mut self.lines, len)
    }
}

/// Discards everything (for benchmarks of the processing path alone).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl<T> Sink<T> for Discard {
    fn write(&mut self, _: &[T]) -> io::Result<()> {
        Ok(())
    }
    fn commit(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_lines_carry_input_partition_offset_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.dlq");
        let mut dlq = DeadLetterFile::file(&path).expect("create");
        dlq.write(&[DeadLetter {
            partition: Some(2),
            position: Some(40),
            raw: b"bad \"line\"".to_vec(),
            reason: "column 1: expected CEF".into(),
        }])
        .expect("write");
        dlq.commit().expect("commit");
        let text = std::fs::read_to_string(&path).expect("read");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(v["input"], "bad \"line\"");
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 40);
        assert_eq!(v["reason"], "column 1: expected CEF");
    }

    #[test]
    fn file_sink_commits_lengths_and_rewinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let mut sink = JsonLines::file(&path).expect("open");
        Sink::<u32>::rewind(&mut sink, 0).expect("fresh start");
        sink.write(&[1u32, 22]).expect("write");
        let len = Sink::<u32>::commit(&mut sink)
            .expect("commit")
            .expect("a file has a length");
        assert_eq!(len, 5);
        sink.write(&[333u32]).expect("write");
        Sink::<u32>::commit(&mut sink).expect("commit");
        drop(sink);

        // After a crash: reopen, rewind to the checkpointed length, replay.
        let mut sink = JsonLines::file(&path).expect("reopen");
        Sink::<u32>::rewind(&mut sink, len).expect("rewind");
        sink.write(&[333u32]).expect("write");
        Sink::<u32>::commit(&mut sink).expect("commit");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "1\n22\n333\n"
        );

        let mut sink = JsonLines::file(&path).expect("reopen");
        let err = Sink::<u32>::rewind(&mut sink, 1_000).expect_err("longer than the file");
        assert!(err.to_string().contains("output was lost"), "{err}");
        assert!(Sink::<u32>::rewind(&mut JsonLines::stdout(), 3).is_err());
    }
}
