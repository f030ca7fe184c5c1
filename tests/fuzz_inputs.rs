//! Arbitrary bytes and CEF-shaped lines with extreme values through the
//! whole path of a job (decode, route, the `cef_alerts` detector, its
//! timers, the end of input) in a debug build, where integer overflow
//! panics: nothing may panic, and every input is read.
//!
//! `WEIR_FUZZ_INPUTS` sets how many lines (default 300,000; the closing
//! note of issue 14 reports a run of 10,000,000).

#[path = "../examples/cef_alerts.rs"]
#[allow(dead_code)]
mod cef_alerts;

use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use weir::{Clock, Discard, Job, Settings, Source, SystemClock};

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Lines of every kind, generated as they are read.
struct Fuzz {
    rng: Lcg,
    left: u64,
    position: u64,
    now: i64,
}

impl Fuzz {
    /// An event time: ordinary, at or near the ends of i64, at the edges
    /// of the accepted range and of the future bound, or any i64 at all.
    fn time(&mut self) -> String {
        let now = self.now;
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            i64::MAX - 1,
            i64::MAX,
            253_402_300_799_999,
            253_402_300_800_000,
            // Past the future bound, for the whole run (a time inside it
            // would be accepted and make the ordinary times late; the unit
            // tests of the bound cover its edge).
            now + 7_200_000,
            99_999_999_999_999,
        ];
        match self.rng.below(10) {
            // Mostly in order and just behind the clock, as live traffic
            // is, so windows fill and close.
            0..=4 => (now - 10 * self.left as i64 - self.rng.below(3_000) as i64).to_string(),
            5 | 6 => edges[self.rng.below(edges.len() as u64) as usize].to_string(),
            7 => (self.rng.next() as i64)
                .wrapping_mul(if self.rng.below(2) == 0 { 1 } else { -1 })
                .to_string(),
            8 => {
                let dates = [
                    "Dec 31 9999 23:59:59.999",
                    "Jan 01 0000 00:00:00",
                    "Feb 29 2023 10:00:00",
                    "Nov 22 10:00:00",
                    "Jan 01 1970 00:00:00 UTC",
                    "Dec 31 1969 23:59:59 +1400",
                    "Jan 1 99999 00:00:00",
                    "Smarch 5 2026 10:00:00",
                ];
                dates[self.rng.below(dates.len() as u64) as usize].to_string()
            }
            _ => "9".repeat(1 + self.rng.below(40) as usize),
        }
    }

    fn line(&mut self, out: &mut Vec<u8>) {
        match self.rng.below(8) {
            // Arbitrary bytes (no line end).
            0 => {
                for _ in 0..self.rng.below(300) {
                    let b = self.rng.below(256) as u8;
                    out.push(if b == b'\n' { b' ' } else { b });
                }
            }
            // CEF-shaped, with arbitrary bytes in the extension.
            1 => {
                out.extend_from_slice(b"CEF:0|V|P|1|100|Login|5|src=");
                for _ in 0..self.rng.below(40) {
                    let b = self.rng.below(256) as u8;
                    out.push(if b == b'\n' { b'=' } else { b });
                }
            }
            // CEF lines with extreme and odd values in the fields that
            // matter, on a few keys so windows and timers are shared.
            _ => {
                let src = self.rng.below(64);
                let sig = if self.rng.below(3) == 0 { "300" } else { "100" };
                let outcome = if self.rng.below(2) == 0 {
                    "failure"
                } else {
                    "success"
                };
                let time = self.time();
                out.extend_from_slice(
                    format!(
                        "CEF:0|V|P|1|{sig}|Login|5|src=10.0.0.{src} outcome={outcome} rt={time}"
                    )
                    .as_bytes(),
                );
            }
        }
        out.push(b'\n');
    }
}

impl Source for Fuzz {
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
        buf.clear();
        if self.left == 0 {
            return Ok(None);
        }
        while self.left > 0 && buf.len() < 64 * 1024 {
            self.line(buf);
            self.left -= 1;
        }
        let start = self.position;
        self.position += buf.len() as u64;
        Ok(Some(start))
    }

    fn describe(&self) -> String {
        "fuzz".into()
    }
}

#[test]
fn arbitrary_and_extreme_inputs_never_panic() {
    let inputs: u64 = std::env::var("WEIR_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let report = runtime
        .block_on(
            Job::new(cef_alerts::BruteForce {
                window_ms: 60_000,
                threshold: 3,
            })
            .settings(Settings {
                partitions: 4,
                state_dir: dir.path().join("state"),
                live_actor_cap: 32,
                ..Settings::default()
            })
            .source(Fuzz {
                rng: Lcg(0x5eed),
                left: inputs,
                position: 0,
                now,
            })
            .decoder(|line: &[u8]| cef_alerts::decode_line(line, SystemClock.now_ms()))
            .sink(Discard)
            .dead_letters(Discard)
            .run(),
        )
        .unwrap_or_else(|e| panic!("the job failed on fuzzed input: {e}"));
    eprintln!(
        "{inputs} inputs: {} records read, {} dead-lettered ({} late, {} future), {} alerts, in {:.1} s",
        report.records,
        report.dead_lettered(),
        report.totals.late,
        report.totals.future,
        report.totals.emitted,
        started.elapsed().as_secs_f64()
    );
    // Blank lines (arbitrary bytes that are all whitespace) are not read.
    assert!(report.records > inputs * 9 / 10, "{report:?}");
    assert!(report.totals.future > 0, "the future bound was exercised");
    assert!(report.totals.emitted > 0, "windows closed with alerts");
}
