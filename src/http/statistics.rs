//! `GET /v2/models[/{model}[/versions/{version}]]/stats`: Triton's
//! statistics extension in JSON.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, ModelPath};
use crate::statistics::{Duration64, ModelStatistics};

/// Statistics of every model.
pub async fn all_models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(encode(state.manager.statistics(None, None)?)))
}

/// Statistics of one model, or of one of its versions.
pub async fn one_model(State(state): State<AppState>, Path(path): Path<ModelPath>) -> Result<Json<Value>, ApiError> {
    let version = path.version()?;
    Ok(Json(encode(state.manager.statistics(Some(&path.model), version)?)))
}

fn duration(value: Duration64) -> Value {
    json!({ "count": value.count, "ns": value.ns })
}

fn encode(statistics: Vec<ModelStatistics>) -> Value {
    let models: Vec<Value> = statistics
        .into_iter()
        .map(|model| {
            let stats = model.inference_stats;
            let batches: Vec<Value> = model
                .batch_stats
                .into_iter()
                .map(|(batch_size, batch)| {
                    json!({
                        "batch_size": batch_size,
                        "compute_input": duration(batch.compute_input),
                        "compute_infer": duration(batch.compute_infer),
                        "compute_output": duration(batch.compute_output),
                    })
                })
                .collect();
            json!({
                "name": model.name,
                "version": model.version.to_string(),
                "last_inference": model.last_inference,
                "inference_count": model.inference_count,
                "execution_count": model.execution_count,
                "inference_stats": {
                    "success": duration(stats.success),
                    "fail": duration(stats.fail),
                    "queue": duration(stats.queue),
                    "compute_input": duration(stats.compute_input),
                    "compute_infer": duration(stats.compute_infer),
                    "compute_output": duration(stats.compute_output),
                    "cache_hit": duration(stats.cache_hit),
                    "cache_miss": duration(stats.cache_miss),
                },
                "batch_stats": batches,
                "memory_usage": [],
                // Per-response statistics belong to decoupled models, which
                // this server does not run: Triton sends an empty object.
                "response_stats": {},
            })
        })
        .collect();
    json!({ "model_stats": models })
}
