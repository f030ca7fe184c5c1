//! The generator as a [`Source`]: positions are byte offsets into the
//! generated text, and seeking regenerates the (deterministic) sequence.

use std::io;

use super::{Generator, GeneratorConfig};
use crate::source::{CHUNK_BYTES, Source};

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

    fn seek(&mut self, position: u64) -> io::Result<()> {
        // The sequence is deterministic: regenerate and skip.
        if position < self.position {
            *self = Self::new(self.config);
        }
        let mut buf = Vec::new();
        while self.position < position {
            buf.clear();
            if self.generator.fill(&mut buf, CHUNK_BYTES) == 0 {
                break;
            }
            self.position += buf.len() as u64;
        }
        if self.position != position {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "position {position} is not a chunk boundary of {}",
                    self.describe()
                ),
            ));
        }
        Ok(())
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

    #[test]
    fn the_generator_resumes_at_a_chunk_boundary() {
        let mut buf = Vec::new();
        let config = GeneratorConfig {
            events: 20_000,
            keys: 5,
            ..GeneratorConfig::default()
        };
        let mut g = GeneratorSource::new(config);
        let p0 = g.next_chunk(&mut buf).expect("gen").expect("chunk");
        let p1 = p0 + buf.len() as u64;
        let expected_next = g.next_chunk(&mut buf).map(|_| buf.clone()).expect("gen");
        let mut h = GeneratorSource::new(config);
        h.seek(p1).expect("seek");
        h.next_chunk(&mut buf).expect("gen");
        assert_eq!(buf, expected_next);
        assert!(GeneratorSource::new(config).seek(p1 + 1).is_err());
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
