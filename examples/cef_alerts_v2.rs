//! `cef_alerts` with its detector at state version 2: a window's `failed`
//! is renamed `failures`, and `first_seen` is new. It reads version 1
//! state (what `cef_alerts` writes) through `migrate_state`, key by key as
//! keys are loaded, so it can resume from `cef_alerts`' checkpoints: start
//! it with the same arguments, `--job-id` included (the id is otherwise
//! derived from the processor's type, which differs). `tests/state_upgrade.rs`
//! kills `cef_alerts` mid-stream and resumes with this binary.

#[path = "cef_alerts.rs"]
#[allow(dead_code)]
mod cef_alerts;

use serde::{Deserialize, Serialize};
use weir::{Context, ProcessError, Processor, TimeDomain, Timer};

use cef_alerts::{Alert, Login};

/// Version 2 of a window: `failed` is now `failures`, and `first_seen` is
/// new.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct WindowV2 {
    pub start: i64,
    pub events: u32,
    pub failures: u32,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// The detector at state version 2.
pub struct BruteForceV2 {
    pub window_ms: i64,
    pub threshold: u32,
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

fn main() -> anyhow::Result<()> {
    cef_alerts::run_cli(
        "Brute-force login alerts over CEF logs, state version 2",
        |window_ms, threshold| BruteForceV2 {
            window_ms,
            threshold,
        },
    )
}
