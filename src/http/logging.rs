//! `GET` and `POST /v2/logging`: Triton's logging extension in JSON.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::AppState;
use super::body::read_body;
use super::error::ApiError;
use super::infer_codec::decode_parameters;
use crate::logging::LogSettings;

fn encode(settings: LogSettings) -> Json<Value> {
    Json(json!({
        "log_file": settings.file,
        "log_info": settings.info,
        "log_warning": settings.warning,
        "log_error": settings.error,
        "log_verbose_level": settings.verbose_level,
        "log_format": settings.format.name(),
    }))
}

/// `GET /v2/logging`: the current settings.
pub async fn settings(State(state): State<AppState>) -> Json<Value> {
    encode(state.logging.settings())
}

/// `POST /v2/logging` with the settings to change; answers with all of
/// them.
pub async fn update(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let body = read_body(&headers, body, state.settings.max_input_size).await?;
    let changes = match serde_json::from_slice(&body) {
        Ok(Value::Object(changes)) => changes,
        Ok(_) => return Err(ApiError::bad_request("the log settings must be a JSON object")),
        Err(error) => return Err(ApiError::bad_request(format!("the log settings are not valid JSON: {error}"))),
    };
    if let Some((key, _)) = changes.iter().find(|(_, value)| value.is_null() || value.is_array() || value.is_object()) {
        return Err(ApiError::bad_request(format!("log setting '{key}' must be a string, a boolean or a number")));
    }
    Ok(encode(state.logging.update(&decode_parameters(changes))?))
}
