//! Health: the KServe v2 routes (`/v2/health/live`, `/v2/health/ready`,
//! `/v2/models/{model}/ready`), which answer 200 or 400 as Triton does (a
//! model's route with the reason in the body), and the cloud deployment
//! route (`/health` by default), which answers 200 or 503 as load
//! balancers expect.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::{AppState, ModelPath};
use crate::model_manager::VersionState;

fn status(healthy: bool) -> StatusCode {
    if healthy { StatusCode::OK } else { StatusCode::BAD_REQUEST }
}

/// `GET /v2/health/live`: the process answers, so it is live.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`.
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    status(state.manager.server_ready())
}

/// `GET /v2/models/{model}[/versions/{version}]/ready`: 200, or as Triton
/// answers, 400 (also for a model or version the repository does not have)
/// with why the version is not ready.
pub async fn model_ready(State(state): State<AppState>, Path(path): Path<ModelPath>) -> Result<StatusCode, ApiError> {
    let version = path.version()?;
    match state.manager.check_model_ready(&path.model, version) {
        Ok(()) => Ok(StatusCode::OK),
        Err(error) => Err(ApiError::new(StatusCode::BAD_REQUEST, error.message().to_string())),
    }
}

/// The cloud health check: 200 once the server and every model are ready,
/// otherwise 503 with what is not ready yet.
pub async fn cloud_health(State(state): State<AppState>) -> Response {
    if state.manager.server_ready() {
        return (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response();
    }
    let waiting: Vec<String> = state
        .manager
        .index()
        .into_iter()
        .filter(|entry| !matches!(entry.state, VersionState::Ready | VersionState::Unloaded))
        .map(|entry| {
            let what = match entry.version {
                Some(version) => format!("{} version {version} is {}", entry.name, entry.state.name()),
                None => format!("{} is {}", entry.name, entry.state.name()),
            };
            match entry.reason() {
                "" => what,
                reason => format!("{what} ({reason})"),
            }
        })
        .collect();
    let message = if waiting.is_empty() {
        "the server is still loading models".to_string()
    } else {
        format!("the server is not ready: {}", waiting.join("; "))
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
}
