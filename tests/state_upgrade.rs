//! An upgrade with a changed state type: `cef_alerts`' detector (state
//! version 1) is stopped mid-stream after a checkpoint; a version 2 of it,
//! whose window renames a field and adds one, resumes from that checkpoint
//! and migrates each key's windows the first time it loads them. The
//! alerts equal the independent reference.

#[path = "../examples/cef_alerts.rs"]
#[allow(dead_code)]
mod cef_alerts;
mod common;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::{
    CheckpointSettings, Clock, Context, DeadLetterFile, Job, JsonLines, LineSource, ProcessError,
    Processor, Settings, SystemClock, TimeDomain, Timer, open_store,
};

use cef_alerts::{Alert, Login};

/// Version 2 of a window: `failed` is now `failures`, and `first_seen` is
/// new.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct WindowV2 {
    start: i64,
    events: u32,
    failures: u32,
    first_seen: i64,
    last_seen: i64,
}

/// The detector at state version 2.
struct BruteForceV2 {
    window_ms: i64,
    threshold: u32,
}

impl Processor for BruteForceV2 {
    type Key = String;
    type In = Login;
    type Out = Alert;
    type State = Vec<WindowV2>;
    const STATE_VERSION: u32 = 2;

    fn migrate_state(version: u32, bytes: &[u8]) -> Result<Vec<WindowV2>, String> {
        if version != 1 {
            return Err(format!("no migration from version {version}"));
        }
        let old: cef_alerts::Windows = weir::decode_state(bytes)?;
        Ok(old
            .0
            .into_iter()
            .map(|w| WindowV2 {
                start: w.start,
                events: w.events,
                failures: w.failed,
                first_seen: w.last_seen,
                last_seen: w.last_seen,
            })
            .collect())
    }

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        windows: &mut Vec<WindowV2>,
        ev: &Login,
    ) -> Result<(), ProcessError> {
        let start = ev.rt.div_euclid(self.window_ms) * self.window_ms;
        let i = match windows.iter().position(|w| w.start == start) {
            Some(i) => i,
            None => {
                windows.push(WindowV2 {
                    start,
                    events: 0,
                    failures: 0,
                    first_seen: ev.rt,
                    last_seen: ev.rt,
                });
                windows.len() - 1
            }
        };
        let w = &mut windows[i];
        w.events += 1;
        w.failures += u32::from(ev.failed);
        w.first_seen = w.first_seen.min(ev.rt);
        w.last_seen = w.last_seen.max(ev.rt);
        self.arm(ctx, windows);
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        windows: &mut Vec<WindowV2>,
        t: Timer,
    ) -> Result<(), ProcessError> {
        let mut closed: Vec<WindowV2> = windows
            .iter()
            .filter(|w| w.start + self.window_ms <= t.at)
            .copied()
            .collect();
        windows.retain(|w| w.start + self.window_ms > t.at);
        closed.sort_by_key(|w| w.start);
        for w in closed.into_iter().filter(|w| w.failures >= self.threshold) {
            ctx.emit(Alert {
                src: ctx.key().clone(),
                window_start: w.start,
                failed: w.failures,
                events: w.events,
                last_seen: w.last_seen,
            });
        }
        self.arm(ctx, windows);
        Ok(())
    }
}

impl BruteForceV2 {
    fn arm(&self, ctx: &mut Context<'_, Self>, windows: &[WindowV2]) {
        match windows.iter().map(|w| w.start + self.window_ms).min() {
            Some(end) => ctx.set_timer("close", end, TimeDomain::EventTime),
            None => ctx.cancel_timer("close"),
        }
    }
}

/// Settings shared by both runs: one state directory, one store.
fn settings(dir: &Path) -> Settings {
    Settings {
        partitions: 3,
        state_dir: dir.join("state"),
        checkpoints: Some(CheckpointSettings {
            store: open_store(dir.join("store").to_str().expect("utf-8")).expect("store"),
            interval: Some(Duration::from_millis(100)),
            retain: 2,
            start_empty: false,
            // One job across both versions (the id would otherwise follow
            // the processor's type name).
            job_id: Some("alerts".into()),
            prune_grace: Duration::from_secs(60),
        }),
        ..Settings::default()
    }
}

/// Runs `processor` over `dir/in.cef` into `dir/alerts.jsonl` until the
/// input ends or `stop` completes.
fn run<P>(
    processor: P,
    dir: &Path,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> weir::Result<weir::Report>
where
    P: Processor<Key = String, In = Login, Out = Alert>,
{
    let out = dir.join("alerts.jsonl");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(
        Job::new(processor)
            .settings(settings(dir))
            .source(LineSource::open(dir.join("in.cef")).expect("open"))
            .decoder(|line: &[u8]| cef_alerts::decode_line(line, SystemClock.now_ms()))
            .sink(JsonLines::file(&out).expect("sink"))
            .dead_letters(DeadLetterFile::file(dir.join("alerts.jsonl.dlq")).expect("dlq"))
            .run_until(stop),
    )
}

#[test]
fn a_new_state_version_resumes_from_the_old_ones_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::data_set(400_000, 2_000, 81, 0);
    std::fs::write(dir.path().join("in.cef"), &data.text).expect("write");

    // Version 1, stopped after 300 ms (a final checkpoint at the stop).
    let v1 = cef_alerts::BruteForce {
        window_ms: common::WINDOW,
        threshold: common::THRESHOLD,
    };
    let first = run(v1, dir.path(), async {
        tokio::time::sleep(Duration::from_millis(300)).await
    })
    .expect("version 1 runs");
    assert!(first.stopped, "version 1 was stopped mid-stream: {first:?}");
    assert!(first.records < data.lines as u64, "{first:?}");

    // Version 2 resumes, migrating each key's windows as it loads them.
    let v2 = BruteForceV2 {
        window_ms: common::WINDOW,
        threshold: common::THRESHOLD,
    };
    let second = run(v2, dir.path(), std::future::pending()).expect("version 2 resumes");
    assert!(second.recovery.checkpoint_id() > 0, "{second:?}");
    assert_eq!(
        first.records + second.records,
        data.lines as u64,
        "every line read once"
    );
    let mut alerts = common::read_alerts(&dir.path().join("alerts.jsonl"));
    alerts.sort();
    let want: Vec<_> = data.reference.iter().cloned().collect();
    assert_eq!(alerts, want);
}
