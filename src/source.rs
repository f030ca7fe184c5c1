//! Embedded sources: text lines from a file or stdin, and the generator.
//!
//! A source hands out chunks of whole lines together with the position (byte
//! offset in the input) of the chunk's first byte, so every record has a
//! position a checkpoint can record and a restart can seek back to.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::cef::{Generator, GeneratorConfig};

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
}

/// Lines from any reader, split into chunks at line ends.
pub struct LineSource<R> {
    inner: R,
    name: String,
    pending: Vec<u8>,
    position: u64,
    eof: bool,
}

impl<R: Read + Send + 'static> LineSource<R> {
    /// Lines read from `inner`; `name` appears in logs and errors.
    pub fn new(inner: R, name: impl Into<String>) -> Self {
        Self {
            inner,
            name: name.into(),
            pending: Vec::new(),
            position: 0,
            eof: false,
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
        Ok(Self::new(file, path.display().to_string()))
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
        std::mem::swap(buf, &mut self.pending);
        loop {
            if !self.eof {
                let filled = buf.len();
                buf.resize(filled + CHUNK_BYTES, 0);
                let n = loop {
                    match self.inner.read(&mut buf[filled..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            buf.truncate(filled);
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
            if let Some(last_nl) = memchr::memrchr(b'\n', buf) {
                self.pending.extend_from_slice(&buf[last_nl + 1..]);
                buf.truncate(last_nl + 1);
                self.position += buf.len() as u64;
                return Ok(Some(start));
            }
            // No line end yet: read more (a line longer than a chunk).
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// The deterministic CEF generator as a source.
pub struct GeneratorSource {
    generator: Generator,
    config: GeneratorConfig,
    position: u64,
}

impl GeneratorSource {
    /// A source of the events of `config`.
    pub fn new(config: GeneratorConfig) -> Self {
        Self {
            generator: Generator::new(config),
            config,
            position: 0,
        }
    }
}

impl Source for GeneratorSource {
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
        buf.clear();
        if self.generator.fill(buf, CHUNK_BYTES) == 0 {
            return Ok(None);
        }
        let start = self.position;
        self.position += buf.len() as u64;
        Ok(Some(start))
    }

    fn describe(&self) -> String {
        format!(
            "generator(events={}, keys={}, seed={})",
            self.config.events, self.config.keys, self.config.seed
        )
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
    fn generator_source_is_deterministic() {
        let config = GeneratorConfig {
            events: 5_000,
            keys: 10,
            ..GeneratorConfig::default()
        };
        let collect = || {
            let mut src = GeneratorSource::new(config);
            let mut all = Vec::new();
            let mut buf = Vec::new();
            while let Some(pos) = src.next_chunk(&mut buf).expect("generates") {
                assert_eq!(pos as usize, all.len());
                all.extend_from_slice(&buf);
            }
            all
        };
        let a = collect();
        assert_eq!(a, collect());
        assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 5_000);
    }
}
