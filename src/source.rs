//! Embedded sources: text lines from a file or stdin (the CEF generator is
//! in [`crate::cef`]).
//!
//! A source hands out chunks of whole lines together with the position (byte
//! offset in the input) of the chunk's first byte, so every record has a
//! position a checkpoint can record and a restart can seek back to.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

/// Bytes a source reads at a time.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// A finite or endless input of text lines.
pub trait Source: Send + 'static {
    /// Replaces `buf`'s contents with whole lines (each ending in `\n`,
    /// except perhaps the input's last) and returns the position of the
    /// first byte, or `None` at the end of the input.
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<u64>>;

    /// What this source reads, for logs and errors.
    fn describe(&self) -> String;

    /// Bounds the bytes of one line: a line longer than `max` must not be
    /// buffered whole. A source that honours it hands such a line out as a
    /// chunk of its own holding only its first `max` bytes, and says so
    /// through [`cut_line`](Source::cut_line). (Lines between `max` and
    /// `max` plus a read may still arrive whole; the job rejects those.)
    fn bound_lines(&mut self, max: usize) {
        let _ = max;
    }

    /// Whether the chunk last handed out is one line cut at the bound:
    /// then its full length in the input, its line end included.
    fn cut_line(&self) -> Option<u64> {
        None
    }

    /// Moves to `position` (a position a chunk started at, or the end of
    /// the last chunk), for resuming from a checkpoint. Sources that cannot
    /// seek accept only 0 at the start.
    fn seek(&mut self, position: u64) -> io::Result<()> {
        if position == 0 {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} cannot resume from position {position}", self.describe()),
            ))
        }
    }
}

/// Lines from any reader, split into chunks at line ends.
pub struct LineSource<R> {
    inner: R,
    name: String,
    seek: Option<fn(&mut R, u64) -> io::Result<()>>,
    pending: Vec<u8>,
    position: u64,
    eof: bool,
    /// Longest line buffered whole.
    max_line: usize,
    /// The full length of the line the last chunk cut.
    cut: Option<u64>,
    /// `pending` may hold whole lines (read with the end of a cut line).
    pending_lines: bool,
}

impl<R: Read + Send + 'static> LineSource<R> {
    /// Lines read from `inner`; `name` appears in logs and errors.
    pub fn new(inner: R, name: impl Into<String>) -> Self {
        Self {
            inner,
            name: name.into(),
            seek: None,
            pending: Vec::new(),
            position: 0,
            eof: false,
            max_line: usize::MAX,
            cut: None,
            pending_lines: false,
        }
    }
}

impl LineSource<File> {
    /// Lines of the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open input {}: {e}", path.display()),
            )
        })?;
        let mut source = Self::new(file, path.display().to_string());
        source.seek = Some(|f, pos| f.seek(io::SeekFrom::Start(pos)).map(|_| ()));
        Ok(source)
    }
}

impl<R: Read> LineSource<R> {
    /// `buf` holds the start of a line (at `start`) longer than the bound:
    /// keeps its first `max_line` bytes and reads on, discarding, to its
    /// end. What follows the line end is kept for the next chunk.
    fn cut_long_line(&mut self, buf: &mut Vec<u8>, start: u64) -> io::Result<u64> {
        let mut len = buf.len() as u64;
        buf.truncate(self.max_line);
        let mut scratch = vec![0; CHUNK_BYTES];
        loop {
            let n = match self.inner.read(&mut scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The job fails; a restart seeks back to its checkpoint.
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &scratch[..n]) {
                len += i as u64 + 1;
                self.pending.extend_from_slice(&scratch[i + 1..n]);
                self.pending_lines = true;
                break;
            }
            len += n as u64;
        }
        self.position = start + len;
        self.cut = Some(len);
        Ok(start)
    }
}

impl LineSource<io::Stdin> {
    /// Lines of standard input.
    pub fn stdin() -> Self {
        Self::new(io::stdin(), "stdin")
    }
}

