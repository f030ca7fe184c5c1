//! The OpenTelemetry instruments: callbacks that read the atomics when a
//! reader collects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use weir_actors::runtime::PartitionStats;
use weir_state::StateEnv;

use super::names::{self, Kind, Metric};
use super::partition::now_ms;
use super::{Inner, Metrics, PartitionMetrics, REBALANCE_KINDS, UNROUTED, ready};
use crate::kafka::watch::Skip;
use crate::lock;

impl Metrics {
    /// Registers a callback reporting `value` of every partition (every one
    /// seen for counters, owned ones for gauges) and, with `unrouted`, of
    /// the input that has no partition.
    pub(super) fn per_partition(
        &self,
        meter: &Meter,
        m: Metric,
        unrouted: bool,
        value: impl Fn(&PartitionMetrics) -> Option<f64> + Send + Sync + 'static,
    ) {
        let inner = Arc::clone(&self.0);
        let each = move |emit: &mut dyn FnMut(f64, &[KeyValue])| {
            for (p, pm) in inner.partitions_now() {
                if m.kind == Kind::Gauge && !pm.owned.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(v) = value(&pm) {
                    emit(v, &[KeyValue::new("partition", p.to_string())]);
                }
            }
            let none = &inner.unrouted;
            if unrouted
                && none.records_in.load(Ordering::Relaxed) > 0
                && let Some(v) = value(none)
            {
                emit(v, &[KeyValue::new("partition", UNROUTED)]);
            }
        };
        match m.kind {
            Kind::Counter => {
                meter
                    .u64_observable_counter(m.instrument())
                    .with_description(m.help)
                    .with_callback(move |o| each(&mut |v, attrs| o.observe(v as u64, attrs)))
                    .build();
            }
            _ => {
                meter
                    .f64_observable_gauge(m.instrument())
                    .with_description(m.help)
                    .with_callback(move |o| each(&mut |v, attrs| o.observe(v, attrs)))
                    .build();
            }
        }
    }

