//! The HTTP/REST frontend: the KServe v2 REST API with Triton's binary
//! tensor data extension, plus the health and predict routes of cloud model
//! deployments, over the same core as gRPC.

mod body;
mod config_json;
mod error;
mod generate;
mod health;
mod infer;
mod infer_codec;
mod json_tensor;
mod logging;
mod metadata;
mod predict;
mod repository;
mod restricted;
mod sagemaker;
mod sagemaker_models;
mod shared_memory;
mod statistics;
mod trace;
mod vertex_ai;
mod vertex_redirect;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::Deserialize;
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};

pub use error::ApiError;

use self::vertex_ai::VertexRoutes;
use crate::identity::ServerIdentity;
use crate::inference::parse_model_version;
use crate::logging::LogControl;
use crate::model_manager::ModelManager;
use crate::platform::SageMakerSettings;
use crate::restricted_api::{ApiCategory, ApiRestrictions};
use crate::shutdown::ShutdownSignal;
use crate::trace::Tracer;

/// Settings of the HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Largest request body accepted, after decompression.
    pub max_input_size: usize,
    /// Path of the cloud health check route.
    pub health_route: String,
    /// Path of the cloud predict route.
    pub predict_route: String,
    /// Model the predict route serves when the request does not name one.
    pub predict_model: Option<String>,
    /// The API categories that need a header (`--http-restricted-api`).
    pub restrictions: ApiRestrictions,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    manager: Arc<ModelManager>,
    identity: Arc<ServerIdentity>,
    logging: Arc<LogControl>,
    tracer: Arc<Tracer>,
    settings: Arc<HttpSettings>,
}

impl AppState {
    /// The state of the HTTP routes over `manager`.
    pub fn new(
        manager: Arc<ModelManager>,
        identity: ServerIdentity,
        logging: Arc<LogControl>,
        tracer: Arc<Tracer>,
        settings: HttpSettings,
    ) -> Self {
        Self { manager, identity: Arc::new(identity), logging, tracer, settings: Arc::new(settings) }
    }
}

/// The model and optional version of a `/v2/models/...` path.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    model: String,
    #[serde(default)]
    version: Option<String>,
}

impl ModelPath {
    fn version(&self) -> Result<Option<i64>, ApiError> {
        Ok(parse_model_version(&self.model, self.version.as_deref().unwrap_or(""))?)
    }
}

/// The routes. Request bodies are decompressed as their Content-Encoding
/// says; successful inference responses are compressed when
/// Accept-Encoding asks, and nothing else is, as with Triton (clients such
/// as tritonclient only decompress inference results).
pub fn router(state: AppState) -> Router {
    let settings = Arc::clone(&state.settings);
    let successful = |status: StatusCode,
                      _: axum::http::Version,
                      _: &axum::http::HeaderMap,
                      _: &axum::http::Extensions| { status.is_success() };
    let compression = CompressionLayer::new().compress_when(DefaultPredicate::new().and(successful));
    // Routes by the category a restriction (--http-restricted-api) names.
    let restricted = |category, routes| restricted_routes(&settings, category, routes);
    let health = Router::new()
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/v2/models/{model}/ready", get(health::model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(health::model_ready))
        .route(&settings.health_route, get(health::cloud_health));
    let metadata = Router::new()
        .route("/v2", get(metadata::server_metadata))
        .route("/v2/models/{model}", get(metadata::model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(metadata::model_metadata));
    let model_config = Router::new()
        .route("/v2/models/{model}/config", get(metadata::model_config))
        .route("/v2/models/{model}/versions/{version}/config", get(metadata::model_config));
    let inference = Router::new()
        .route("/v2/models/{model}/infer", post(infer::infer).layer(compression.clone()))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer::infer).layer(compression.clone()))
        .route("/v2/models/{model}/generate", post(generate::generate))
        .route("/v2/models/{model}/versions/{version}/generate", post(generate::generate))
        .route("/v2/models/{model}/generate_stream", post(generate::generate_stream))
        .route("/v2/models/{model}/versions/{version}/generate_stream", post(generate::generate_stream))
        .route(&settings.predict_route, post(predict::predict).layer(compression));
    let statistics = Router::new()
        .route("/v2/models/stats", get(statistics::all_models))
        .route("/v2/models/{model}/stats", get(statistics::one_model))
        .route("/v2/models/{model}/versions/{version}/stats", get(statistics::one_model));
    let model_repository = Router::new()
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{model}/load", post(repository::load))
        .route("/v2/repository/models/{model}/unload", post(repository::unload));
    let shared_memory = Router::new()
        .route("/v2/systemsharedmemory/status", get(shared_memory::system_status))
        .route("/v2/systemsharedmemory/region/{region}/status", get(shared_memory::system_status))
        .route("/v2/systemsharedmemory/region/{region}/register", post(shared_memory::system_register))
        .route("/v2/systemsharedmemory/region/{region}/unregister", post(shared_memory::system_unregister))
        .route("/v2/systemsharedmemory/unregister", post(shared_memory::system_unregister))
        .route("/v2/cudasharedmemory/status", get(shared_memory::cuda_status))
        .route("/v2/cudasharedmemory/region/{region}/status", get(shared_memory::cuda_status))
        .route("/v2/cudasharedmemory/region/{region}/register", post(shared_memory::cuda_register))
        .route("/v2/cudasharedmemory/region/{region}/unregister", post(shared_memory::cuda_unregister))
        .route("/v2/cudasharedmemory/unregister", post(shared_memory::cuda_unregister));
    let trace = Router::new()
        .route("/v2/trace/setting", get(trace::global_settings).post(trace::update_global))
        .route("/v2/models/{model}/trace/setting", get(trace::model_settings).post(trace::update_model));
    let logging = Router::new().route("/v2/logging", get(logging::settings).post(logging::update));
    let router = Router::new()
        .merge(restricted(ApiCategory::Health, health))
        .merge(restricted(ApiCategory::Metadata, metadata))
        .merge(restricted(ApiCategory::ModelConfig, model_config))
        .merge(restricted(ApiCategory::Inference, inference))
        .merge(restricted(ApiCategory::Statistics, statistics))
        .merge(restricted(ApiCategory::ModelRepository, model_repository))
        .merge(restricted(ApiCategory::SharedMemory, shared_memory))
        .merge(restricted(ApiCategory::Trace, trace))
        .merge(restricted(ApiCategory::Logging, logging));
    router.fallback(not_found).method_not_allowed_fallback(method_not_allowed).with_state(state)
}

