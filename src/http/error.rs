//! Errors as HTTP responses: the status for the core error kind and a body
//! of `{"error": "..."}`, as Triton and KServe clients expect.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{Error, ErrorKind};

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` message.
    pub message: String,
}

impl ApiError {
    /// An error with the given status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match error.kind() {
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::AlreadyExists => StatusCode::CONFLICT,
            ErrorKind::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_http_statuses() {
        let cases = [
            (Error::invalid_argument("x"), StatusCode::BAD_REQUEST),
            (Error::not_found("x"), StatusCode::NOT_FOUND),
            (Error::unavailable("x"), StatusCode::SERVICE_UNAVAILABLE),
            (Error::new(ErrorKind::AlreadyExists, "x"), StatusCode::CONFLICT),
            (Error::new(ErrorKind::Unimplemented, "x"), StatusCode::NOT_IMPLEMENTED),
            (Error::internal("x"), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status, status);
        }
    }
}
