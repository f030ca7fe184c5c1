//! A deterministic generator of synthetic CEF security events, for demos,
//! tests and benchmarks: the same configuration always yields the same bytes.
//!
//! Events are login attempts and other device events from `keys` distinct
//! source addresses, with event times advancing about one millisecond per
//! event and jittered backwards by less than two seconds. Now and then an
//! attack burst starts: one source fails to log in 6 to 12 times within a few
//! seconds. A tenth of the events write `rt` as a CEF date instead of epoch
//! milliseconds, and some messages carry escapes.

use std::io::Write;

use super::time::civil_from_days;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Number of events.
    pub events: u64,
    /// Number of distinct source addresses (at least 1).
    pub keys: u64,
    /// Seed of the pseudo-random sequence.
    pub seed: u64,
    /// Event time of the first event, ms since the epoch.
    pub start_ms: i64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            events: 1_000_000,
            keys: 10_000,
            seed: 1,
            // 2026-01-01T00:00:00Z
            start_ms: 1_767_225_600_000,
        }
    }
}

/// SplitMix64: tiny, fast, and stable across versions (the output is a
/// format: the same seed must give the same data set forever).
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone)]
struct Burst {
    key: u64,
    remaining: u32,
}

/// Produces the events of a [`GeneratorConfig`] as CEF lines.
#[derive(Debug, Clone)]
pub struct Generator {
    config: GeneratorConfig,
    rng: SplitMix,
    produced: u64,
    bursts: Vec<Burst>,
}

const SIGNATURES: [(&str, &str); 4] = [
    ("200", "Port scan"),
    ("300", "File access"),
    ("400", "Config change"),
    ("500", "Session end"),
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Writes `ms` as a CEF date `MMM dd yyyy HH:mm:ss.SSS UTC`.
pub(crate) fn write_cef_date(ms: i64, out: &mut impl Write) -> std::io::Result<()> {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    write!(
        out,
        "{} {:02} {} {:02}:{:02}:{:02}.{:03} UTC",
        MONTHS[m as usize - 1],
        d,
        y,
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

impl Generator {
    /// A generator at the first event.
    pub fn new(config: GeneratorConfig) -> Self {
        Self {
            rng: SplitMix(config.seed),
            config,
            produced: 0,
            bursts: Vec::new(),
        }
    }

    /// Events produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Whether every event was produced.
    pub fn is_done(&self) -> bool {
        self.produced >= self.config.events
    }

    /// Appends whole lines to `buf` until it holds at least `min_bytes` or
    /// the events run out. Returns the number of lines written.
    pub fn fill(&mut self, buf: &mut Vec<u8>, min_bytes: usize) -> usize {
        let mut n = 0;
        while buf.len() < min_bytes && !self.is_done() {
            self.write_event(buf).expect("writing to a Vec cannot fail");
            n += 1;
        }
        n
    }

    fn write_event(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let i = self.produced;
        self.produced += 1;
        let rng = &mut self.rng;
        let base = self.config.start_ms + i as i64;
        let rt = base - rng.below(2_000) as i64;

        if rng.below(1_000) < 2 {
            self.bursts.push(Burst {
                key: rng.below(self.config.keys),
                remaining: 6 + rng.below(7) as u32,
            });
        }
        let burst_event = !self.bursts.is_empty() && rng.below(100) < 30;
        let (key, sig, name, outcome) = if burst_event {
            let b = rng.below(self.bursts.len() as u64) as usize;
            let key = self.bursts[b].key;
            self.bursts[b].remaining -= 1;
            if self.bursts[b].remaining == 0 {
                self.bursts.swap_remove(b);
            }
            (key, "100", "Login attempt", Some("failure"))
        } else {
            let key = rng.below(self.config.keys);
            match rng.below(10) {
                0..=5 => {
                    let outcome = if rng.below(100) < 15 {
                        "failure"
                    } else {
                        "success"
                    };
                    (key, "100", "Login attempt", Some(outcome))
                }
                s => {
                    let (sig, name) = SIGNATURES[(s - 6) as usize];
                    (key, sig, name, None)
                }
            }
        };
        let user = rng.below(500);
        let date_rt = rng.below(10) == 0;
        let escaped_msg = rng.below(20) == 0;

        write!(
            out,
            "<134>Jan  1 00:00:00 sensor{} CEF:0|weir|generator|1.0|{sig}|{name}|5|src=10.{}.{}.{} dst=192.168.0.{} suser=user{user}",
            key % 7,
            (key >> 16) & 0xFF,
            (key >> 8) & 0xFF,
            key & 0xFF,
            user % 250,
        )?;
        if let Some(outcome) = outcome {
            write!(out, " outcome={outcome}")?;
        }
        out.write_all(b" rt=")?;
        if date_rt {
            write_cef_date(rt, out)?;
        } else {
            write!(out, "{rt}")?;
        }
        if escaped_msg {
            out.write_all(br" msg=policy a\=b path C:\\temp | note\nsecond line")?;
        } else {
            out.write_all(b" msg=event from generator")?;
        }
        out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_every_line_decodes() {
        let config = GeneratorConfig {
            events: 2_000,
            keys: 50,
            seed: 7,
            ..GeneratorConfig::default()
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        Generator::new(config).fill(&mut a, usize::MAX);
        Generator::new(config).fill(&mut b, usize::MAX);
        assert_eq!(a, b);
        let text = String::from_utf8(a).expect("utf-8");
        let mut failures = 0;
        let mut srcs = std::collections::HashSet::new();
        for line in text.lines() {
            let ev = crate::cef::decode(line).expect("generated lines decode");
            let rt = ev.rt_millis(2026).expect("rt parses").expect("rt present");
            assert!((config.start_ms - 2_000..config.start_ms + 2_000).contains(&rt));
            srcs.insert(ev.get("src").expect("src").to_string());
            if ev.signature_id == "100" && ev.get("outcome") == Some("failure") {
                failures += 1;
            }
        }
        assert_eq!(text.lines().count(), 2_000);
        assert!(srcs.len() > 40 && srcs.len() <= 50);
        assert!(failures > 100, "bursts and background failures: {failures}");
    }

    #[test]
    fn cef_dates_format_and_parse_back() {
        let mut s = Vec::new();
        write_cef_date(1_700_000_000_123, &mut s).expect("write");
        let s = String::from_utf8(s).expect("utf-8");
        assert_eq!(s, "Nov 14 2023 22:13:20.123 UTC");
        assert_eq!(crate::cef::parse_time(&s, 0), Ok(1_700_000_000_123));
    }
}