impl<R: Read + Send + 'static> Source for LineSource<R> {
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
        buf.clear();
        self.cut = None;
        // `pending` is the tail after the last line end: it holds no '\n',
        // so only newly read bytes need searching; except after a cut
        // line, where it holds what followed the cut line's end in the
        // same read, whole lines included.
        std::mem::swap(buf, &mut self.pending);
        if std::mem::take(&mut self.pending_lines)
            && let Some(last_nl) = memchr::memrchr(b'\n', buf)
        {
            self.pending.extend_from_slice(&buf[last_nl + 1..]);
            buf.truncate(last_nl + 1);
            let start = self.position;
            self.position += buf.len() as u64;
            return Ok(Some(start));
        }
        loop {
            let filled = buf.len();
            if !self.eof {
                buf.resize(filled + CHUNK_BYTES, 0);
                let n = loop {
                    match self.inner.read(&mut buf[filled..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // Keep what was read for a retry.
                            buf.truncate(filled);
                            std::mem::swap(buf, &mut self.pending);
                            buf.clear();
                            return Err(e);
                        }
                    }
                };
                buf.truncate(filled + n);
                self.eof = n == 0;
            }
            if buf.is_empty() && self.eof {
                return Ok(None);
            }
            let start = self.position;
            if self.eof {
                self.position += buf.len() as u64;
                return Ok(Some(start));
            }
            if let Some(i) = memchr::memrchr(b'\n', &buf[filled..]) {
                let last_nl = filled + i;
                self.pending.extend_from_slice(&buf[last_nl + 1..]);
                buf.truncate(last_nl + 1);
                self.position += buf.len() as u64;
                return Ok(Some(start));
            }
            // No line end yet: read more (a line longer than a chunk),
            // unless the line is past the bound.
            if buf.len() > self.max_line {
                return self.cut_long_line(buf, start).map(Some);
            }
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn bound_lines(&mut self, max: usize) {
        self.max_line = max.max(1);
    }

    fn cut_line(&self) -> Option<u64> {
        self.cut
    }

    fn seek(&mut self, position: u64) -> io::Result<()> {
        if position == self.position {
            return Ok(());
        }
        let seek = self.seek.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} cannot seek to position {position}", self.name),
            )
        })?;
        seek(&mut self.inner, position)?;
        self.position = position;
        self.pending.clear();
        self.pending_lines = false;
        self.eof = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `step` bytes per read.
    struct Trickle(Vec<u8>, usize, usize);
    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.2.min(out.len()).min(self.0.len() - self.1);
            out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn chunks_hold_whole_lines_with_positions() {
        let text = b"alpha\nbeta\ngamma\ndelta".to_vec();
        let mut src = LineSource::new(Trickle(text.clone(), 0, 3), "t");
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Some(pos) = src.next_chunk(&mut buf).expect("reads") {
            assert_eq!(&text[pos as usize..pos as usize + buf.len()], &buf[..]);
            let ends_whole = buf.ends_with(b"\n") || pos as usize + buf.len() == text.len();
            assert!(ends_whole, "chunk ends at a line end");
            seen.extend_from_slice(&buf);
        }
        assert_eq!(seen, text);
    }

    #[test]
    fn a_line_past_the_bound_is_cut_and_the_lines_after_it_are_whole() {
        // A 2,500-byte line, ten short ones, a line just under the bound,
        // another past it at the end without a line end; reads of up to
        // 1,000 bytes, so a cut line's last read also holds the lines after
        // it. (A line past the bound that fits in one read arrives whole:
        // the job rejects it.)
        let mut text = vec![b'a'; 2_500];
        text.push(b'\n');
        let mut want = Vec::new();
        for i in 0..10 {
            let l = format!("short {i}");
            want.push(l.clone());
            text.extend_from_slice(l.as_bytes());
            text.push(b'\n');
        }
        let under = "b".repeat(95);
        want.push(under.clone());
        text.extend_from_slice(under.as_bytes());
        text.push(b'\n');
        text.extend_from_slice(&[b'c'; 500]);
        let mut src = LineSource::new(Trickle(text.clone(), 0, 1_000), "t");
        src.bound_lines(100);
        let mut buf = Vec::new();
        let (mut lines, mut cuts) = (Vec::new(), Vec::new());
        let mut next = 0;
        while let Some(pos) = src.next_chunk(&mut buf).expect("reads") {
            assert_eq!(pos, next, "chunks follow each other");
            match src.cut_line() {
                Some(len) => {
                    assert_eq!(buf.len(), 100, "a cut line keeps the bound's bytes");
                    cuts.push((pos, len));
                    next = pos + len;
                }
                None => {
                    assert_eq!(&text[pos as usize..pos as usize + buf.len()], &buf[..]);
                    for l in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        lines.push(String::from_utf8(l.to_vec()).expect("utf-8"));
                    }
                    next = pos + buf.len() as u64;
                }
            }
        }
        assert_eq!(lines, want);
        assert_eq!(cuts, [(0, 2_501), (text.len() as u64 - 500, 500)]);
        assert_eq!(next, text.len() as u64);
    }

    #[test]
    fn seeking_resumes_at_a_chunk_boundary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.txt");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).expect("write");
        let mut src = LineSource::open(&path).expect("open");
        let mut buf = Vec::new();
        let first = src.next_chunk(&mut buf).expect("read").expect("chunk");
        let second_pos = first + buf.len() as u64;
        let mut again = LineSource::open(&path).expect("open");
        again.seek(second_pos).expect("seek");
        let mut rest = Vec::new();
        while again.next_chunk(&mut buf).expect("read").is_some() {
            rest.extend_from_slice(&buf);
        }
        assert_eq!(rest, text.as_bytes()[second_pos as usize..].to_vec());
        assert!(LineSource::stdin().seek(10).is_err());
    }
}
