//! Vertex AI's endpoint, as Triton serves it with `--allow-vertex-ai` (on
//! by default under `AIP_MODE=PREDICTION`): on a port of its own, the
//! health route (`AIP_HEALTH_ROUTE`) and the predict route
//! (`AIP_PREDICT_ROUTE`), where `X-Vertex-Ai-Triton-Redirect` reaches the
//! v2 routes that Triton allows through it; no other route.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The two routes of the endpoint.
#[derive(Debug, Clone)]
pub struct VertexRoutes {
    /// `AIP_HEALTH_ROUTE` (or `--health-route`).
    pub health: String,
    /// `AIP_PREDICT_ROUTE` (or `--predict-route`).
    pub predict: String,
}

/// Lets through requests for the health and predict routes, before the
/// redirect header is followed; answers 404 to any other.
pub async fn only_vertex_routes(State(routes): State<VertexRoutes>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == routes.health || path == routes.predict {
        return next.run(request).await;
    }
    let message = format!(
        "{path} is not a route of the Vertex AI endpoint, which serves {} and {} only",
        routes.health, routes.predict
    );
    ApiError::new(StatusCode::NOT_FOUND, message).into_response()
}
