//! Vertex AI's redirect header, as Triton honours it: Vertex AI only sends
//! `POST` to the predict route, so a request there with
//! `X-Vertex-Ai-Triton-Redirect: v2/models/other/infer` is served as that
//! v2 route (with the method the route expects). As in Triton, only
//! inference and read-only routes may be reached this way; model control
//! and shared-memory registration need the v2 routes themselves.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The header naming the route to serve instead.
pub const REDIRECT_HEADER: &str = "x-vertex-ai-triton-redirect";

/// Where a redirect header sends a request.
#[derive(Debug, PartialEq, Eq)]
enum Redirect {
    /// To this route, with this method.
    To(Method, String),
    /// Nowhere: answered with this status and message.
    Refused(StatusCode, String),
}

/// The route and method `target` (the header's value) names, as Triton's
/// Vertex AI endpoint allows them.
fn redirect(target: &str) -> Redirect {
    let path = format!("/{target}");
    let segments: Vec<&str> = target.split('/').collect();
    let to = |method: Method| Redirect::To(method, path.clone());
    let read_only = |what: &str| {
        Redirect::Refused(
            StatusCode::FORBIDDEN,
            format!("{what} through {REDIRECT_HEADER} is not allowed; use the v2 route itself"),
        )
    };
    match segments.as_slice() {
        ["v2"] | ["v2", "health", "live" | "ready"] | ["v2", "models", "stats"] => to(Method::GET),
        ["v2", "models", _model, rest @ ..] => {
            let rest = match rest {
                ["versions", version, rest @ ..] if version.bytes().all(|byte| byte.is_ascii_digit()) => rest,
                rest => rest,
            };
            match rest {
                [] | ["ready" | "config" | "stats"] => to(Method::GET),
                ["infer"] => to(Method::POST),
                _ => unknown(target),
            }
        }
        ["v2", "systemsharedmemory" | "cudasharedmemory", .., "status"] => to(Method::GET),
        ["v2", "systemsharedmemory" | "cudasharedmemory", ..] => read_only("registering shared memory"),
        ["v2", "repository", "index"] => to(Method::POST),
        ["v2", "repository", ..] => read_only("loading and unloading models"),
        ["metrics"] => Redirect::Refused(
            StatusCode::BAD_REQUEST,
            "the metrics are served on the metrics port (--metrics-port), not through the predict route".into(),
        ),
        _ => unknown(target),
    }
}

fn unknown(target: &str) -> Redirect {
    Redirect::Refused(StatusCode::BAD_REQUEST, format!("{REDIRECT_HEADER}: '{target}' is not a v2 route"))
}

/// Serves a predict-route request that carries the redirect header as the
/// route it names; every other request passes unchanged. Runs before
/// routing, around the whole router.
pub async fn follow(State(predict_route): State<String>, mut request: Request, next: Next) -> Response {
    if request.uri().path() != predict_route {
        return next.run(request).await;
    }
    let Some(target) = request.headers().get(REDIRECT_HEADER) else {
        return next.run(request).await;
    };
    if request.method() != Method::POST {
        let message = format!("{} is not allowed on {predict_route}", request.method());
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message).into_response();
    }
    let Ok(target) = target.to_str().map(|text| text.trim().trim_start_matches('/').to_string()) else {
        return ApiError::bad_request(format!("{REDIRECT_HEADER} is not text")).into_response();
    };
    match redirect(&target) {
        Redirect::To(method, path) => {
            let Ok(uri) = path.parse::<Uri>() else {
                return ApiError::bad_request(format!("{REDIRECT_HEADER}: '{target}' is not a path")).into_response();
            };
            tracing::debug!(route = %path, "serving a Vertex AI redirect");
            *request.method_mut() = method;
            *request.uri_mut() = uri;
            next.run(request).await
        }
        Redirect::Refused(status, message) => ApiError::new(status, message).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_map_to_tritons_routes_and_methods() {
        let to = |method: Method, path: &str| Redirect::To(method, path.to_string());
        assert_eq!(redirect("v2/models/simple/infer"), to(Method::POST, "/v2/models/simple/infer"));
        assert_eq!(
            redirect("v2/models/simple/versions/1/infer"),
            to(Method::POST, "/v2/models/simple/versions/1/infer")
        );
        assert_eq!(redirect("v2/models/simple"), to(Method::GET, "/v2/models/simple"));
        assert_eq!(
            redirect("v2/models/simple/versions/2/config"),
            to(Method::GET, "/v2/models/simple/versions/2/config")
        );
        assert_eq!(redirect("v2/models/stats"), to(Method::GET, "/v2/models/stats"));
        assert_eq!(redirect("v2/health/ready"), to(Method::GET, "/v2/health/ready"));
        assert_eq!(redirect("v2"), to(Method::GET, "/v2"));
        assert_eq!(redirect("v2/repository/index"), to(Method::POST, "/v2/repository/index"));
        assert_eq!(
            redirect("v2/systemsharedmemory/region/r/status"),
            to(Method::GET, "/v2/systemsharedmemory/region/r/status")
        );
        for refused in ["v2/repository/models/simple/load", "v2/systemsharedmemory/region/r/register"] {
            assert!(matches!(redirect(refused), Redirect::Refused(StatusCode::FORBIDDEN, _)), "{refused}");
        }
        for unknown in ["v2/models/simple/generate_stream", "v3", "predict", "metrics"] {
            assert!(matches!(redirect(unknown), Redirect::Refused(StatusCode::BAD_REQUEST, _)), "{unknown}");
        }
    }
}
