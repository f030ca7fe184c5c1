//! Logs, traces, metrics and the admin HTTP server.
//!
//! A binary calls [`Telemetry::init`] once, before its runtime starts, with
//! [`TelemetryArgs`] (flatten them into its clap arguments), and hands the
//! result to its job ([`crate::Job::telemetry`]). Then:
//! - logs go to stderr, human-readable or JSON (`--log-format`), filtered
//!   by `RUST_LOG`;
//! - metrics (named in [`names`]) are served in the Prometheus text format
//!   on `--admin-addr`, with `/healthz` and `/readyz`;
//! - with `OTEL_EXPORTER_OTLP_ENDPOINT` set, traces (the `checkpoint`,
//!   `restore` and `rebalance` spans, among others) and metrics are also
//!   exported over OTLP/HTTP.

mod admin;
mod metrics;
pub mod names;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub(crate) use admin::AdminServer;
pub(crate) use metrics::{Advance, BatchDone, JobGuard, PartitionMetrics, Rebalance};
pub use metrics::{Metrics, Progress};

use crate::{Error, Result};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// The operational flags every weir binary takes (each also an environment
/// variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryArgs {
    /// Serve /metrics, /healthz and /readyz on HOST:PORT.
    #[arg(long, env = "WEIR_ADMIN_ADDR", value_name = "HOST:PORT")]
    pub admin_addr: Option<SocketAddr>,
    /// Log format on stderr.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// What [`Telemetry::init`] set up; flushes the exporters when the last
/// clone is dropped. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry(Arc<Inner>);

struct Inner {
    admin_addr: Option<SocketAddr>,
    registry: prometheus::Registry,
    metrics: Metrics,
    meters: SdkMeterProvider,
    tracer: Option<SdkTracerProvider>,
    /// What answers `GET /state/<processor>/<key>` while a job runs.
    state: std::sync::Mutex<Option<Arc<dyn StateQuery>>>,
}

/// Answers `GET /state/<processor>/<key>` for a running job: the key's
/// state as JSON, read through the partition that owns it.
pub(crate) trait StateQuery: Send + Sync {
    /// The name in the path.
    fn processor(&self) -> &str;
    /// `key`'s state, as the processor would see it now.
    fn get(&self, key: String) -> std::pin::Pin<Box<dyn Future<Output = StateAnswer> + Send>>;
}

/// What a state query found.
pub(crate) enum StateAnswer {
    /// The state of `key` in `partition`.
    State {
        partition: u32,
        state: serde_json::Value,
    },
    /// The path's key is not a key of the processor.
    BadKey(String),
    /// The key belongs to `partition`, which this worker does not own.
    NotOwned { partition: u32 },
    /// The partition could not answer.
    Failed(String),
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("admin_addr", &self.0.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = &self.tracer {
            let _ = t.shutdown();
        }
        let _ = self.meters.shutdown();
    }
}

/// The service name OTLP exports carry (`OTEL_SERVICE_NAME` overrides it).
const SERVICE: &str = "weir";

/// A meter provider whose metrics a Prometheus registry renders.
fn prometheus_pipeline() -> Result<(
    prometheus::Registry,
    opentelemetry_sdk::metrics::MeterProviderBuilder,
)> {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .scope_info_enabled(false)
        .build()
        .map_err(|e| Error::Config(format!("the Prometheus exporter: {e}")))?;
    Ok((registry, SdkMeterProvider::builder().with_reader(exporter)))
}

/// Renders `registry` in the Prometheus text format.
fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::new();
    match prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => format!("# encoding failed: {e}\n"),
    }
}

