//! `GET /v2`, `GET /v2/models/{model}[/versions/{version}]` and
//! `.../config`: what the server and its models are.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::config_json::config_to_json;
use super::error::ApiError;
use super::{AppState, ModelPath};
use crate::model_manager::TensorMetadata;

/// `GET /v2`: name, version and extensions.
pub async fn server_metadata(State(state): State<AppState>) -> Json<Value> {
    let identity = &state.identity;
    Json(json!({ "name": identity.name, "version": identity.version, "extensions": identity.extensions }))
}

fn tensors(tensors: Vec<TensorMetadata>) -> Vec<Value> {
    tensors
        .into_iter()
        .map(
            |tensor| json!({ "name": tensor.name, "datatype": tensor.datatype.protocol_name(), "shape": tensor.shape }),
        )
        .collect()
}

/// `GET /v2/models/{model}[/versions/{version}]`.
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    let version = path.version()?;
    let metadata = state.manager.model_metadata(&path.model, version)?;
    let versions: Vec<String> = metadata.versions.iter().map(i64::to_string).collect();
    Ok(Json(json!({
        "name": metadata.name,
        "versions": versions,
        "platform": metadata.platform,
        "inputs": tensors(metadata.inputs),
        "outputs": tensors(metadata.outputs),
    })))
}

/// `GET /v2/models/{model}[/versions/{version}]/config`.
pub async fn model_config(State(state): State<AppState>, Path(path): Path<ModelPath>) -> Result<Json<Value>, ApiError> {
    let version = path.version()?;
    let config = state.manager.model_config(&path.model, version)?;
    Ok(Json(config_to_json(&config)?))
}
