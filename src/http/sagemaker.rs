//! Amazon SageMaker's container contract, as Triton serves it with
//! `--allow-sagemaker`: on a port of its own (8080), `GET /ping` for
//! health and `POST /invocations` for inference on one model. Binary tensor
//! data goes as on the v2 routes, but its JSON part's length travels in the
//! content type, `application/vnd.sagemaker-triton.binary+json;json-header-size=N`,
//! both ways.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

use super::error::ApiError;
use super::infer::receive_and_run;
use super::infer_codec::HEADER_LENGTH;
use super::{AppState, ModelPath, generate, only_model, restricted_routes, sagemaker_models};
use crate::platform::{InvocationKind, PingMode, SageMakerSettings};
use crate::restricted_api::ApiCategory;

/// The content type of a body with binary data, before the JSON part's
/// length.
const BINARY_CONTENT_TYPE: &str = "application/vnd.sagemaker-triton.binary+json;json-header-size=";

/// The SageMaker routes, those of a multi-model endpoint included (over
/// archives unpacked under `multi_model_directory`); `/ping` counts as
/// `health` and `/invocations` as `inference` for `--http-restricted-api`,
/// as in Triton.
pub fn router(state: AppState, sagemaker: SageMakerSettings, multi_model_directory: PathBuf) -> Router {
    let sagemaker = Arc::new(sagemaker);
    let ping_mode = sagemaker.ping_mode;
    let ping = Router::new().route("/ping", get(move |state: State<AppState>| ping(state, ping_mode)));
    let invocations = Router::new().route(
        "/invocations",
        post(move |state: State<AppState>, headers: HeaderMap, body: Body| {
            invocations(state, Arc::clone(&sagemaker), headers, body)
        }),
    );
    let settings = Arc::clone(&state.settings);
    Router::new()
        .merge(restricted_routes(&settings, ApiCategory::Health, ping))
        .merge(restricted_routes(&settings, ApiCategory::Inference, invocations))
        .merge(sagemaker_models::router(&state, multi_model_directory))
        .fallback(super::not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .with_state(state)
}

/// `GET /ping`: 200 when ready (or, in ping mode `live`, while running),
/// else 400, as Triton's health routes answer.
async fn ping(State(state): State<AppState>, mode: PingMode) -> StatusCode {
    let healthy = match mode {
        PingMode::Ready => state.manager.server_ready(),
        PingMode::Live => true,
    };
    if healthy { StatusCode::OK } else { StatusCode::BAD_REQUEST }
}

/// `POST /invocations`: the request runs on the endpoint's model as the
/// inference type says.
async fn invocations(
    State(state): State<AppState>,
    sagemaker: Arc<SageMakerSettings>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let model = endpoint_model(&state, &sagemaker)?;
    let path = ModelPath { model: model.clone(), version: None };
    match sagemaker.invocation {
        InvocationKind::Generate => generate::generate(State(state), Path(path), headers, body).await,
        InvocationKind::GenerateStream => generate::generate_stream(State(state), Path(path), headers, body).await,
        InvocationKind::Infer => infer(&state, &model, headers, body).await,
    }
}

/// Runs a v2 inference request on `model`, its binary data's JSON length
/// taken from and given in SageMaker's content type.
pub(super) async fn infer(
    state: &AppState,
    model: &str,
    mut headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(length) = json_header_size(&headers)? {
        headers.insert(HEADER_LENGTH, HeaderValue::from(length));
    }
    let mut response = receive_and_run(state, model, None, &headers, body).await?;
    let answer_headers = response.headers_mut();
    if let Some(length) = answer_headers.remove(HEADER_LENGTH) {
        let content_type = format!("{BINARY_CONTENT_TYPE}{}", length.to_str().unwrap_or_default());
        if let Ok(content_type) = HeaderValue::from_str(&content_type) {
            answer_headers.insert(header::CONTENT_TYPE, content_type);
        }
    }
    Ok(response)
}

/// The model of the endpoint: `SAGEMAKER_TRITON_DEFAULT_MODEL_NAME`, else
/// the only model the server has.
fn endpoint_model(state: &AppState, sagemaker: &SageMakerSettings) -> Result<String, ApiError> {
    if let Some(model) = &sagemaker.model {
        return Ok(model.clone());
    }
    only_model(state).map_err(|models| {
        ApiError::bad_request(format!(
            "which model? Set SAGEMAKER_TRITON_DEFAULT_MODEL_NAME; the models are: {}",
            models.join(", ")
        ))
    })
}

/// The JSON part's length from a SageMaker binary content type, if the
/// request has one.
fn json_header_size(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return Ok(None);
    };
    let Some(position) = content_type.find(BINARY_CONTENT_TYPE) else { return Ok(None) };
    if position != 0 {
        return Err(ApiError::bad_request(format!(
            "expect MIME type for binary data starts with '{BINARY_CONTENT_TYPE}', got: {content_type}"
        )));
    }
    let size = &content_type[BINARY_CONTENT_TYPE.len()..];
    size.trim().parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!("Unable to parse inference header size, got: {size}; expected a byte count"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_content_type(value: &'static str) -> HeaderMap {
        [(header::CONTENT_TYPE, HeaderValue::from_static(value))].into_iter().collect()
    }

    #[test]
    fn the_json_part_length_comes_from_the_content_type() {
        let binary = with_content_type("application/vnd.sagemaker-triton.binary+json;json-header-size=42");
        assert_eq!(json_header_size(&binary).unwrap(), Some(42));
        assert_eq!(json_header_size(&with_content_type("application/json")).unwrap(), None);
        assert_eq!(json_header_size(&HeaderMap::new()).unwrap(), None);
        let bad = with_content_type("application/vnd.sagemaker-triton.binary+json;json-header-size=many");
        assert!(json_header_size(&bad).is_err());
        let misplaced =
            with_content_type("text/plain, application/vnd.sagemaker-triton.binary+json;json-header-size=1");
        assert!(json_header_size(&misplaced).is_err());
    }
}
