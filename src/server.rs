//! Wiring the server together: the backend, the model manager, the network
//! endpoints, and an orderly shutdown on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use crate::backend::Backend;
use crate::backend::onnxruntime::OnnxRuntimeBackend;
use crate::cli::Args;
use crate::cloud_storage::{RepositoryCopy, is_cloud_path};
use crate::grpc::{self, GrpcSettings};
use crate::http::{self, AppState, HttpEndpoint, HttpSettings};
use crate::identity::ServerIdentity;
use crate::logging::LogControl;
use crate::metrics::{self, LatencyMetricsConfig, MetricsSettings};
use crate::model_config::AutocompleteOptions;
use crate::model_control::{ModelControlMode, StartupModels};
use crate::model_manager::{ManagerOptions, ModelManager};
use crate::platform::{PlatformMounts, SageMakerSettings, discover_model_repository};
use crate::response_cache::{LOCAL_CACHE, ResponseCache};
use crate::shutdown::{self, ShutdownSignal, ShutdownTrigger};
use crate::trace::Tracer;

/// Runs the server until it is told to stop; returns the process exit code.
/// `logging` is the log the frontends' logging extension adjusts.
pub async fn run(args: Args, logging: Arc<LogControl>) -> ExitCode {
    let repositories = if args.model_repositories.is_empty() {
        match discover_model_repository(|name| std::env::var(name).ok(), &PlatformMounts::default()) {
            Ok(found) => {
                tracing::info!("using the model repository {} ({})", found.path.display(), found.reason);
                vec![found.path]
            }
            Err(reason) => {
                tracing::error!("{reason}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        args.model_repositories.clone()
    };
    let (repositories, cloud_copies) = match copies_of_cloud_repositories(repositories) {
        Ok(local) => local,
        Err(reason) => {
            tracing::error!("{reason}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var("CONTAINER_TYPE").is_ok_and(|kind| kind.eq_ignore_ascii_case("TRITON")) {
        tracing::info!(
            "CONTAINER_TYPE=TRITON: the platform will call /v2/health/ready and /v2/models/{{model}}/versions/{{version}}/infer on port {}",
            args.http_port
        );
    }
    let backend_config = with_warnings_logged(args.backend_config());
    let backend: Result<Arc<dyn Backend>, String> = match OnnxRuntimeBackend::load(
        backend_config.onnxruntime_library.as_deref(),
        backend_config.global_thread_pool,
    ) {
        Ok(backend) => {
            tracing::info!(library = %backend.library().display(), "loaded ONNX Runtime");
            if let Some(pool) = backend_config.global_thread_pool {
                tracing::info!(
                    intra_op_threads = pool.intra_op_threads,
                    inter_op_threads = pool.inter_op_threads,
                    "every session shares ONNX Runtime's global thread pool (0 threads: ONNX Runtime's default)"
                );
            }
            Ok(Arc::new(backend))
        }
        Err(reason) => {
            tracing::error!("{reason}");
            Err(reason)
        }
    };
    let response_cache = match args.response_cache_size().map(with_warnings_logged) {
        Ok(size) => size.map(|bytes| {
            tracing::info!("response cache: {LOCAL_CACHE}, {bytes} bytes, for models that enable response_cache");
            Arc::new(ResponseCache::new(bytes))
        }),
        Err(reason) => {
            tracing::error!("{reason}");
            return ExitCode::FAILURE;
        }
    };
    let latency_metrics = match LatencyMetricsConfig::from_settings(&args.metrics_config).map(with_warnings_logged) {
        Ok(config) => config,
        Err(reason) => {
            tracing::error!("{reason}");
            return ExitCode::FAILURE;
        }
    };
    let rate_limiter = with_warnings_logged(args.rate_limiter());
    let options = ManagerOptions {
        autocomplete: AutocompleteOptions {
            strict: args.auto_complete_disabled(),
            default_max_batch_size: backend_config.default_max_batch_size,
            gpu_count: backend.as_ref().map_or(0, |backend| backend.gpu_count()),
        },
        config_name: args.model_config_name.clone(),
        control: args.model_control_mode,
        allow_client_shm: args.allow_client_shm,
        lenient_readiness: !args.strict_readiness,
        namespacing: args.model_namespacing,
        response_cache,
        load_retries: args.model_load_retry_count,
        load_threads: usize::from(args.model_load_thread_count),
        rate_limiter,
        latency_distributions: latency_metrics.distributions(),
    };
    if args.model_control_mode != ModelControlMode::Explicit && !args.load_model.is_empty() {
        tracing::warn!("ignoring --load-model: it only applies with --model-control-mode=explicit");
    }
    let tracer = match args.trace_settings().map(with_warnings_logged).and_then(Tracer::new) {
        Ok(tracer) => Arc::new(tracer),
        Err(reason) => {
            tracing::error!("{reason}");
            return ExitCode::FAILURE;
        }
    };
    let (http_restrictions, grpc_restrictions) = match args.http_restrictions().and_then(|http| {
        let grpc = args.grpc_restrictions()?;
        Ok((http, grpc))
    }) {
        Ok(restrictions) => restrictions,
        Err(reason) => {
            tracing::error!("{reason}");
            return ExitCode::FAILURE;
        }
    };
    let grpc_tls = match args.grpc_tls().and_then(|tls| tls.map(|tls| tls.config()).transpose()) {
        Ok(tls) => tls,
        Err(reason) => {
            tracing::error!("{reason}");
            return ExitCode::FAILURE;
        }
    };
    for (endpoint, restrictions) in [("HTTP", &http_restrictions), ("gRPC", &grpc_restrictions)] {
        let restricted = restrictions.describe();
        if !restricted.is_empty() {
            tracing::info!("{endpoint} restricted categories, each needing its header: {}", restricted.join(", "));
        }
    }
    let startup = StartupModels::new(args.model_control_mode, &args.load_model);
    let manager = Arc::new(ModelManager::new(backend, options));
    manager.follow_cloud_copies(cloud_copies.clone());

    let (stop, stopped) = shutdown::channel();
    let identity = ServerIdentity::new(&args.id, args.allow_client_shm);
    let mut endpoints = Vec::new();
    if args.allow_grpc {
        let Some(listener) = listen("gRPC", SocketAddr::new(args.grpc_address, args.grpc_port), args.reuse_grpc_port)
        else {
            return ExitCode::FAILURE;
        };
        tracing::info!("Started GRPCInferenceService at {}", local_address(&listener));
        if args.grpc_use_ssl_mutual {
            tracing::info!("gRPC over mutual TLS: clients need a certificate signed by --grpc-root-cert");
        } else if args.grpc_use_ssl {
            tracing::info!("gRPC over TLS");
        }
        let milliseconds = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        let settings = GrpcSettings {
            keepalive_time: Duration::from_millis(args.grpc_keepalive_time),
            keepalive_timeout: Duration::from_millis(args.grpc_keepalive_timeout),
            max_connection_age: milliseconds(args.grpc_max_connection_age),
            max_connection_age_grace: milliseconds(args.grpc_max_connection_age_grace),
            restrictions: grpc_restrictions,
            tls: grpc_tls,
            response_compression: args.grpc_infer_response_compression_level,
        };
        let (manager, identity, stopped) = (Arc::clone(&manager), identity.clone(), stopped.clone());
        let (logging, tracer) = (Arc::clone(&logging), Arc::clone(&tracer));
        endpoints.push(tokio::spawn(async move {
            if let Err(error) = grpc::serve(listener, manager, identity, logging, tracer, settings, stopped).await {
                tracing::error!("gRPC server failed: {error}");
            }
        }));
    }
    let http_settings = HttpSettings {
        max_input_size: args.http_max_input_size,
        health_route: args.health_route.clone(),
        predict_route: args.predict_route.clone(),
        predict_model: args.predict_model.clone(),
        restrictions: http_restrictions,
    };
    // What the HTTP, Vertex AI and SageMaker listeners serve from.
    let http_state =
        AppState::new(Arc::clone(&manager), identity.clone(), Arc::clone(&logging), Arc::clone(&tracer), http_settings);
    if args.allow_sagemaker {
        let sagemaker = match SageMakerSettings::from_env(|name| std::env::var(name).ok()) {
            Ok(sagemaker) => sagemaker,
            Err(reason) => {
                tracing::error!("{reason}");
                return ExitCode::FAILURE;
            }
        };
        let address = SocketAddr::new(args.http_address, args.sagemaker_port);
        let Some(listener) = listen("SageMaker", address, false) else {
            return ExitCode::FAILURE;
        };
        tracing::info!("Started Sagemaker HTTPService at {}", local_address(&listener));
        let (state, stopped) = (http_state.clone(), stopped.clone());
        let multi_model_directory = args.sagemaker_multi_model_directory.clone();
        endpoints.push(tokio::spawn(async move {
            if let Err(error) = http::serve_sagemaker(listener, state, sagemaker, multi_model_directory, stopped).await
            {
                tracing::error!("SageMaker server failed: {error}");
            }
        }));
    }
    let http_endpoints = [
        (HttpEndpoint::V2, "HTTP", "HTTPService", args.allow_http, args.http_port, args.reuse_http_port),
        (
            HttpEndpoint::VertexAi,
            "Vertex AI",
            "Vertex AI HTTPService",
            args.allow_vertex_ai,
            args.vertex_ai_port,
            false,
        ),
    ];
    for (endpoint, what, service, allowed, port, reuse_port) in http_endpoints {
        if !allowed {
            continue;
        }
        let Some(listener) = listen(what, SocketAddr::new(args.http_address, port), reuse_port) else {
            return ExitCode::FAILURE;
        };
        tracing::info!("Started {service} at {}", local_address(&listener));
        let (state, stopped) = (http_state.clone(), stopped.clone());
        endpoints.push(tokio::spawn(async move {
            if let Err(error) = http::serve(listener, endpoint, state, stopped).await {
                tracing::error!("{what} server failed: {error}");
            }
        }));
    }
    if args.allow_metrics {
        let address = SocketAddr::new(args.metrics_listen_address(), args.metrics_port);
        let Some(listener) = listen("metrics", address, false) else {
            return ExitCode::FAILURE;
        };
        tracing::info!("Started Metrics Service at {}", local_address(&listener));
        let settings = MetricsSettings {
            cpu_interval: args.allow_cpu_metrics.then(|| Duration::from_millis(args.metrics_interval_ms)),
            gpu_interval: args.allow_gpu_metrics.then(|| Duration::from_millis(args.metrics_interval_ms)),
            latency: latency_metrics,
        };
        let (manager, stopped) = (Arc::clone(&manager), stopped.clone());
        endpoints.push(tokio::spawn(async move {
            if let Err(error) = metrics::serve(listener, manager, settings, stopped).await {
                tracing::error!("metrics server failed: {error}");
            }
        }));
    }
    tokio::spawn(forward_signals(stop.clone()));

    let mut exit = ExitCode::SUCCESS;
    match manager.load_repositories(&repositories, &startup).await {
        Ok(report) => {
            log_model_table(&manager);
            if !report.failures.is_empty() && args.exit_on_error {
                tracing::error!(
                    "{} model(s) failed to load; exiting because --exit-on-error=true (pass --exit-on-error=false to serve the others)",
                    report.failures.len()
                );
                exit = ExitCode::FAILURE;
                stop.trigger();
            } else if manager.server_ready() {
                tracing::info!("server is ready: {} model version(s) loaded", report.ready);
            } else {
                tracing::warn!("server is serving, but not ready: some models failed to load");
            }
            if args.model_control_mode == ModelControlMode::Poll {
                follow_repository(&manager, args.repository_poll_secs, stopped.clone());
            }
        }
        Err(reason) => {
            tracing::error!("{reason}");
            exit = ExitCode::FAILURE;
            stop.trigger();
        }
    }

    stopped.fired().await;
    let exit_deadline = tokio::time::Instant::now() + Duration::from_secs(args.exit_timeout_secs);
    let drain = futures::future::join_all(endpoints);
    if tokio::time::timeout_at(exit_deadline, drain).await.is_err() {
        tracing::warn!("requests still in flight after {} s; exiting anyway", args.exit_timeout_secs);
    }
    // Every ONNX Runtime session is released before the process exits and
    // tears down the libraries under it.
    let unload = tokio::task::spawn_blocking(move || manager.unload_all());
    match tokio::time::timeout_at(exit_deadline, unload).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!("unloading the models failed: {error}"),
        Err(_) => tracing::warn!("model instances still running after {} s; exiting anyway", args.exit_timeout_secs),
    }
    // Traces waiting for a numbered trace file are written, as Triton
    // writes them when it exits.
    tracer.flush();
    for copy in &cloud_copies {
        copy.remove();
    }
    tracing::info!("server stopped");
    exit
}

/// The repositories as local folders: a cloud repository (`s3://`,
/// `gs://`, `as://`) as the empty folder its copy will be made in (when
/// the models load, so the health endpoints answer during a long
/// download).
fn copies_of_cloud_repositories(
    repositories: Vec<PathBuf>,
) -> Result<(Vec<PathBuf>, Vec<Arc<RepositoryCopy>>), String> {
    let mut local = Vec::new();
    let mut copies = Vec::new();
    for repository in repositories {
        match repository.to_str().filter(|path| is_cloud_path(path)) {
            Some(uri) => {
                let copy = Arc::new(RepositoryCopy::create(uri, |name| std::env::var(name).ok())?);
                local.push(copy.local_path().to_path_buf());
                copies.push(copy);
            }
            None => local.push(repository),
        }
    }
    Ok((local, copies))
}

/// In mode `poll`, looks at the repositories every `seconds` until the
/// server stops, as Triton does, so that the models follow them.
fn follow_repository(manager: &Arc<ModelManager>, seconds: u64, stopped: ShutdownSignal) {
    if seconds == 0 {
        tracing::warn!("--model-control-mode=poll with --repository-poll-secs=0: the repository is not polled");
        return;
    }
    tracing::info!("polling the model repository every {seconds} s");
    let manager = Arc::clone(manager);
    let interval = Duration::from_secs(seconds);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // A poll that took longer than the interval is followed by one
        // whole interval, not by a burst of polls.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = std::pin::pin!(stopped.fired());
        loop {
            tokio::select! {
                _ = ticks.tick() => manager.poll_repositories().await,
                () = &mut stopping => return,
            }
        }
    });
}

/// A setting read from the command line, with the warnings about what
/// was ignored in reading it logged.
fn with_warnings_logged<T>((value, warnings): (T, Vec<String>)) -> T {
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    value
}

/// Binds an endpoint's listener, with SO_REUSEPORT when `reuse_port`
/// (Triton's `--reuse-http-port`, `--reuse-grpc-port`); the error is
/// logged.
fn listen(protocol: &str, address: SocketAddr, reuse_port: bool) -> Option<TcpListener> {
    let bound = (|| {
        let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As tokio's own `TcpListener::bind`: a restarted server can bind
        // while connections of the last one linger in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        if reuse_port {
            socket.set_reuseport(true)?;
        }
        socket.bind(address)?;
        socket.listen(LISTEN_BACKLOG)
    })();
    match bound {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::error!("cannot listen for {protocol} on {address}: {error}");
            None
        }
    }
}

