//! Looking at each owned partition's input once per poll round (see
//! [`super::super::watch`]): a log whose start moved past the position to
//! resume from before anything was read, and stalls.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use weir_actors::Processor;

use super::super::settings::RecordKey;
use super::super::watch::{Change, OnOffsetReset, Seen, Skip};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::{Kc, Worker};

impl<P: Processor> Worker<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    /// Input offsets `from..to` of `partition` were skipped for `why`:
    /// counted and logged, or, for a log-start skip with
    /// [`OnOffsetReset::Fail`], the reason to stop.
    pub(super) fn skipped(&mut self, partition: i32, why: Skip, from: i64, to: i64) {
        let Some(r) = self.running.get_mut(&partition) else {
            return;
        };
        let topic = &self.parts.kafka.input_topic;
        r.progress.m.skipped(why, (to - from) as u64);
        if why == Skip::LogStart && self.parts.kafka.on_offset_reset == OnOffsetReset::Fail {
            self.group.fail(format!(
                "partition {partition} of topic {topic}: offsets {from} to {} were never \
                 processed: {} (--on-offset-reset fail)",
                to - 1,
                why.describe()
            ));
            return;
        }
        let quiet = match why {
            Skip::LogStart => Some(0),
            Skip::Gap => r.watch.log_gap(Instant::now()),
        };
        if let Some(quiet) = quiet {
            tracing::warn!(
                topic = %topic,
                partition,
                expected = from,
                resumed_at = to,
                skipped = to - from,
                reason = why.label(),
                gaps_not_logged = quiet,
                "{}: going on from the first record there is",
                why.describe()
            );
        }
    }

    pub(in super::super) fn watch_inputs(&mut self, consumer: &Kc<P>) {
        let now = Instant::now();
        let owned: Vec<i32> = self.running.keys().copied().collect();
        for p in owned {
            let (Some(view), Some(r)) = (self.group.view(p), self.running.get(&p)) else {
                continue;
            };
            let low = r.progress.low.load(Ordering::Relaxed);
            // The statistics say the log moved; librdkafka's latest view
            // says where it starts now.
            if !r.watch.read_any
                && let Some(next) = view.next_offset
                && low > next
                && let start = log_start(consumer, &self.parts.kafka.input_topic, p)
                && start > next
            {
                self.skipped(p, Skip::LogStart, next, start);
                if self.group.failure().is_some() {
                    return;
                }
                self.group.skip_to(p, start);
            }
            let Some(view) = self.group.view(p) else {
                continue;
            };
            let r = self.running.get_mut(&p).expect("listed above");
            let seen = Seen {
                read: view.next_offset,
                fetch: r.progress.fetched.load(Ordering::Relaxed),
                low,
                high: r.progress.end.load(Ordering::Relaxed),
                waiting: view.paused || view.queued > 0,
            };
            let Some(change) = r.watch.check(
                now,
                &seen,
                self.parts.kafka.stall_after,
                self.parts.kafka.stall_timeout,
            ) else {
                continue;
            };
            let topic = &self.parts.kafka.input_topic;
            let at = seen.offset();
            let last_error = match &self.last_error {
                Some((when, e)) => format!("{e} ({} s ago)", when.elapsed().as_secs()),
                None => "none".into(),
            };
            match change {
                Change::Stalled(d) => {
                    let since = SystemTime::now().checked_sub(d);
                    r.progress.m.set_stalled(Some(since.unwrap_or(UNIX_EPOCH)));
                    tracing::warn!(
                        topic = %topic,
                        partition = p,
                        offset = %at,
                        high_watermark = seen.high,
                        stalled_s = d.as_secs(),
                        last_consumer_error = %last_error,
                        "the partition has records to read and reads none: stalled (not ready \
                         until it moves)"
                    );
                }
                Change::Recovered(d) => {
                    r.progress.m.set_stalled(None);
                    tracing::info!(
                        topic = %topic,
                        partition = p,
                        offset = %at,
                        stalled_s = d.as_secs(),
                        "the partition reads again"
                    );
                }
                Change::GaveUp(d) => {
                    self.group.fail(format!(
                        "partition {p} of topic {topic} made no progress at offset {at} for {} s \
                         with records to read (log end {}; the consumer's last error: \
                         {last_error}): a batch that does not decode or fails its CRC, or fetch \
                         errors that repeat",
                        d.as_secs(),
                        seen.high
                    ));
                    return;
                }
            }
        }
    }
}

/// The start of `partition`'s log as librdkafka last saw it (in the
/// latest fetch response or offset query; no request is made), -1 when
/// not known.
pub(super) fn log_start<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> i64 {
    let Ok(topic) = std::ffi::CString::new(topic) else {
        return -1;
    };
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client handle is live for the call, the topic a valid C
    // string, and librdkafka only writes the two offsets.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    if err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        low
    } else {
        -1
    }
}
