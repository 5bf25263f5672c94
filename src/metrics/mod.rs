//! The metrics frontend: Triton's per-model inference metrics and its GPU
//! and CPU metrics in Prometheus' text format at `GET /metrics`, on their own port
//! (8002), as Prometheus and Triton's dashboards scrape them.

mod cpu;
mod exposition;
mod gpu;
mod latency_config;
mod polling;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

pub use cpu::{CpuUtilization, MemoryUsage, memory_usage};
pub use exposition::{CpuMetrics, render};
pub use gpu::{GpuMemory, GpuMetrics, GpuReading};
pub use latency_config::LatencyMetricsConfig;

use crate::model_manager::ModelManager;
use crate::shutdown::ShutdownSignal;

/// The media type of Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Settings of the metrics endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// How often the CPU utilization is sampled (`--metrics-interval-ms`);
    /// `None` turns the CPU metrics off (`--allow-cpu-metrics=false`).
    pub cpu_interval: Option<Duration>,
    /// How often the GPUs are polled (`--metrics-interval-ms`); `None`
    /// turns the GPU metrics off (`--allow-gpu-metrics=false`).
    pub gpu_interval: Option<Duration>,
    /// Which latency metrics to report (`--metrics-config`).
    pub latency: LatencyMetricsConfig,
}

/// What the handler reads.
#[derive(Clone)]
struct MetricsState {
    manager: Arc<ModelManager>,
    gpus: Option<Arc<GpuMetrics>>,
    cpu: Option<Arc<CpuUtilization>>,
    latency: Arc<LatencyMetricsConfig>,
}

/// The routes: `/metrics`, and a plain 404 for anything else. `gpus` and
/// `cpu` are the polled figures when the GPU and CPU metrics are on.
pub fn router(
    manager: Arc<ModelManager>,
    gpus: Option<Arc<GpuMetrics>>,
    cpu: Option<Arc<CpuUtilization>>,
    latency: LatencyMetricsConfig,
) -> Router {
    let state = MetricsState { manager, gpus, cpu, latency: Arc::new(latency) };
    Router::new().route("/metrics", get(metrics)).fallback(not_found).with_state(state)
}

async fn metrics(State(state): State<MetricsState>) -> impl IntoResponse {
    let cpu = state.cpu.as_ref().map(|cpu| CpuMetrics { utilization: cpu.latest(), memory: memory_usage() });
    let gpus = state.gpus.as_ref().map(|gpus| gpus.latest()).unwrap_or_default();
    let text = render(&state.manager.metrics(), &gpus, cpu.as_ref(), &state.latency);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

async fn not_found(request: Request) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        format!("no route for {} {}; metrics are at /metrics\n", request.method(), request.uri().path()),
    )
}

/// Serves metrics on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    manager: Arc<ModelManager>,
    settings: MetricsSettings,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    let cpu = settings.cpu_interval.and_then(|interval| {
        let sampler = CpuUtilization::start(interval, shutdown.clone());
        if sampler.is_none() {
            tracing::warn!("CPU metrics are off: /proc/stat cannot be read on this system");
        }
        sampler
    });
    let gpus = match settings.gpu_interval {
        Some(interval) => {
            GpuMetrics::start(interval, std::env::var("CUDA_VISIBLE_DEVICES").ok(), shutdown.clone()).await
        }
        None => None,
    };
    axum::serve(listener, router(manager, gpus, cpu, settings.latency)).with_graceful_shutdown(shutdown.fired()).await
}
