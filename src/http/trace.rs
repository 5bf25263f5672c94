//! `GET` and `POST /v2[/models/{model}]/trace/setting`: Triton's trace
//! extension in JSON.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::AppState;
use super::body::read_body;
use super::error::ApiError;
use crate::trace::{SettingsUpdate, TraceSettings};

/// The settings as Triton answers them: `trace_level` a list, the others
/// strings.
fn encode(settings: TraceSettings) -> Json<Value> {
    let fields = settings.to_protocol().into_iter().map(|(name, mut values)| {
        let value = if name == "trace_level" { Value::from(values) } else { Value::from(values.swap_remove(0)) };
        (name, value)
    });
    Json(Value::Object(fields.collect()))
}

/// `GET /v2/trace/setting`: the global settings.
pub async fn global_settings(State(state): State<AppState>) -> Json<Value> {
    encode(state.tracer.settings(None))
}

/// `POST /v2/trace/setting` with the global settings to change.
pub async fn update_global(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    update(&state, None, &headers, body).await
}

/// `GET /v2/models/{model}/trace/setting`: the settings in force for a
/// model.
pub async fn model_settings(State(state): State<AppState>, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    state.manager.check_model_ready(&model, None)?;
    Ok(encode(state.tracer.settings(Some(&model))))
}

/// `POST /v2/models/{model}/trace/setting` with the model's settings to
/// change (`null` makes one follow the global setting again).
pub async fn update_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    state.manager.check_model_ready(&model, None)?;
    update(&state, Some(&model), &headers, body).await
}

async fn update(
    state: &AppState,
    model: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = read_body(headers, body, state.settings.max_input_size).await?;
    let changes = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice(&body) {
            Ok(Value::Object(changes)) => changes,
            Ok(_) => return Err(ApiError::bad_request("the trace settings must be a JSON object")),
            Err(error) => return Err(ApiError::bad_request(format!("the trace settings are not valid JSON: {error}"))),
        }
    };
    if changes.is_empty() {
        return Ok(encode(state.tracer.settings(model)));
    }
    let settings = changes
        .into_iter()
        .map(|(name, value)| {
            let values = setting_values(&name, value)?;
            Ok((name, values))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(encode(state.tracer.update(model, SettingsUpdate::parse(&settings)?)?))
}

/// A setting's values: `null` for none (clear it), a string or a number for
/// one, a list of strings for several.
fn setting_values(name: &str, value: Value) -> Result<Vec<String>, ApiError> {
    let expected =
        || ApiError::bad_request(format!("trace setting '{name}' must be a string, a list of strings or null"));
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![text]),
        Value::Number(number) => Ok(vec![number.to_string()]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(expected()),
            })
            .collect(),
        Value::Bool(_) | Value::Object(_) => Err(expected()),
    }
}
