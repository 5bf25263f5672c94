//! `/v2/systemsharedmemory/...`: Triton's system shared-memory extension
//! in JSON: the status of the registered regions, registering one, and
//! unregistering one or all.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::AppState;
use super::body::read_body;
use super::error::ApiError;
use crate::shared_memory::RegionStatus;

fn encode(regions: Vec<RegionStatus>) -> Json<Value> {
    Json(Value::Array(
        regions
            .into_iter()
            .map(|region| {
                json!({ "name": region.name, "key": region.key, "offset": region.offset, "byte_size": region.byte_size })
            })
            .collect(),
    ))
}

/// `GET /v2/systemsharedmemory/status`: every registered region.
pub async fn status_all(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(encode(state.manager.shared_memory().status(None)?))
}

/// `GET /v2/systemsharedmemory/region/{region}/status`.
pub async fn status_one(State(state): State<AppState>, Path(region): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(encode(state.manager.shared_memory().status(Some(&region))?))
}

/// `POST /v2/systemsharedmemory/region/{region}/register` with
/// `{"key": ..., "offset": ..., "byte_size": ...}`.
pub async fn register(
    State(state): State<AppState>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let body = read_body(&headers, body, state.settings.max_input_size).await?;
    let invalid =
        |message: String| ApiError::bad_request(format!("registering shared memory region '{region}': {message}"));
    let request: Value =
        serde_json::from_slice(&body).map_err(|error| invalid(format!("the body is not valid JSON: {error}")))?;
    let key = request
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("'key' must be the shared-memory object's key, a string".to_string()))?;
    let count = |field: &str, default: Option<u64>| match request.get(field) {
        None => default.ok_or_else(|| invalid(format!("'{field}' is missing"))),
        Some(value) => value.as_u64().ok_or_else(|| invalid(format!("'{field}' must be a byte count, not {value}"))),
    };
    let offset = count("offset", Some(0))?;
    let byte_size = count("byte_size", None)?;
    state.manager.shared_memory().register(&region, key, offset, byte_size)?;
    Ok(StatusCode::OK)
}

/// `POST /v2/systemsharedmemory/unregister`: every region.
pub async fn unregister_all(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    state.manager.shared_memory().unregister(None)?;
    Ok(StatusCode::OK)
}

/// `POST /v2/systemsharedmemory/region/{region}/unregister`.
pub async fn unregister_one(State(state): State<AppState>, Path(region): Path<String>) -> Result<StatusCode, ApiError> {
    state.manager.shared_memory().unregister(Some(&region))?;
    Ok(StatusCode::OK)
}