impl Telemetry {
    /// Installs the global log subscriber and builds the metric (and, with
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, trace) pipelines. `default_filter`
    /// applies when `RUST_LOG` is unset. Call it once, outside any async
    /// runtime (the OTLP client has its own threads).
    pub fn init(args: &TelemetryArgs, default_filter: &str) -> Result<Self> {
        let otlp = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.is_empty());
        // The builder reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        let resource = match std::env::var_os("OTEL_SERVICE_NAME") {
            Some(_) => Resource::builder().build(),
            None => Resource::builder().with_service_name(SERVICE).build(),
        };
        let (registry, meters) = prometheus_pipeline()?;
        let mut meters = meters.with_resource(resource.clone());
        let mut tracer = None;
        if otlp {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .build()
                .map_err(|e| Error::Config(format!("the OTLP metric exporter: {e}")))?;
            meters = meters.with_periodic_exporter(exporter);
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .map_err(|e| Error::Config(format!("the OTLP span exporter: {e}")))?;
            tracer = Some(
                SdkTracerProvider::builder()
                    .with_resource(resource)
                    .with_batch_exporter(spans)
                    .build(),
            );
        }
        let meters = meters.build();
        let metrics = Metrics::register(&meters.meter("weir"));

        let filter =
            || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let logs = match args.log_format {
            LogFormat::Human => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_filter(filter())
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::stderr)
                .with_filter(filter())
                .boxed(),
        };
        // Spans go to OTLP at info level and above, whatever the log filter.
        let traces = tracer.as_ref().map(|t| {
            tracing_opentelemetry::layer()
                .with_tracer(t.tracer("weir"))
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
        });
        tracing_subscriber::registry()
            .with(logs)
            .with(traces)
            .try_init()
            .map_err(|e| Error::Config(format!("installing the log subscriber: {e}")))?;
        if otlp {
            tracing::info!("exporting traces and metrics over OTLP");
        }
        Ok(Self(Arc::new(Inner {
            admin_addr: args.admin_addr,
            registry,
            metrics,
            meters,
            tracer,
            state: std::sync::Mutex::new(None),
        })))
    }

    /// Lets the admin server answer state queries with `query` (or no
    /// longer, with `None`).
    pub(crate) fn serve_state(&self, query: Option<Arc<dyn StateQuery>>) {
        *crate::lock(&self.0.state) = query;
    }

    /// The state query the admin server answers with, if any.
    pub(crate) fn state_query(&self) -> Option<Arc<dyn StateQuery>> {
        crate::lock(&self.0.state).clone()
    }

    /// The metrics jobs update.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> String {
        render(&self.0.registry)
    }

    /// Starts the admin server when an address was given.
    async fn serve(&self) -> Result<Option<AdminServer>> {
        match self.0.admin_addr {
            Some(addr) => AdminServer::start(addr, self.clone()).await.map(Some),
            None => Ok(None),
        }
    }
}

/// What a job reports to (detached metrics without telemetry), and the
/// admin server it keeps while it runs. Started first, so probes answer
/// (not ready) during recovery.
pub(crate) async fn for_job(
    telemetry: Option<&Telemetry>,
) -> Result<(Metrics, Option<AdminServer>)> {
    match telemetry {
        Some(t) => Ok((t.metrics().clone(), t.serve().await?)),
        None => Ok((Metrics::detached(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_partition_leaves_the_gauges_and_keeps_its_counters() {
        let (registry, meters) = prometheus_pipeline().unwrap();
        let meters = meters.build();
        let metrics = Metrics::register(&meters.meter("test"));
        let pm = metrics.set_owned(7, Some(std::env::temp_dir()));
        pm.read(5, 1);
        let text = render(&registry);
        assert!(
            text.contains("weir_live_actors{partition=\"7\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("weir_records_in_total{partition=\"7\"} 5"),
            "{text}"
        );
        assert!(text.contains("weir_partitions_assigned 1"), "{text}");
        metrics.set_owned(7, None);
        let text = render(&registry);
        assert!(
            !text.contains("weir_live_actors{partition=\"7\"}"),
            "{text}"
        );
        assert!(
            !text.contains("weir_checkpoint_age_seconds{partition=\"7\"}"),
            "{text}"
        );
        assert!(
            text.contains("weir_records_in_total{partition=\"7\"} 5"),
            "{text}"
        );
        assert!(text.contains("weir_partitions_assigned 0"), "{text}");
    }
}
