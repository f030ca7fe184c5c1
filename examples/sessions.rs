//! Per-user sessions over JSON clicks (`{"user":"u1","ts":1767225600000}`,
//! `ts` in ms), a whole job in one file: a session ends after `--gap-secs`
//! without events (event time) and is written as
//! `{"user":..,"start":ms,"end":ms,"events":n}`. Every flag of `weir::run`
//! works: `sessions --input clicks.jsonl --output out.jsonl --state-dir S`.

use serde::{Deserialize, Serialize};
use weir::decode::Json;
use weir::run::App;
use weir::{Context, ProcessError, Processor, TimeDomain, Timer};

#[derive(Debug, Deserialize)]
struct Click {
    user: String,
    ts: i64,
}

/// An open session (the state) and a closed one (the output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    user: String,
    start: i64,
    end: i64,
    events: u32,
}

struct Sessions {
    gap_ms: i64,
}

impl Processor for Sessions {
    type Key = String;
    type In = Click;
    type Out = Session;
    type State = Option<Session>;

    async fn process(
        &self,
        ctx: &mut Context<'_, Self>,
        open: &mut Option<Session>,
        c: &Click,
    ) -> Result<(), ProcessError> {
        match open {
            Some(s) if c.ts < s.end + self.gap_ms => {
                s.end = s.end.max(c.ts);
                s.events += 1;
            }
            _ => {
                if let Some(done) = open.take() {
                    ctx.emit(done);
                }
                let (user, start, end) = (c.user.clone(), c.ts, c.ts);
                *open = Some(Session {
                    user,
                    start,
                    end,
                    events: 1,
                });
            }
        }
        let end = open.as_ref().map_or(c.ts, |s| s.end);
        ctx.set_timer("gap", end + self.gap_ms, TimeDomain::EventTime);
        Ok(())
    }

    async fn on_timer(
        &self,
        ctx: &mut Context<'_, Self>,
        open: &mut Option<Session>,
        _: Timer,
    ) -> Result<(), ProcessError> {
        if let Some(done) = open.take() {
            ctx.emit(done);
        }
        Ok(())
    }
}

#[derive(clap::Args)]
struct Flags {
    /// Seconds without events that end a session.
    #[arg(long, env = "WEIR_GAP_SECS", default_value_t = 1800)]
    gap_secs: u64,
}

fn main() -> anyhow::Result<()> {
    App::new("sessions", "Per-user sessions over JSON click events")
        .outputs_named("sessions")
        .run(|f: &Flags| {
            let decoder = Json::new(|c: &Click| Some(c.user.clone()), |c: &Click| Some(c.ts));
            Ok((
                Sessions {
                    gap_ms: f.gap_secs as i64 * 1000,
                },
                decoder,
            ))
        })
}
