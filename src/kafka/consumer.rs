//! The consumer's side of a worker: its context (rebalance callbacks and
//! statistics) and the poll loop.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use serde::Serialize;
use weir_actors::Processor;

use super::lag::{LagHandle, read_statistics};
use super::settings::RecordKey;
use super::worker::Worker;
use crate::runtime::CheckpointTrigger;
use crate::telemetry::Rebalance;
use crate::{Error, Result, lock};

/// The consumer's context: rebalance callbacks and statistics.
pub(super) struct GroupContext<P: Processor> {
    pub(super) worker: Mutex<Option<Worker<P>>>,
    pub(super) topic: String,
    pub(super) lag: LagHandle,
}

impl<P: Processor> ClientContext for GroupContext<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    fn stats_raw(&self, statistics: &[u8]) {
        read_statistics(&self.lag, &self.topic, statistics);
    }
}

impl<P: Processor> ConsumerContext for GroupContext<P>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let mut guard = lock(&self.worker);
        let Some(w) = guard.as_mut() else {
            // The worker has stopped (its partitions are released): only
            // let the consumer finish leaving.
            let r = match (err, cooperative) {
                (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, true) => {
                    consumer.incremental_assign(tpl)
                }
                (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, false) => {
                    consumer.assign(tpl)
                }
                (_, true) => consumer.incremental_unassign(tpl),
                (_, false) => consumer.unassign(),
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "rebalance while leaving");
            }
            return;
        };
        let mine: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let span = tracing::info_span!("rebalance", ?err, partitions = ?mine);
        let _enter = span.enter();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                w.parts.metrics.rebalanced(Rebalance::Assigned);
                // Ready once the group has assigned (even nothing) and the
                // restores below are done.
                w.parts.metrics.set_started();
                for (p, offset) in w.assign(&mine) {
                    if let Err(e) = tpl.set_partition_offset(&self.topic, p, offset) {
                        w.group
                            .fail(format!("partition {p}: offset {offset:?}: {e}"));
                    }
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                // A partition paused when it was last revoked from this
                // worker would stay paused: the flag outlives assignments.
                assigned.and_then(|()| consumer.resume(tpl))
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                w.parts.metrics.rebalanced(if lost {
                    Rebalance::Lost
                } else {
                    Rebalance::Revoked
                });
                w.revoke(consumer, &mine, lost);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; releasing every partition");
                w.parts.metrics.rebalanced(Rebalance::Lost);
                w.release_all(consumer, true);
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            w.group.fail(format!("applying a rebalance: {e}"));
        }
    }
}

/// How long a worker waits for its first assignment before `/readyz` says
/// ready without one (longer than the default session timeout).
const READY_WITHOUT_ASSIGNMENT: Duration = Duration::from_secs(60);

/// Polls until stopped or failed; routes records, hands batches to actors,
/// drives checkpoints and commits.
pub(super) fn poll_loop<P: Processor>(
    consumer: &BaseConsumer<GroupContext<P>>,
    stop: &AtomicBool,
    interval: Option<Duration>,
    trigger: &CheckpointTrigger,
) -> Result<()>
where
    P::Key: RecordKey,
    P::Out: Serialize,
{
    let ctx = consumer.context();
    let mut next_checkpoint = interval.map(|i| Instant::now() + i);
    let mut last_warning: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let busy = {
            let mut guard = lock(&ctx.worker);
            let w = guard.as_mut().expect("worker set");
            w.drain_inbox();
            w.perform(consumer);
            if let Some(f) = w.failure() {
                return Err(Error::Failed(f));
            }
            if let Some((code, why)) = consumer.client().fatal_error() {
                return Err(Error::Kafka(format!("consumer failed ({code}): {why}")));
            }
            w.commit(consumer, CommitMode::Async);
            let due = next_checkpoint.is_some_and(|t| Instant::now() >= t);
            let asked = trigger.0.notified().now_or_never().is_some();
            if due || asked {
                next_checkpoint = interval.map(|i| Instant::now() + i);
            }
            w.tick(consumer, due || asked);
            w.watch_inputs(consumer);
            // The group normally answers the join with an assignment (maybe
            // empty) well within this; a worker still waiting says ready
            // anyway rather than hold up a rollout.
            if !w.parts.metrics.started() && w.parts.joined.elapsed() > READY_WITHOUT_ASSIGNMENT {
                tracing::warn!("no assignment from the group yet; reporting ready anyway");
                w.parts.metrics.set_started();
            }
            w.group.busy()
        };
        let mut timeout = if busy {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
        };
        // A burst of records, then back to the housekeeping above.
        for _ in 0..5_000 {
            let Some(polled) = consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            match polled {
                Ok(msg) => {
                    let mut guard = lock(&ctx.worker);
                    if let Some(w) = guard.as_mut() {
                        w.route(msg.partition(), msg.offset(), msg.payload());
                    }
                }
                Err(e) => {
                    if let Some(w) = lock(&ctx.worker).as_mut() {
                        w.parts.metrics.consumer_error();
                        w.last_error = Some((Instant::now(), e.to_string()));
                    }
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        tracing::warn!(error = %e, "consumer error (retrying)");
                        last_warning = Some(Instant::now());
                    }
                    break;
                }
            }
        }
        // What the records read decided (skipped offsets).
        if let Some(w) = lock(&ctx.worker).as_mut() {
            w.perform(consumer);
        }
    }
}
