//! The HTTP side of restricted API categories (`--http-restricted-api`):
//! a route of a restricted category answers 403 unless the request
//! carries the category's header with its value, as Triton answers.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::restricted_api::Restriction;

/// Runs the route only for a request that `restriction` allows.
pub async fn require_header(State(restriction): State<Restriction>, request: Request, next: Next) -> Response {
    if restriction.allows(request.headers()) {
        return next.run(request).await;
    }
    let message = format!("This API is restricted, expecting header '{}'", restriction.header());
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}
