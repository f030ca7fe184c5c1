//! The admin HTTP server: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Telemetry;
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
        let metrics = telemetry.clone();
        let ready = telemetry.metrics().clone();
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let t = metrics.clone();
                    async move {
                        // Collecting runs the instruments' callbacks, which
                        // lock and walk state directories: not on a runtime
                        // worker.
                        match tokio::task::spawn_blocking(move || t.render()).await {
                            Ok(text) => (
                                StatusCode::OK,
                                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                                text,
                            )
                                .into_response(),
                            Err(e) => {
                                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                            }
                        }
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

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