/// The name of the server's only model, for the cloud routes that serve
/// one model without naming it; otherwise every model's name, sorted.
fn only_model(state: &AppState) -> Result<String, Vec<String>> {
    let models: std::collections::BTreeSet<String> =
        state.manager.index().into_iter().map(|entry| entry.name).collect();
    let mut models: Vec<String> = models.into_iter().collect();
    match models.len() {
        1 => Ok(models.remove(0)),
        _ => Err(models),
    }
}

/// `routes` behind the restriction of `category`, when it has one.
fn restricted_routes(settings: &HttpSettings, category: ApiCategory, routes: Router<AppState>) -> Router<AppState> {
    match settings.restrictions.of(category) {
        Some(restriction) => {
            routes.route_layer(middleware::from_fn_with_state(restriction.clone(), restricted::require_header))
        }
        None => routes,
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed(method: Method, request: Request) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", request.uri().path()))
}

/// Which set of routes an HTTP listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpEndpoint {
    /// The KServe v2 routes and the cloud health and predict routes (the
    /// HTTP port).
    V2,
    /// Vertex AI's endpoint: the health and predict routes only (the
    /// Vertex AI port).
    VertexAi,
}

/// Serves `endpoint` on `listener` until `shutdown` fires, then stops
/// taking connections and returns once the requests in flight are
/// answered. On both endpoints a predict-route request carrying Vertex AI's
/// redirect header is served as the v2 route it names.
pub async fn serve(
    listener: TcpListener,
    endpoint: HttpEndpoint,
    state: AppState,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    let settings = &state.settings;
    let routes = VertexRoutes { health: settings.health_route.clone(), predict: settings.predict_route.clone() };
    let app = router(state);
    // Around the whole router: it rewrites the route before routing.
    let app = middleware::from_fn_with_state(routes.predict.clone(), vertex_redirect::follow).layer(app);
    let app = match endpoint {
        HttpEndpoint::V2 => Router::new().fallback_service(app),
        HttpEndpoint::VertexAi => Router::new()
            .fallback_service(middleware::from_fn_with_state(routes, vertex_ai::only_vertex_routes).layer(app)),
    };
    serve_app(listener, app, shutdown).await
}

/// Serves Amazon SageMaker's routes (`/ping`, `/invocations`, and the
/// multi-model endpoint's `/models` over archives unpacked under
/// `multi_model_directory`) on `listener` until `shutdown` fires, as
/// [`serve`] does its endpoints.
pub async fn serve_sagemaker(
    listener: TcpListener,
    state: AppState,
    sagemaker: SageMakerSettings,
    multi_model_directory: std::path::PathBuf,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    serve_app(listener, sagemaker::router(state, sagemaker, multi_model_directory), shutdown).await
}

async fn serve_app(listener: TcpListener, app: Router, shutdown: ShutdownSignal) -> std::io::Result<()> {
    // As for gRPC: small responses must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on an HTTP connection: {error}");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown.fired()).await
}
