//! The admin HTTP server: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::{StateAnswer, Telemetry};
use crate::{Error, Result};

/// A running admin server; stops when dropped.
pub(crate) struct AdminServer {
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Binds `addr` and serves until dropped.
    pub(crate) async fn start(addr: SocketAddr, telemetry: Telemetry) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Io {
                what: format!("binding the admin server to {addr}"),
                source: e,
            })?;
        let scrapes = Arc::new(Scrapes {
            telemetry: telemetry.clone(),
            last: tokio::sync::Mutex::new(None),
        });
        let ready = telemetry.metrics().clone();
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let scrapes = Arc::clone(&scrapes);
                    async move {
                        match scrapes.text().await {
                            Ok(text) => (
                                StatusCode::OK,
                                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                                text.to_string(),
                            )
                                .into_response(),
                            Err(e) => {
                                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                            }
                        }
                    }
                }),
            )
            .route(
                "/state/{processor}/{key}",
                get({
                    let telemetry = telemetry.clone();
                    move |Path((processor, key)): Path<(String, String)>| {
                        let telemetry = telemetry.clone();
                        async move { state(&telemetry, processor, key).await }
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(move || {
                    let ready = ready.ready();
                    async move {
                        if ready {
                            (StatusCode::OK, "ready\n")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                        }
                    }
                }),
            );
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the admin server stopped");
            }
        });
        tracing::info!(%addr, "admin server listening");
        Ok(Self { task })
    }
}

/// `GET /state/<processor>/<key>`: the key's state as JSON (read-only).
async fn state(telemetry: &Telemetry, processor: String, key: String) -> axum::response::Response {
    let json = |code: StatusCode, body: serde_json::Value| {
        (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{body}\n"),
        )
            .into_response()
    };
    let Some(query) = telemetry
        .state_query()
        .filter(|q| q.processor() == processor)
    else {
        let why = format!("no state queries for processor {processor:?} here (--serve-state)");
        return json(StatusCode::NOT_FOUND, serde_json::json!({ "error": why }));
    };
    match query.get(key.clone()).await {
        StateAnswer::State { partition, state } => json(
            StatusCode::OK,
            serde_json::json!({ "processor": processor, "key": key, "partition": partition, "state": state }),
        ),
        StateAnswer::BadKey(why) => {
            json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": why }))
        }
        StateAnswer::NotOwned { partition } => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({
                "error": format!("key {key:?} belongs to partition {partition}, which this worker does not own"),
                "processor": processor,
                "key": key,
                "partition": partition,
            }),
        ),
        StateAnswer::Failed(why) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": why }),
        ),
    }
}

/// Renders `/metrics` once for any number of concurrent scrapes: one
/// renders while the others wait, and every scrape that arrived before a
/// rendering started shares its text. A scrape never gets figures
/// collected before it arrived, and however many arrive at once, they cost
/// at most two renderings (the one running when they came, and one for
/// them all). (The one expensive
/// figure, the size of the state directories, is measured at most once
/// per interval whatever the scrapes: `PartitionMetrics::disk_size`.)
struct Scrapes {
    telemetry: Telemetry,
    /// The last text and when its rendering started.
    last: tokio::sync::Mutex<Option<(Instant, Arc<str>)>>,
}

impl Scrapes {
    async fn text(&self) -> Result<Arc<str>, tokio::task::JoinError> {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((at, text)) = &*last
            && *at >= arrived
        {
            return Ok(Arc::clone(text));
        }
        // Collecting runs the instruments' callbacks, which lock partition
        // maps and may walk state directories: not on a runtime worker.
        let started = Instant::now();
        let t = self.telemetry.clone();
        let text: Arc<str> = tokio::task::spawn_blocking(move || t.render())
            .await?
            .into();
        *last = Some((started, Arc::clone(&text)));
        Ok(text)
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
