//! `/v2/systemsharedmemory/...` and `/v2/cudasharedmemory/...`: Triton's
//! system and CUDA shared-memory extensions in JSON: the status of the
//! registered regions of each kind, registering one, and unregistering one
//! or all.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::AppState;
use super::body::read_body;
use super::error::ApiError;
use crate::shared_memory::MemoryKind;

/// `GET /v2/systemsharedmemory/status` and
/// `GET /v2/systemsharedmemory/region/{region}/status`.
pub async fn system_status(
    State(state): State<AppState>,
    region: Option<Path<String>>,
) -> Result<Json<Value>, ApiError> {
    let regions = state.manager.shared_memory().status(region.as_deref().map(String::as_str))?;
    let regions = regions.into_iter().map(|region| {
        json!({ "name": region.name, "key": region.key, "offset": region.offset, "byte_size": region.byte_size })
    });
    Ok(Json(Value::Array(regions.collect())))
}

/// `GET /v2/cudasharedmemory/status` and
/// `GET /v2/cudasharedmemory/region/{region}/status`.
pub async fn cuda_status(State(state): State<AppState>, region: Option<Path<String>>) -> Result<Json<Value>, ApiError> {
    let regions = state.manager.shared_memory().cuda_status(region.as_deref().map(String::as_str))?;
    let regions = regions
        .into_iter()
        .map(|region| json!({ "name": region.name, "device_id": region.device_id, "byte_size": region.byte_size }));
    Ok(Json(Value::Array(regions.collect())))
}

/// A register request's JSON object, and how to word its mistakes.
struct RegisterRequest {
    fields: Map<String, Value>,
    context: String,
}

impl RegisterRequest {
    async fn read(state: &AppState, headers: &HeaderMap, body: Body, context: String) -> Result<Self, ApiError> {
        let body = read_body(headers, body, state.settings.max_input_size).await?;
        let fields = match serde_json::from_slice(&body) {
            Ok(Value::Object(fields)) => fields,
            Ok(other) => {
                return Err(ApiError::bad_request(format!("{context}: the body must be an object, not {other}")));
            }
            Err(error) => return Err(ApiError::bad_request(format!("{context}: the body is not valid JSON: {error}"))),
        };
        Ok(Self { fields, context })
    }

    fn invalid(&self, message: String) -> ApiError {
        ApiError::bad_request(format!("{}: {message}", self.context))
    }

    /// A byte count, or `default` when it is missing.
    fn count(&self, field: &str, default: Option<u64>) -> Result<u64, ApiError> {
        match self.fields.get(field) {
            None => default.ok_or_else(|| self.invalid(format!("'{field}' is missing"))),
            Some(value) => {
                value.as_u64().ok_or_else(|| self.invalid(format!("'{field}' must be a byte count, not {value}")))
            }
        }
    }
}

/// `POST /v2/systemsharedmemory/region/{region}/register` with
/// `{"key": ..., "offset": ..., "byte_size": ...}`.
pub async fn system_register(
    State(state): State<AppState>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let request =
        RegisterRequest::read(&state, &headers, body, format!("registering shared memory region '{region}'")).await?;
    let key = request
        .fields
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| request.invalid("'key' must be the shared-memory object's key, a string".to_string()))?;
    let offset = request.count("offset", Some(0))?;
    let byte_size = request.count("byte_size", None)?;
    state.manager.shared_memory().register(&region, key, offset, byte_size)?;
    Ok(StatusCode::OK)
}

/// `POST /v2/cudasharedmemory/region/{region}/register` with
/// `{"raw_handle": {"b64": ...}, "device_id": ..., "byte_size": ...}`.
pub async fn cuda_register(
    State(state): State<AppState>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let context = format!("registering CUDA shared memory region '{region}'");
    let request = RegisterRequest::read(&state, &headers, body, context).await?;
    let encoded =
        request.fields.get("raw_handle").and_then(|handle| handle.get("b64")).and_then(Value::as_str).ok_or_else(
            || request.invalid("'raw_handle' must be {\"b64\": <the CUDA IPC handle in base64>}".to_string()),
        )?;
    let raw_handle = BASE64
        .decode(encoded)
        .map_err(|error| request.invalid(format!("'raw_handle' is not valid base64: {error}")))?;
    let device_id = match request.fields.get("device_id") {
        None => 0,
        Some(value) => {
            value.as_i64().ok_or_else(|| request.invalid(format!("'device_id' must be a number, not {value}")))?
        }
    };
    let byte_size = request.count("byte_size", None)?;
    state.manager.register_cuda_shared_memory(region, raw_handle, device_id, byte_size).await?;
    Ok(StatusCode::OK)
}

/// `POST /v2/systemsharedmemory/unregister` (every system region) and
/// `POST /v2/systemsharedmemory/region/{region}/unregister`.
pub async fn system_unregister(
    State(state): State<AppState>,
    region: Option<Path<String>>,
) -> Result<StatusCode, ApiError> {
    unregister(&state, MemoryKind::System, region)
}

/// `POST /v2/cudasharedmemory/unregister` (every CUDA region) and
/// `POST /v2/cudasharedmemory/region/{region}/unregister`.
pub async fn cuda_unregister(
    State(state): State<AppState>,
    region: Option<Path<String>>,
) -> Result<StatusCode, ApiError> {
    unregister(&state, MemoryKind::Cuda, region)
}

fn unregister(state: &AppState, kind: MemoryKind, region: Option<Path<String>>) -> Result<StatusCode, ApiError> {
    state.manager.shared_memory().unregister(kind, region.as_deref().map(String::as_str))?;
    Ok(StatusCode::OK)
}
