//! `POST /v2/repository/index` and `POST /v2/repository/models/{model}/load`
//! and `.../unload`: Triton's model repository extension in JSON.

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
use super::infer_codec::decode_parameters;
use crate::model_control::{ControlParameters, FILE_PARAMETER_PREFIX, LoadOptions, UnloadOptions};

/// Reads a request body that may be empty or a JSON object.
async fn json_object(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &str,
) -> Result<Map<String, Value>, ApiError> {
    let body = read_body(headers, body, limit).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::bad_request(format!("the {what} request must be a JSON object"))),
        Err(error) => Err(ApiError::bad_request(format!("the {what} request is not valid JSON: {error}"))),
    }
}

/// The `parameters` object of a load or unload request; anything but an
/// object there is refused rather than ignored. A `file:` parameter is a
/// model file in base64, as Triton takes it in JSON.
fn parameters(mut request: Map<String, Value>, what: &str) -> Result<ControlParameters, ApiError> {
    let mut parameters = match request.remove("parameters") {
        None | Some(Value::Null) => return Ok(ControlParameters::default()),
        Some(Value::Object(parameters)) => parameters,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the {what} request's 'parameters' must be an object, not {other}"
            )));
        }
    };
    let files: Vec<String> = parameters.keys().filter(|key| key.starts_with(FILE_PARAMETER_PREFIX)).cloned().collect();
    let mut bytes = std::collections::BTreeMap::new();
    for key in files {
        let Some(Value::String(text)) = parameters.remove(&key) else {
            return Err(ApiError::bad_request(format!(
                "the {what} request's parameter '{key}' must be a string: the file's contents in base64"
            )));
        };
        let contents = BASE64.decode(text.trim()).map_err(|error| {
            ApiError::bad_request(format!("the {what} request's parameter '{key}' is not valid base64: {error}"))
        })?;
        bytes.insert(key, contents.into());
    }
    Ok(ControlParameters { values: decode_parameters(parameters), bytes })
}

/// `POST /v2/repository/index`: `{"ready": true}` lists only the versions
/// that serve.
pub async fn index(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let request = json_object(&headers, body, state.settings.max_input_size, "repository index").await?;
    let ready = match request.get("ready") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(ready)) => *ready,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the repository index request's 'ready' must be a boolean, not {other}"
            )));
        }
    };
    let entries = state.manager.repository_index(ready)?;
    Ok(Json(Value::Array(
        entries
            .into_iter()
            .map(|entry| {
                let mut row = json!({ "name": entry.name });
                // A model never asked to load has only its name, as in Triton.
                if let Some(state) = entry.state {
                    if let Some(version) = entry.version {
                        row["version"] = json!(version.to_string());
                    }
                    row["state"] = json!(state);
                    row["reason"] = json!(entry.reason);
                }
                row
            })
            .collect(),
    )))
}

/// `POST /v2/repository/models/{model}/load`, with an optional `config`
/// parameter and model files (`file:<version>/<file name>`, base64).
/// Success is a 200 with an empty body, as in Triton.
pub async fn load(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let request = json_object(&headers, body, state.settings.max_input_size, "load").await?;
    let options = LoadOptions::from_parameters(&model, &parameters(request, "load")?)?;
    state.manager.load_model(&model, options).await?;
    Ok(StatusCode::OK)
}

/// `POST /v2/repository/models/{model}/unload`, with an optional
/// `unload_dependents` parameter.
pub async fn unload(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let request = json_object(&headers, body, state.settings.max_input_size, "unload").await?;
    let options = UnloadOptions::from_parameters(&model, &parameters(request, "unload")?)?;
    state.manager.unload_model(&model, options).await?;
    Ok(StatusCode::OK)
}