/// Connections the kernel queues for an endpoint before it accepts them,
/// as many as tokio's `TcpListener::bind` allows.
const LISTEN_BACKLOG: u32 = 1024;

fn local_address(listener: &TcpListener) -> String {
    listener.local_addr().map_or_else(|error| format!("an unknown address ({error})"), |address| address.to_string())
}

/// Turns the first SIGTERM or SIGINT into a stop: endpoints stop accepting
/// connections and answer the requests already in flight.
async fn forward_signals(stop: ShutdownTrigger) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM: {error}");
                futures::future::pending::<()>().await;
            }
        }
    };
    let name = tokio::select! {
        _ = terminate => "SIGTERM",
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => "SIGINT",
            Err(error) => {
                tracing::warn!("cannot listen for SIGINT: {error}");
                return;
            }
        },
    };
    tracing::info!("received {name}: finishing in-flight requests, then exiting");
    stop.trigger();
}

/// Logs the model table Triton users know from its start-up output.
fn log_model_table(manager: &ModelManager) {
    let rows: Vec<(String, String, String)> = manager
        .index()
        .into_iter()
        .map(|entry| {
            let version = entry.version.map_or_else(|| "-".to_string(), |version| version.to_string());
            let status = match entry.reason() {
                "" => entry.state.name().to_string(),
                reason => format!("{}: {reason}", entry.state.name()),
            };
            (entry.name, version, status)
        })
        .collect();
    let width = |pick: fn(&(String, String, String)) -> usize, title: &str| {
        rows.iter().map(pick).max().unwrap_or(0).max(title.len())
    };
    let (name_width, version_width, status_width) =
        (width(|row| row.0.len(), "Model"), width(|row| row.1.len(), "Version"), width(|row| row.2.len(), "Status"));
    let line = format!("+-{}-+-{}-+-{}-+", "-".repeat(name_width), "-".repeat(version_width), "-".repeat(status_width));
    let mut table = vec![
        line.clone(),
        format!("| {:name_width$} | {:version_width$} | {:status_width$} |", "Model", "Version", "Status"),
        line.clone(),
    ];
    for (name, version, status) in &rows {
        table.push(format!("| {name:name_width$} | {version:version_width$} | {status:status_width$} |"));
    }
    table.push(line);
    tracing::info!(table = %table.join("\n"));
}