    pub(super) fn observe_partitions(&self, meter: &Meter) {
        let stat = |f: fn(&PartitionStats) -> &AtomicU64| {
            move |pm: &PartitionMetrics| Some(PartitionStats::get(f(&pm.stats)) as f64)
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        self.per_partition(meter, names::LAG_COMMITTED, false, |pm| {
            pm.lag(&pm.committed)
        });
        self.per_partition(meter, names::LAG_PROCESSED, false, |pm| {
            pm.lag(&pm.processed)
        });
        self.per_partition(meter, names::RECORDS_IN, true, move |pm| {
            Some(load(&pm.records_in))
        });
        self.per_partition(meter, names::RECORDS_OUT, false, stat(|s| &s.emitted));
        self.per_partition(meter, names::DEAD_LETTERED, true, move |pm| {
            Some(load(&pm.decode_errors) + load(&pm.stats.dead_lettered))
        });
        self.per_partition(meter, names::LATE, false, stat(|s| &s.late));
        self.per_partition(meter, names::FUTURE, false, stat(|s| &s.future));
        self.per_partition(meter, names::LIVE_ACTORS, false, stat(|s| &s.live_keys));
        self.per_partition(meter, names::PASSIVATIONS, false, stat(|s| &s.passivations));
        self.per_partition(
            meter,
            names::PENDING_TIMERS,
            false,
            stat(|s| &s.pending_timers),
        );
        self.per_partition(
            meter,
            names::TIMERS_DEFERRED,
            false,
            stat(|s| &s.timers_deferred),
        );
        self.per_partition(meter, names::CHECKPOINT_SIZE, false, move |pm| {
            Some(load(&pm.checkpoint_size))
        });
        self.per_partition(meter, names::CHECKPOINT_AGE, false, |pm| {
            let at = pm.checkpoint_at_ms.load(Ordering::Relaxed);
            (at >= 0).then(|| (now_ms() - at).max(0) as f64 / 1000.0)
        });
        self.per_partition(meter, names::RESTORE_DURATION, false, move |pm| {
            Some(load(&pm.restore_ms) / 1000.0)
        });
        self.per_partition(meter, names::RESTORE_BYTES, false, move |pm| {
            Some(load(&pm.restore_bytes))
        });
        self.per_partition(meter, names::RESTORE_TOTAL_BYTES, false, move |pm| {
            Some(load(&pm.restore_total))
        });
        self.per_partition(meter, names::RESTORE_KEYS, false, move |pm| {
            Some(load(&pm.restore_keys))
        });
        self.per_partition(meter, names::INPUT_STALLED, false, |pm| {
            let since = pm.stalled_since_ms.load(Ordering::Relaxed);
            Some(if since >= 0 {
                (now_ms() - since).max(0) as f64 / 1000.0
            } else {
                0.0
            })
        });
        self.per_partition(meter, names::INPUT_STALLS, false, move |pm| {
            Some(load(&pm.stalls))
        });
        let inner = Arc::clone(&self.0);
        meter
            .u64_observable_counter(names::INPUT_SKIPPED.instrument())
            .with_description(names::INPUT_SKIPPED.help)
            .with_callback(move |o| {
                for (p, pm) in inner.partitions_now() {
                    for (why, n) in Skip::ALL.iter().zip(&pm.skipped) {
                        let attrs = [
                            KeyValue::new("partition", p.to_string()),
                            KeyValue::new("reason", why.label()),
                        ];
                        o.observe(n.load(Ordering::Relaxed), &attrs);
                    }
                }
            })
            .build();
        self.per_partition(meter, names::DISK, false, |pm| {
            pm.disk_size().map(|size| size as f64)
        });
    }

    pub(super) fn observe_process(&self, meter: &Meter) {
        let gauge = |m: Metric, value: Box<dyn Fn(&Inner) -> f64 + Send + Sync>| {
            let inner = Arc::clone(&self.0);
            meter
                .f64_observable_gauge(m.instrument())
                .with_description(m.help)
                .with_callback(move |o| o.observe(value(&inner), &[]))
                .build();
        };
        let counter = |m: Metric, value: fn(&Inner) -> &AtomicU64| {
            let inner = Arc::clone(&self.0);
            meter
                .u64_observable_counter(m.instrument())
                .with_description(m.help)
                .with_callback(move |o| o.observe(value(&inner).load(Ordering::Relaxed), &[]))
                .build();
        };
        counter(names::CHECKPOINTS, |i| &i.checkpoints);
        counter(names::CHECKPOINT_FAILURES, |i| &i.checkpoint_failures);
        counter(names::CONSUMER_ERRORS, |i| &i.consumer_errors);
        let owned = |i: &Inner, restoring: bool| {
            lock(&i.partitions)
                .values()
                .filter(|p| p.owned.load(Ordering::Relaxed))
                .filter(|p| !restoring || p.restoring.load(Ordering::Relaxed))
                .count() as f64
        };
        gauge(
            names::PARTITIONS_ASSIGNED,
            Box::new(move |i| owned(i, false)),
        );
        gauge(
            names::PARTITIONS_RESTORING,
            Box::new(move |i| owned(i, true)),
        );
        gauge(names::READY, Box::new(|i| f64::from(u8::from(ready(i)))));
        let inner = Arc::clone(&self.0);
        meter
            .f64_observable_gauge(names::CHECKPOINT_INTERVAL.instrument())
            .with_description(names::CHECKPOINT_INTERVAL.help)
            .with_callback(move |o| match inner.interval_ms.load(Ordering::Relaxed) {
                0 => {}
                ms => o.observe(ms as f64 / 1000.0, &[]),
            })
            .build();
        let memory = |f: fn(&StateEnv) -> usize| {
            Box::new(move |i: &Inner| lock(&i.env).as_ref().map_or(0.0, |e| f(e) as f64))
        };
        gauge(names::BLOCK_CACHE, memory(StateEnv::cache_usage));
        gauge(names::MEMTABLES, memory(StateEnv::memtable_usage));
        let inner = Arc::clone(&self.0);
        meter
            .u64_observable_counter(names::REBALANCES.instrument())
            .with_description(names::REBALANCES.help)
            .with_callback(move |o| {
                for (kind, n) in REBALANCE_KINDS.iter().zip(&inner.rebalances) {
                    o.observe(n.load(Ordering::Relaxed), &[KeyValue::new("kind", *kind)]);
                }
            })
            .build();
    }
}
