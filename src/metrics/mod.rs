//! The metrics frontend: Triton's per-model inference metrics in
//! Prometheus' text format at `GET /metrics`, on their own port (8002), as
//! Prometheus and Triton's dashboards scrape them.

mod exposition;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

pub use exposition::render;

use crate::model_manager::ModelManager;
use crate::shutdown::ShutdownSignal;

/// The media type of Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The routes: `/metrics`, and a plain 404 for anything else.
pub fn router(manager: Arc<ModelManager>) -> Router {
    Router::new().route("/metrics", get(metrics)).fallback(not_found).with_state(manager)
}

async fn metrics(State(manager): State<Arc<ModelManager>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&manager.metrics()))
}

async fn not_found(request: Request) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        format!("no route for {} {}; metrics are at /metrics\n", request.method(), request.uri().path()),
    )
}

/// Serves metrics on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, manager: Arc<ModelManager>, shutdown: ShutdownSignal) -> std::io::Result<()> {
    axum::serve(listener, router(manager)).with_graceful_shutdown(shutdown.fired()).await
}
