//! Command-line flags, spelled as `tritonserver` spells them so existing
//! launch commands and container specs work unchanged.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use crate::backend::onnxruntime::GlobalThreadPool;
use crate::grpc::{DEFAULT_KEEPALIVE_TIME, DEFAULT_KEEPALIVE_TIMEOUT, GrpcTls, ResponseCompression};
use crate::logging::LogFormat;
use crate::model_control::ModelControlMode;
use crate::platform::{
    SAGEMAKER_MODEL_DIRECTORY, SAGEMAKER_MULTI_MODEL_DIRECTORY, VertexSettings, nonblank, sagemaker_multi_model,
};
use crate::repository::scan_repositories;
use crate::response_cache::LOCAL_CACHE;
use crate::restricted_api::{ApiRestrictions, GRPC_HEADER_PREFIX, RestrictedGroup};
use crate::scheduler::{RateLimiter, ResourceLimit};
use crate::trace::{OlderTraceFlags, TraceSettings, trace_settings};

/// Serve a Triton model repository of ONNX models over the KServe v2 /
/// Triton inference protocol.
#[derive(Debug, Clone, Parser)]
#[command(name = "tritonserver", version, about)]
pub struct Args {
    /// Model repository directory; repeat for several. Without it, the
    /// repository is found from MODEL_REPOSITORY or a cloud platform's mount
    /// (see the README).
    #[arg(long = "model-repository", visible_alias = "model-store", value_name = "PATH")]
    pub model_repositories: Vec<PathBuf>,

    /// Port of the gRPC service (0 picks a free one).
    #[arg(long, default_value_t = 8001, value_name = "PORT")]
    pub grpc_port: u16,

    /// Address the gRPC service listens on.
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDRESS")]
    pub grpc_address: IpAddr,

    /// Let other processes listen on the gRPC port too (SO_REUSEPORT), so
    /// that several servers share it and the kernel spreads connections.
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub reuse_grpc_port: bool,

    /// Serve gRPC over TLS, with --grpc-server-cert and --grpc-server-key.
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub grpc_use_ssl: bool,

    /// Serve gRPC over TLS and accept only clients whose certificate
    /// --grpc-root-cert signed (implies --grpc-use-ssl).
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub grpc_use_ssl_mutual: bool,

    /// The gRPC server's certificate chain, PEM.
    #[arg(long, value_name = "PATH")]
    pub grpc_server_cert: Option<PathBuf>,

    /// The gRPC server's private key, PEM.
    #[arg(long, value_name = "PATH")]
    pub grpc_server_key: Option<PathBuf>,

    /// The certificate authority that signs client certificates, PEM (for
    /// --grpc-use-ssl-mutual).
    #[arg(long, value_name = "PATH")]
    pub grpc_root_cert: Option<PathBuf>,

    /// Milliseconds of idle time after which the server pings a gRPC
    /// connection's peer.
    #[arg(long, default_value_t = DEFAULT_KEEPALIVE_TIME.as_millis() as u64, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub grpc_keepalive_time: u64,

    /// Milliseconds the peer has to answer that ping before the connection
    /// is closed.
    #[arg(long, default_value_t = DEFAULT_KEEPALIVE_TIMEOUT.as_millis() as u64, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub grpc_keepalive_timeout: u64,

    /// Milliseconds a gRPC connection may live before the server asks the
    /// client to reconnect (0: for ever).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub grpc_max_connection_age: u64,

    /// Milliseconds a gRPC connection past its age has to finish its calls
    /// (0: as long as they take).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub grpc_max_connection_age_grace: u64,

    /// How gRPC inference answers are compressed: `none` (the default),
    /// `low` (gzip), `medium` or `high` (deflate where the client accepts
    /// it, else gzip), as in Triton; other calls' answers never are.
    #[arg(long, value_name = "LEVEL", default_value = "none", value_parser = ResponseCompression::from_name)]
    pub grpc_infer_response_compression_level: ResponseCompression,

    /// Port of the HTTP/REST service (0 picks a free one).
    #[arg(long, env = "TRITONRS_HTTP_PORT", default_value_t = 8000, value_name = "PORT")]
    pub http_port: u16,

    /// Address the HTTP/REST service listens on.
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDRESS")]
    pub http_address: IpAddr,

    /// Let other processes listen on the HTTP port too (SO_REUSEPORT).
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub reuse_http_port: bool,

    /// Largest HTTP request JSON, raw binary body or decompressed body
    /// accepted, in bytes (larger ones get 413); binary tensor data after
    /// a JSON header does not count, as in Triton.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub http_max_input_size: usize,

    /// Restricts HTTP API categories to requests carrying a header:
    /// `<category>,...:<key>=<value>` (the header `<key>` with `<value>`);
    /// repeat for groups with other headers. Categories: health, metadata,
    /// inference, shared-memory, model-config, model-repository,
    /// statistics, trace, logging.
    #[arg(long, value_name = "CATEGORIES:KEY=VALUE", value_parser = RestrictedGroup::parse)]
    pub http_restricted_api: Vec<RestrictedGroup>,

    /// Restricts gRPC protocol categories as --http-restricted-api does
    /// HTTP's; the header is `triton-grpc-protocol-<key>`.
    #[arg(long, value_name = "CATEGORIES:KEY=VALUE", value_parser = RestrictedGroup::parse)]
    pub grpc_restricted_protocol: Vec<RestrictedGroup>,

    /// Path of the cloud health check route (200 when ready, else 503).
    #[arg(long, env = "TRITONRS_HEALTH_ROUTE", default_value = "/health", value_name = "PATH", value_parser = route_path)]
    pub health_route: String,

    /// Path of the cloud predict route.
    #[arg(long, env = "TRITONRS_PREDICT_ROUTE", default_value = "/predict", value_name = "PATH", value_parser = route_path)]
    pub predict_route: String,

    /// Model the predict route serves when the request names none (with the
    /// `model_name` header); by default the repository's only model.
    /// `--vertex-ai-default-model`, Triton's flag for its Vertex AI predict
    /// route, is the same.
    #[arg(long, env = "TRITONRS_PREDICT_MODEL", value_name = "NAME", visible_alias = "vertex-ai-default-model")]
    pub predict_model: Option<String>,

    /// Port of the Prometheus metrics endpoint (0 picks a free one).
    #[arg(long, default_value_t = 8002, value_name = "PORT")]
    pub metrics_port: u16,

    /// Address the metrics endpoint listens on; by default the HTTP
    /// service's address when HTTP is served, else 0.0.0.0, as in Triton.
    #[arg(long, value_name = "ADDRESS")]
    pub metrics_address: Option<IpAddr>,

    /// Serve gRPC.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_grpc: bool,

    /// Serve HTTP/REST.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_http: bool,

    /// Serve Prometheus metrics.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_metrics: bool,

    /// Serve Amazon SageMaker's routes (`GET /ping`, `POST /invocations`)
    /// on --sagemaker-port; implied by `serve` as the first argument.
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_sagemaker: bool,

    /// Port of the SageMaker routes, on the HTTP address.
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    pub sagemaker_port: u16,

    /// Serve Vertex AI's health and predict routes (`AIP_HEALTH_ROUTE`,
    /// `AIP_PREDICT_ROUTE`) on --vertex-ai-port, and nothing else there;
    /// true by default under `AIP_MODE=PREDICTION`, which also turns HTTP
    /// and gRPC off unless their flags are given, as in Triton.
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_vertex_ai: bool,

    /// Port of the Vertex AI routes, on the HTTP address; `AIP_HTTP_PORT`
    /// when Vertex AI sets it.
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    pub vertex_ai_port: u16,

    /// Where SageMaker unpacks a multi-model endpoint's archives: `POST
    /// /models` loads only a `url` of the form `<DIR>/<hash>/model[/<subdir>]`.
    #[arg(long, env = "TRITONRS_SAGEMAKER_MULTI_MODEL_DIRECTORY", default_value = SAGEMAKER_MULTI_MODEL_DIRECTORY,
          value_name = "DIR")]
    pub sagemaker_multi_model_directory: PathBuf,

    /// Include the CPU metrics (utilization and memory) in the metrics.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_cpu_metrics: bool,

    /// Include the GPU metrics (utilization, memory, power and energy of
    /// each GPU the server may use, read from the NVIDIA driver) in the
    /// metrics.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_gpu_metrics: bool,

    /// A metrics setting, as in Triton: `counter_latencies=false`,
    /// `summary_latencies=true`, `summary_quantiles=<q>:<error>,...`,
    /// `histogram_latencies=true`; repeatable.
    #[arg(long, value_name = "SETTING=VALUE")]
    pub metrics_config: Vec<String>,

    /// Milliseconds between two samples of the CPU and GPU figures.
    #[arg(long, default_value_t = 2000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub metrics_interval_ms: u64,

    /// Let clients register system shared-memory regions and pass tensors
    /// through them (off by default, as in Triton since 2.69).
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_client_shm: bool,

    /// Model control mode: `none` loads every model at start and refuses
    /// load and unload requests; `explicit` loads only the `--load-model`
    /// models and lets clients load and unload models; `poll` loads every
    /// model at start and follows the repository's changes.
    #[arg(long, value_enum, ignore_case = true, default_value = "none", value_name = "MODE")]
    pub model_control_mode: ModelControlMode,

    /// In mode `poll`, seconds between two looks at the repository; 0 never
    /// looks again.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub repository_poll_secs: u64,

    /// Model to load at start in mode `explicit`; repeat for several, `*`
    /// for all.
    #[arg(long = "load-model", value_name = "NAME")]
    pub load_model: Vec<String>,

    /// Custom configuration name: a model's `configs/<NAME>.pbtxt`, where
    /// it has one, in place of its `config.pbtxt`, as in Triton.
    #[arg(long, value_name = "NAME", value_parser = config_name)]
    pub model_config_name: Option<String>,

    /// How many more times a model version that failed to load is tried.
    #[arg(long, default_value_t = 0, value_name = "COUNT")]
    pub model_load_retry_count: u32,

    /// How many models load at once (their instances created and warmed
    /// up side by side), as in Triton.
    #[arg(long, default_value_t = 4, value_name = "COUNT", value_parser = clap::value_parser!(u16).range(1..))]
    pub model_load_thread_count: u16,

    /// Never complete a configuration from the model file: every model needs
    /// a config.pbtxt listing its inputs and outputs.
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub strict_model_config: bool,

    /// Triton's newer name for --strict-model-config=true: configurations
    /// are never completed from the model files.
    #[arg(long)]
    pub disable_auto_complete_config: bool,

    /// Ready only when every model is ready (Triton's default); with false,
    /// ready once the models have been loaded, whether or not they all
    /// loaded, so that one failed model does not take a replica out of
    /// service.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub strict_readiness: bool,

    /// Triton's model namespacing: models of the same name in different
    /// repositories all load, each in its repository's namespace; an
    /// ensemble's steps run the models of its own repository first, and a
    /// request naming a model that several repositories hold is refused as
    /// ambiguous.
    #[arg(long, default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub model_namespacing: bool,

    /// Exit after loading if any model failed to load (Triton's default);
    /// with false, the other models are served.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub exit_on_error: bool,

    /// Seconds to let in-flight requests finish and the models unload after
    /// SIGTERM or SIGINT.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub exit_timeout_secs: u64,

    /// Verbose logging: 0 is off, 1 debug, 2 and up trace; `true` and
    /// `false` stand for 1 and 0, as in Triton.
    #[arg(long, default_value = "0", value_name = "LEVEL", value_parser = verbose_level)]
    pub log_verbose: u32,

    /// Write INFO messages.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub log_info: bool,

    /// Write WARNING messages.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub log_warning: bool,

    /// Write ERROR messages.
    #[arg(long, default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub log_error: bool,

    /// Log record format, as in Triton: `default` (`I1123 20:05:41.824479
    /// ...`) or `ISO8601` (`2026-11-23T20:05:41Z I ...`).
    #[arg(long, default_value = "default", value_name = "FORMAT", value_parser = log_format)]
    pub log_format: LogFormat,

    /// Append the log to this file instead of writing it to standard
    /// output (information) and standard error (warnings and errors).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Trace setting, as in Triton: `<setting>=<value>` for `level`
    /// (OFF, TIMESTAMPS, TENSORS; repeatable), `rate` (one request in how
    /// many), `count` (-1 for no limit) and `mode`; `triton,file=<path>`
    /// and `triton,log-frequency=<traces per file>` for the trace file.
    #[arg(long = "trace-config", value_name = "[MODE,]SETTING=VALUE")]
    pub trace_config: Vec<String>,

    /// Deprecated in Triton: `--trace-config triton,file=<path>`.
    #[arg(long, value_name = "PATH")]
    pub trace_file: Option<String>,

    /// Deprecated in Triton: `--trace-config level=<level>`.
    #[arg(long = "trace-level", value_name = "LEVEL")]
    pub trace_level: Vec<String>,

    /// Deprecated in Triton: `--trace-config rate=<rate>`.
    #[arg(long, value_name = "RATE")]
    pub trace_rate: Option<u32>,

    /// Deprecated in Triton: `--trace-config count=<count>`.
    #[arg(long, value_name = "COUNT", allow_negative_numbers = true)]
    pub trace_count: Option<i32>,

    /// Deprecated in Triton: `--trace-config triton,log-frequency=<n>`.
    #[arg(long, value_name = "COUNT")]
    pub trace_log_frequency: Option<u32>,

    /// Response cache setting, as in Triton: `local,size=<bytes>` gives
    /// the models whose configuration enables `response_cache` one shared
    /// cache of that many bytes (0 turns it off).
    #[arg(long = "cache-config", value_name = "CACHE,SETTING=VALUE")]
    pub cache_config: Vec<String>,

    /// Rate limiting, as in Triton: `off` (the default) runs a batch as
    /// soon as an instance is free; `execution_count` makes the instances
    /// whose group has a `rate_limiter` wait for the resources it lists,
    /// taking turns by its priority and how often each has run.
    #[arg(long, value_name = "MODE", default_value = "off", value_parser = rate_limit_mode)]
    pub rate_limit: RateLimitMode,

    /// Copies of a rate-limiter resource, as
    /// `<name>:<count>[:<device>]` (no device: every device); repeatable.
    /// By default a resource has as many as the largest claim on it.
    #[arg(long, value_name = "NAME:COUNT[:DEVICE]", value_parser = ResourceLimit::parse)]
    pub rate_limit_resource: Vec<ResourceLimit>,

    /// Deprecated in Triton: `--cache-config local,size=<bytes>`.
    #[arg(long, value_name = "BYTES")]
    pub response_cache_byte_size: Option<u64>,

    /// Threads that run the HTTP, gRPC and metrics frontends (network I/O,
    /// decoding and encoding); model instances run on threads of their own.
    /// By default half the available cores, at least one, so that the
    /// frontends and the instances' compute threads do not crowd each other.
    #[arg(long, env = "TRITONRS_WORKER_THREADS", value_name = "COUNT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,

    /// Server name reported by ServerMetadata.
    #[arg(long, default_value = "triton", value_name = "NAME")]
    pub id: String,

    /// Backend setting as `<backend>,<name>=<value>`, for example
    /// `onnxruntime,library=/opt/ort/libonnxruntime.so.1.31.1` or
    /// `onnxruntime,default-max-batch-size=8`.
    #[arg(long, value_name = "SETTING")]
    pub backend_config: Vec<String>,
}

/// Triton's `--rate-limit` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitMode {
    /// Instances run as soon as they are free.
    Off,
    /// Instances wait for their rate-limiter resources and take turns.
    ExecutionCount,
}

/// A rate-limit mode by Triton's name for it, in any case.
fn rate_limit_mode(name: &str) -> Result<RateLimitMode, String> {
    match name.to_ascii_lowercase().as_str() {
        "off" => Ok(RateLimitMode::Off),
        "execution_count" => Ok(RateLimitMode::ExecutionCount),
        _ => Err(format!("'{name}' is not a rate-limit mode: use execution_count or off")),
    }
}

/// A log format by Triton's name for it.
fn log_format(name: &str) -> Result<LogFormat, String> {
    LogFormat::from_name(name).ok_or_else(|| format!("'{name}' is not a log format: use default or ISO8601"))
}

/// A verbose level: a number, or `true` (1) and `false` (0), as Triton
/// reads it (the `serve` script of its SageMaker image passes `true`).
fn verbose_level(text: &str) -> Result<u32, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(1),
        "false" => Ok(0),
        number => number.parse().map_err(|_| format!("'{text}' is not a verbose level: use a number, true or false")),
    }
}

/// A custom configuration name is a file name without spaces, as Triton
/// requires.
fn config_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('/') {
        return Err(format!("'{name}' is not a configuration name: it names configs/<name>.pbtxt, without spaces"));
    }
    Ok(name.to_string())
}

/// A route path must be absolute and must not collide with the KServe v2
/// routes.
fn route_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("'{path}' must start with /"));
    }
    if path == "/v2" || path.starts_with("/v2/") {
        return Err(format!("'{path}' would shadow the KServe v2 routes under /v2"));
    }
    if path.contains(['{', '}', '*']) {
        return Err(format!("'{path}' must be a plain path without patterns"));
    }
    Ok(path.to_string())
}

/// Settings given through `--backend-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// `onnxruntime,library=PATH`: the ONNX Runtime shared library.
    pub onnxruntime_library: Option<PathBuf>,
    /// `default-max-batch-size=N`: max_batch_size for auto-completed models
    /// that can batch.
    pub default_max_batch_size: i32,
    /// `onnxruntime,enable-global-threadpool=1`, with
    /// `intra_op_thread_count=N` and `inter_op_thread_count=N`: one thread
    /// pool that every session shares.
    pub global_thread_pool: Option<GlobalThreadPool>,
}

impl Args {
    /// The address the metrics endpoint listens on: `--metrics-address`,
    /// else the HTTP address when HTTP is served, else every interface.
    pub fn metrics_listen_address(&self) -> IpAddr {
        self.metrics_address.unwrap_or(if self.allow_http { self.http_address } else { IpAddr::from([0, 0, 0, 0]) })
    }

    /// The number of frontend threads: `--worker-threads`, or half of
    /// `cores`, at least one.
    pub fn frontend_threads(&self, cores: usize) -> usize {
        self.worker_threads.map_or((cores / 2).max(1), usize::from)
    }

    /// Whether configurations must be complete as written
    /// (`--strict-model-config` or `--disable-auto-complete-config`).
    pub fn auto_complete_disabled(&self) -> bool {
        self.strict_model_config || self.disable_auto_complete_config
    }

    /// The gRPC endpoint's TLS files, read, when --grpc-use-ssl or
    /// --grpc-use-ssl-mutual asks for TLS; a missing or unreadable file is
    /// an error naming its flag.
    pub fn grpc_tls(&self) -> Result<Option<GrpcTls>, String> {
        if !self.grpc_use_ssl && !self.grpc_use_ssl_mutual {
            return Ok(None);
        }
        let read = |path: &Option<PathBuf>, flag: &str| -> Result<Vec<u8>, String> {
            let path = path.as_ref().ok_or_else(|| format!("gRPC over TLS needs {flag}=PATH"))?;
            std::fs::read(path).map_err(|error| format!("{flag}: cannot read '{}': {error}", path.display()))
        };
        let certificate = read(&self.grpc_server_cert, "--grpc-server-cert")?;
        let key = read(&self.grpc_server_key, "--grpc-server-key")?;
        let client_ca = match self.grpc_use_ssl_mutual {
            true => Some(read(&self.grpc_root_cert, "--grpc-root-cert")?),
            false => None,
        };
        Ok(Some(GrpcTls { certificate, key, client_ca }))
    }

    /// The rate limiter that `--rate-limit=execution_count` asks for, with
    /// the counts of `--rate-limit-resource`; with rate limiting off, a
    /// warning for resource counts that then mean nothing.
    pub fn rate_limiter(&self) -> (Option<Arc<RateLimiter>>, Vec<String>) {
        match self.rate_limit {
            RateLimitMode::ExecutionCount => {
                (Some(Arc::new(RateLimiter::new(self.rate_limit_resource.clone()))), Vec::new())
            }
            RateLimitMode::Off if !self.rate_limit_resource.is_empty() => {
                (None, vec!["ignoring --rate-limit-resource: --rate-limit is off".to_string()])
            }
            RateLimitMode::Off => (None, Vec::new()),
        }
    }

    /// The HTTP endpoint's restricted categories (`--http-restricted-api`).
    pub fn http_restrictions(&self) -> Result<ApiRestrictions, String> {
        ApiRestrictions::new(&self.http_restricted_api, "", "--http-restricted-api")
    }

    /// The gRPC endpoint's restricted categories
    /// (`--grpc-restricted-protocol`).
    pub fn grpc_restrictions(&self) -> Result<ApiRestrictions, String> {
        ApiRestrictions::new(&self.grpc_restricted_protocol, GRPC_HEADER_PREFIX, "--grpc-restricted-protocol")
    }

    /// The trace settings of `--trace-config` and the older `--trace-*`
    /// flags, with warnings for what is ignored or deprecated.
    pub fn trace_settings(&self) -> Result<(TraceSettings, Vec<String>), String> {
        let older = OlderTraceFlags {
            file: self.trace_file.clone(),
            levels: self.trace_level.clone(),
            rate: self.trace_rate,
            count: self.trace_count,
            log_frequency: self.trace_log_frequency,
        };
        trace_settings(&self.trace_config, &older)
    }

    /// The response cache's size in bytes from `--cache-config` and the
    /// older `--response-cache-byte-size` (`None`: no cache), with
    /// warnings for what is ignored or deprecated. A cache other than
    /// `local` is refused: a server that silently ran without the cache a
    /// deployment asked for would only show it in its latency.
    pub fn response_cache_size(&self) -> Result<(Option<usize>, Vec<String>), String> {
        let mut size = None;
        let mut warnings = Vec::new();
        for setting in &self.cache_config {
            let Some((cache, assignment)) = setting.split_once(',') else {
                return Err(format!("--cache-config={setting}: expected <cache>,<setting>=<value>"));
            };
            if cache != LOCAL_CACHE {
                return Err(format!(
                    "--cache-config={setting}: this server has no '{cache}' cache; its one cache is \
                     '{LOCAL_CACHE}' (--cache-config {LOCAL_CACHE},size=<bytes>)"
                ));
            }
            match assignment.split_once('=') {
                Some(("size", value)) => match value.parse::<u64>() {
                    Ok(bytes) => size = Some(bytes),
                    Err(_) => return Err(format!("--cache-config={setting}: size must be a number of bytes")),
                },
                _ => warnings.push(format!("ignoring --cache-config={setting}: the local cache's one setting is size")),
            }
        }
        if let Some(bytes) = self.response_cache_byte_size {
            if size.is_some() {
                warnings.push("ignoring --response-cache-byte-size: --cache-config sets the size".to_string());
            } else {
                warnings.push(format!(
                    "--response-cache-byte-size is deprecated in Triton; use --cache-config {LOCAL_CACHE},size={bytes}"
                ));
                size = Some(bytes);
            }
        }
        let size = size
            .filter(|&bytes| bytes > 0)
            .map(|bytes| {
                usize::try_from(bytes)
                    .map_err(|_| format!("a cache of {bytes} bytes is more than this machine addresses"))
            })
            .transpose()?;
        Ok((size, warnings))
    }

    /// Interprets `--backend-config` values; settings this server does not
    /// know are returned as warnings.
    pub fn backend_config(&self) -> (BackendConfig, Vec<String>) {
        let mut config =
            BackendConfig { onnxruntime_library: None, default_max_batch_size: 4, global_thread_pool: None };
        let mut warnings = Vec::new();
        let (mut global_pool, mut pool_threads) = (false, GlobalThreadPool::default());
        for setting in &self.backend_config {
            let (backend, assignment) = match setting.split_once(',') {
                Some((backend, assignment)) => (backend, assignment),
                None => ("", setting.as_str()),
            };
            let Some((name, value)) = assignment.split_once('=') else {
                warnings.push(format!("ignoring --backend-config={setting}: expected <backend>,<name>=<value>"));
                continue;
            };
            match (backend, name) {
                ("onnxruntime", "library") => config.onnxruntime_library = Some(PathBuf::from(value)),
                ("" | "onnxruntime", "default-max-batch-size") => match value.parse() {
                    Ok(size) => config.default_max_batch_size = size,
                    Err(_) => warnings.push(format!("ignoring --backend-config={setting}: '{value}' is not a number")),
                },
                ("onnxruntime", "enable-global-threadpool") => match crate::backend::onnxruntime::parse_bool(value) {
                    Some(enable) => global_pool = enable,
                    None => warnings.push(format!("ignoring --backend-config={setting}: expected 0 or 1")),
                },
                ("onnxruntime", "intra_op_thread_count" | "inter_op_thread_count") => match value.parse() {
                    Ok(threads) if name == "intra_op_thread_count" => pool_threads.intra_op_threads = threads,
                    Ok(threads) => pool_threads.inter_op_threads = threads,
                    Err(_) => warnings.push(format!("ignoring --backend-config={setting}: '{value}' is not a number")),
                },
                _ => warnings.push(format!("ignoring --backend-config={setting}: not a setting this server uses")),
            }
        }
        if global_pool {
            config.global_thread_pool = Some(pool_threads);
        } else if pool_threads != GlobalThreadPool::default() {
            // As in Triton's ONNX Runtime backend, where only the global
            // pool reads them; a model's own counts are its `parameters`.
            warnings.push(
                "ignoring --backend-config=onnxruntime,intra_op_thread_count/inter_op_thread_count: they size the \
                 global thread pool, which enable-global-threadpool=1 turns on"
                    .to_string(),
            );
        }
        (config, warnings)
    }
}

/// A parsed command line and what parsing it had to say.
#[derive(Debug, Clone)]
pub struct CommandLine {
    /// The settings.
    pub args: Args,
    /// Flags that were ignored.
    pub warnings: Vec<String>,
    /// Settings taken from a platform's environment variables.
    pub notes: Vec<String>,
}

/// Parses the command line with the process environment; see
/// [`parse_with_env`].
pub fn parse<I, T>(argv: I) -> Result<CommandLine, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    parse_with_env(argv, |name| std::env::var(name).ok())
}

/// Parses the command line. Flags of `tritonserver` that this server does
/// not have are dropped with a warning rather than refused, so a launch
/// command written for Triton still starts, as does one that names
/// `tritonserver` again as its first argument (a container `args:` list
/// written for Triton's images). Vertex AI's `AIP_HTTP_PORT`,
/// `AIP_HEALTH_ROUTE` and `AIP_PREDICT_ROUTE`, read through `var`, set the
/// HTTP port and cloud routes unless a flag or `TRITONRS_*` variable does.
pub fn parse_with_env<I, T>(argv: I, var: impl Fn(&str) -> Option<String>) -> Result<CommandLine, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    if argv.get(1).is_some_and(|first| first == "tritonserver" || first.to_string_lossy().ends_with("/tritonserver")) {
        argv.remove(1);
    }
    // SageMaker starts a container as `docker run IMAGE serve`; the serve
    // script of Triton's image adds SAGEMAKER_TRITON_ADDITIONAL_ARGS.
    let sagemaker_serve = argv.get(1).is_some_and(|first| first == SAGEMAKER_SERVE);
    if sagemaker_serve {
        argv.remove(1);
        if let Some(additional) = var("SAGEMAKER_TRITON_ADDITIONAL_ARGS") {
            argv.extend(additional.split_whitespace().map(OsString::from));
        }
    }
    let command = Args::command();
    let known: Vec<String> = command
        .get_arguments()
        .flat_map(|arg| arg.get_long().into_iter().chain(arg.get_all_aliases().into_iter().flatten()))
        .map(str::to_string)
        .chain(["help".to_string(), "version".to_string()])
        .collect();
    let mut kept = Vec::with_capacity(argv.len());
    let mut warnings = Vec::new();
    let mut tokens = argv.into_iter().peekable();
    if let Some(program) = tokens.next() {
        kept.push(program);
    }
    while let Some(token) = tokens.next() {
        let text = token.to_string_lossy();
        let Some(flag) = text.strip_prefix("--") else {
            kept.push(token);
            continue;
        };
        let (name, has_value) = match flag.split_once('=') {
            Some((name, _)) => (name, true),
            None => (flag, false),
        };
        if name.is_empty() || known.iter().any(|known| known == name) {
            kept.push(token);
            continue;
        }
        // The server takes no positional arguments, so a word after an
        // unknown flag can only be that flag's value.
        let value = match tokens.peek() {
            Some(next) if !has_value && !next.to_string_lossy().starts_with('-') => tokens.next(),
            _ => None,
        };
        let shown = match value {
            Some(value) => format!("{text} {}", value.to_string_lossy()),
            None => text.to_string(),
        };
        warnings.push(format!("ignoring unsupported tritonserver flag {shown}"));
    }
    let matches = Args::command().try_get_matches_from(kept)?;
    let mut args = Args::from_arg_matches(&matches)?;
    let mut notes = apply_vertex_settings(&mut args, &matches, &var)?;
    if sagemaker_serve {
        notes.extend(apply_sagemaker_serve(&mut args, &matches, &var)?);
    }
    Ok(CommandLine { args, warnings, notes })
}

/// The first argument SageMaker gives a container it starts.
const SAGEMAKER_SERVE: &str = "serve";

/// The empty repository a multi-model endpoint starts with (Triton's serve
/// script uses the same).
const SAGEMAKER_MULTI_MODEL_START_REPOSITORY: &str = "/tmp/sagemaker";

/// What `serve` means, as the `serve` script of Triton's SageMaker image
/// has it: the SageMaker routes on 8080 (`SAGEMAKER_BIND_TO_PORT`), the
/// repository `/opt/ml/model` of which only the endpoint's model loads
/// (`SAGEMAKER_TRITON_DEFAULT_MODEL_NAME`, or the only one), and no other
/// endpoint unless `SAGEMAKER_TRITON_ALLOW_GRPC` or
/// `SAGEMAKER_TRITON_ALLOW_METRICS` asks for it (on
/// `SAGEMAKER_TRITON_GRPC_PORT`, `SAGEMAKER_TRITON_METRICS_PORT`); flags
/// given still win. With `SAGEMAKER_MULTI_MODEL=true`, a multi-model
/// endpoint: no model at start (the repository is an empty
/// `/tmp/sagemaker`), mode `explicit`, models loaded through `/models`.
fn apply_sagemaker_serve(
    args: &mut Args,
    matches: &clap::ArgMatches,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, clap::Error> {
    let invalid = |message: String| Args::command().error(clap::error::ErrorKind::ValueValidation, message);
    let defaulted = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
    let var = |name: &str| nonblank(var(name));
    let multi_model = sagemaker_multi_model(var);
    let allowed = |name: &str| -> Result<bool, clap::Error> {
        match var(name).map(|value| value.to_ascii_lowercase()).as_deref() {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(invalid(format!("{name} '{other}' must be true or false"))),
        }
    };
    let mut notes = vec!["`serve`: SageMaker's /ping and /invocations".to_string()];
    args.allow_sagemaker = true;
    if defaulted("allow_http") {
        args.allow_http = false;
    }
    if defaulted("allow_grpc") {
        args.allow_grpc = allowed("SAGEMAKER_TRITON_ALLOW_GRPC")?;
    }
    if defaulted("allow_metrics") {
        args.allow_metrics = allowed("SAGEMAKER_TRITON_ALLOW_METRICS")?;
    }
    if let Some(port) = var("SAGEMAKER_BIND_TO_PORT").filter(|_| defaulted("sagemaker_port")) {
        args.sagemaker_port =
            port.parse().map_err(|_| invalid(format!("SAGEMAKER_BIND_TO_PORT '{port}' is not a port number")))?;
        notes.push(format!("SageMaker port {port} from SAGEMAKER_BIND_TO_PORT"));
    }
    for (variable, port, id) in [
        ("SAGEMAKER_TRITON_GRPC_PORT", &mut args.grpc_port, "grpc_port"),
        ("SAGEMAKER_TRITON_METRICS_PORT", &mut args.metrics_port, "metrics_port"),
    ] {
        if let Some(value) = var(variable).filter(|_| defaulted(id)) {
            *port = value.parse().map_err(|_| invalid(format!("{variable} '{value}' is not a port number")))?;
        }
    }
    if multi_model {
        // Models come and go with the endpoint's load and unload requests,
        // each archive a repository of its own; the repository the server
        // starts with is an empty one, as in Triton's serve script.
        if args.model_repositories.is_empty() {
            let empty = PathBuf::from(SAGEMAKER_MULTI_MODEL_START_REPOSITORY);
            std::fs::create_dir_all(&empty)
                .map_err(|error| invalid(format!("cannot create {}: {error}", empty.display())))?;
            args.model_repositories.push(empty);
        }
        if defaulted("model_control_mode") {
            args.model_control_mode = ModelControlMode::Explicit;
        }
        notes.push(format!(
            "SAGEMAKER_MULTI_MODEL=true: a multi-model endpoint, models loaded from {} on request (/models)",
            args.sagemaker_multi_model_directory.display()
        ));
        return Ok(notes);
    }
    if args.model_repositories.is_empty() {
        args.model_repositories.push(PathBuf::from(SAGEMAKER_MODEL_DIRECTORY));
        notes.push(format!("model repository {SAGEMAKER_MODEL_DIRECTORY} (SageMaker)"));
    }
    // The endpoint serves one model: the serve script loads only it, in
    // explicit mode (an ensemble brings its composing models). A missing
    // repository is left for the start to report, as for any server.
    if let ([repository], true, true) =
        (args.model_repositories.as_slice(), defaulted("model_control_mode"), args.load_model.is_empty())
        && repository.is_dir()
    {
        let (model, note) =
            sagemaker_endpoint_model(repository, var("SAGEMAKER_TRITON_DEFAULT_MODEL_NAME")).map_err(invalid)?;
        notes.extend(note);
        notes.push(format!("loading only model '{model}', the endpoint's model (SageMaker)"));
        args.model_control_mode = ModelControlMode::Explicit;
        args.load_model = vec![model];
    }
    Ok(notes)
}

/// The model a single-model SageMaker endpoint serves from `repository`,
/// chosen as the serve script of Triton's SageMaker image chooses it:
/// `default` (`SAGEMAKER_TRITON_DEFAULT_MODEL_NAME`), which must be a
/// folder of the repository, else the repository's only folder, with a
/// note saying so. A repository that is itself a model folder (it holds
/// `config.pbtxt`) is refused.
fn sagemaker_endpoint_model(repository: &Path, default: Option<String>) -> Result<(String, Option<String>), String> {
    let shown = repository.display();
    if repository.join("config.pbtxt").is_file() {
        return Err(format!(
            "{shown} holds config.pbtxt itself: a SageMaker model archive must hold the model's folder \
             (<model>/config.pbtxt, <model>/1/model.onnx)"
        ));
    }
    if let Some(model) = default {
        if !repository.join(&model).is_dir() {
            return Err(format!("SAGEMAKER_TRITON_DEFAULT_MODEL_NAME '{model}': {shown} has no folder of that name"));
        }
        return Ok((model, None));
    }
    let folders: Vec<String> = scan_repositories(&[repository.to_path_buf().into()], false)?
        .models
        .into_iter()
        .map(|model| model.name)
        .collect();
    match folders.as_slice() {
        [] => Err(format!("no model found in the model repository {shown}")),
        [only] => Ok((
            only.clone(),
            Some(format!("no SAGEMAKER_TRITON_DEFAULT_MODEL_NAME: serving the repository's only model, '{only}'")),
        )),
        several => Err(format!(
            "{shown} holds several models ({}): set SAGEMAKER_TRITON_DEFAULT_MODEL_NAME to the one the endpoint \
             serves",
            several.join(", ")
        )),
    }
}

fn apply_vertex_settings(
    args: &mut Args,
    matches: &clap::ArgMatches,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, clap::Error> {
    let invalid = |message: String| Args::command().error(clap::error::ErrorKind::ValueValidation, message);
    let vertex = VertexSettings::from_env(var).map_err(invalid)?;
    let defaulted = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
    let mut notes = Vec::new();
    if vertex.prediction {
        if defaulted("allow_vertex_ai") {
            args.allow_vertex_ai = true;
            notes.push("AIP_MODE=PREDICTION: serving Vertex AI's routes on the Vertex AI port".to_string());
        }
        for (id, allowed) in [("allow_http", &mut args.allow_http), ("allow_grpc", &mut args.allow_grpc)] {
            if defaulted(id) {
                *allowed = false;
            }
        }
    }
    // AIP_HTTP_PORT is the Vertex AI port; without the Vertex AI endpoint,
    // the HTTP port, whose predict and health routes then follow AIP_*.
    let (port_id, port, what) = match args.allow_vertex_ai {
        true => ("vertex_ai_port", &mut args.vertex_ai_port, "Vertex AI port"),
        false => ("http_port", &mut args.http_port, "HTTP port"),
    };
    if let Some(value) = vertex.http_port.filter(|_| defaulted(port_id)) {
        *port = value;
        notes.push(format!("{what} {value} from AIP_HTTP_PORT (Vertex AI)"));
    }
    if let Some(route) = vertex.health_route.filter(|_| defaulted("health_route")) {
        args.health_route = route_path(&route).map_err(|error| invalid(format!("AIP_HEALTH_ROUTE: {error}")))?;
        notes.push(format!("health route {route} from AIP_HEALTH_ROUTE (Vertex AI)"));
    }
    if let Some(route) = vertex.predict_route.filter(|_| defaulted("predict_route")) {
        args.predict_route = route_path(&route).map_err(|error| invalid(format!("AIP_PREDICT_ROUTE: {error}")))?;
        notes.push(format!("predict route {route} from AIP_PREDICT_ROUTE (Vertex AI)"));
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triton_style_flags_parse() {
        let CommandLine { args, warnings, .. } = parse([
            "tritonserver",
            "--model-repository=/models",
            "--model-repository",
            "/more",
            "--grpc-port=9001",
            "--strict-model-config=true",
            "--exit-on-error=false",
            "--allow-http=0",
            "--log-verbose=1",
            "--id=edge",
        ])
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(args.model_repositories, [PathBuf::from("/models"), PathBuf::from("/more")]);
        assert_eq!(args.grpc_port, 9001);
        assert!(args.strict_model_config);
        assert!(!args.exit_on_error);
        assert!(!args.allow_http);
        assert!(args.allow_grpc);
        assert_eq!(args.log_verbose, 1);
        assert_eq!(args.id, "edge");
    }

    #[test]
    fn defaults_match_triton() {
        let args = parse(["tritonserver", "--model-store=/m"]).unwrap().args;
        assert_eq!((args.http_port, args.grpc_port, args.metrics_port), (8000, 8001, 8002));
        assert!(args.exit_on_error);
        assert!(!args.strict_model_config);
        assert_eq!(args.id, "triton");
    }

    #[test]
    fn cpu_metrics_are_on_every_two_seconds_by_default() {
        let args = parse(["tritonserver", "--model-store=/m"]).unwrap().args;
        assert!(args.allow_cpu_metrics);
        assert_eq!(args.metrics_interval_ms, 2000);
        let args =
            parse(["tritonserver", "--model-store=/m", "--allow-cpu-metrics=false", "--metrics-interval-ms=500"])
                .unwrap()
                .args;
        assert!(!args.allow_cpu_metrics);
        assert_eq!(args.metrics_interval_ms, 500);
        assert!(parse(["tritonserver", "--model-store=/m", "--metrics-interval-ms=0"]).is_err());
    }

    #[test]
    fn metrics_listen_where_triton_listens() {
        let address = |flags: &[&str]| {
            let argv = ["tritonserver", "--model-store=/m"].iter().chain(flags);
            parse(argv).unwrap().args.metrics_listen_address().to_string()
        };
        assert_eq!(address(&[]), "0.0.0.0");
        assert_eq!(address(&["--http-address=127.0.0.1"]), "127.0.0.1");
        assert_eq!(address(&["--http-address=127.0.0.1", "--allow-http=false"]), "0.0.0.0");
        assert_eq!(address(&["--http-address=127.0.0.1", "--metrics-address=::1"]), "::1");
    }

    #[test]
    fn frontend_threads_default_to_half_the_cores() {
        let args = parse(["tritonserver", "--model-store=/m"]).unwrap().args;
        assert_eq!((args.frontend_threads(1), args.frontend_threads(2), args.frontend_threads(16)), (1, 1, 8));
        let args = parse(["tritonserver", "--model-store=/m", "--worker-threads=3"]).unwrap().args;
        assert_eq!(args.frontend_threads(16), 3);
        assert!(parse(["tritonserver", "--model-store=/m", "--worker-threads=0"]).is_err());
    }

    #[test]
    fn unknown_triton_flags_warn_instead_of_failing() {
        let CommandLine { args, warnings, .. } = parse([
            "tritonserver",
            "--model-repository=/m",
            "--pinned-memory-pool-byte-size=0",
            "--model-load-gpu-limit",
            "0:0.5",
            "--buffer-manager-thread-count=2",
            "--grpc-port=1234",
        ])
        .unwrap();
        assert_eq!(args.grpc_port, 1234);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[1].contains("--model-load-gpu-limit 0:0.5"), "{warnings:?}");
    }

    #[test]
    fn auto_complete_is_disabled_by_either_flag() {
        let parsed = |flag: &str| parse(["tritonserver", "--model-store=/m", flag]).unwrap();
        assert!(!parsed("--id=x").args.auto_complete_disabled());
        assert!(parsed("--strict-model-config=true").args.auto_complete_disabled());
        let newer = parsed("--disable-auto-complete-config");
        assert!(newer.args.auto_complete_disabled());
        assert!(newer.warnings.is_empty(), "{:?}", newer.warnings);
    }

    #[test]
    fn the_verbose_level_takes_numbers_and_booleans() {
        let level =
            |value: &str| parse(["tritonserver", &format!("--log-verbose={value}")]).map(|c| c.args.log_verbose);
        assert_eq!((level("2").unwrap(), level("true").unwrap(), level("False").unwrap()), (2, 1, 0));
        assert!(level("loud").is_err());
    }

    #[test]
    fn the_vertex_default_model_is_the_predict_model() {
        let parsed = parse(["tritonserver", "--model-store=/m", "--vertex-ai-default-model=mlp"]).unwrap();
        assert_eq!(parsed.args.predict_model.as_deref(), Some("mlp"));
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }

    #[test]
    fn bad_values_fail() {
        assert!(parse(["tritonserver", "--model-repository=/m", "--grpc-port=http"]).is_err());
        assert!(parse(["tritonserver", "--some-triton-flag"]).is_ok());
        assert!(parse(["tritonserver", "positional"]).is_err());
    }

    #[test]
    fn a_repeated_tritonserver_is_the_program_name() {
        // `command: ["tritonrs"]` with `args: ["tritonserver", ...]` as
        // written for Triton's images.
        let args = parse(["tritonrs", "tritonserver", "--model-repository=/m"]).unwrap().args;
        assert_eq!(args.model_repositories, [PathBuf::from("/m")]);
        let args = parse(["tritonrs", "/opt/tritonserver/bin/tritonserver", "--grpc-port=1"]).unwrap().args;
        assert_eq!(args.grpc_port, 1);
    }

    #[test]
    fn serve_starts_a_sagemaker_endpoint() {
        let sagemaker = |key: &str| match key {
            "SAGEMAKER_BIND_TO_PORT" => Some("9090".to_string()),
            "SAGEMAKER_TRITON_ALLOW_METRICS" => Some("true".to_string()),
            _ => None,
        };
        let parsed = parse_with_env(["tritonrs", "serve"], sagemaker).unwrap();
        let args = parsed.args;
        assert!(args.allow_sagemaker && !args.allow_http && !args.allow_grpc && args.allow_metrics);
        assert_eq!(args.sagemaker_port, 9090);
        assert_eq!(args.model_repositories, [PathBuf::from("/opt/ml/model")]);
        assert!(parsed.notes.iter().any(|note| note.contains("SAGEMAKER_BIND_TO_PORT")), "{:?}", parsed.notes);

        // Flags given with it still win.
        let args = parse_with_env(
            ["tritonrs", "serve", "--allow-http=true", "--sagemaker-port=1", "--model-store=/m"],
            |_| None,
        )
        .unwrap()
        .args;
        assert!(args.allow_http && !args.allow_grpc && !args.allow_metrics);
        assert_eq!((args.sagemaker_port, args.model_repositories), (1, vec![PathBuf::from("/m")]));

        // A multi-model endpoint starts with no model, in explicit mode.
        let multi = |key: &str| (key == "SAGEMAKER_MULTI_MODEL").then(|| "true".to_string());
        let repository = tempfile::tempdir().unwrap();
        let store = format!("--model-store={}", repository.path().display());
        let parsed = parse_with_env(["tritonrs", "serve", store.as_str()], multi).unwrap();
        let args = parsed.args;
        assert!(args.allow_sagemaker && !args.allow_http && args.load_model.is_empty());
        assert_eq!(args.model_control_mode, ModelControlMode::Explicit);
        assert_eq!(args.model_repositories, [repository.path().to_path_buf()]);
        assert!(parsed.notes.iter().any(|note| note.contains("/opt/ml/models")), "{:?}", parsed.notes);
        // Without `serve`, nothing SageMaker is on.
        assert!(!parse_with_env(["tritonrs", "--model-store=/m"], sagemaker).unwrap().args.allow_sagemaker);
    }

    #[test]
    fn serve_loads_only_the_endpoints_model() {
        let repository = tempfile::tempdir().unwrap();
        let store = format!("--model-store={}", repository.path().display());
        let serve = |default: Option<&str>| {
            let default = default.map(str::to_string);
            parse_with_env(["tritonrs", "serve", store.as_str()], move |key| {
                (key == "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME").then(|| default.clone()).flatten()
            })
        };
        assert!(serve(None).unwrap_err().to_string().contains("no model found"));
        std::fs::create_dir(repository.path().join("resnet")).unwrap();
        let parsed = serve(None).unwrap();
        assert_eq!(parsed.args.model_control_mode, ModelControlMode::Explicit);
        assert_eq!(parsed.args.load_model, ["resnet"]);
        assert!(parsed.notes.iter().any(|note| note.contains("only model, 'resnet'")), "{:?}", parsed.notes);
        std::fs::create_dir(repository.path().join("pipeline")).unwrap();
        let error = serve(None).unwrap_err().to_string();
        assert!(error.contains("several models (pipeline, resnet)"), "{error}");
        assert_eq!(serve(Some("pipeline")).unwrap().args.load_model, ["pipeline"]);
        assert!(serve(Some("bert")).unwrap_err().to_string().contains("no folder of that name"));
        // A model control mode given on the command line wins.
        let args =
            parse_with_env(["tritonrs", "serve", store.as_str(), "--model-control-mode=none"], |_| None).unwrap().args;
        assert!(args.load_model.is_empty());
        std::fs::write(repository.path().join("config.pbtxt"), "").unwrap();
        assert!(serve(Some("resnet")).unwrap_err().to_string().contains("holds config.pbtxt itself"));
    }

    #[test]
    fn serve_takes_sagemakers_additional_arguments_and_ports() {
        let sagemaker = |key: &str| match key {
            "SAGEMAKER_TRITON_ADDITIONAL_ARGS" => Some("--log-verbose=1  --grpc-port=9001".to_string()),
            "SAGEMAKER_TRITON_ALLOW_GRPC" => Some("true".to_string()),
            "SAGEMAKER_TRITON_METRICS_PORT" => Some("9002".to_string()),
            _ => None,
        };
        let args = parse_with_env(["tritonrs", "serve", "--model-store=/m"], sagemaker).unwrap().args;
        assert_eq!((args.log_verbose, args.grpc_port, args.metrics_port), (1, 9001, 9002));
        assert!(args.allow_grpc);
        // Without `serve` the variables mean nothing.
        assert_eq!(parse_with_env(["tritonrs", "--model-store=/m"], sagemaker).unwrap().args.grpc_port, 8001);
    }

    #[test]
    fn vertex_variables_set_port_and_routes_unless_flags_do() {
        let vertex = |key: &str| match key {
            "AIP_HTTP_PORT" => Some("8080".to_string()),
            "AIP_HEALTH_ROUTE" => Some("/v1/endpoints/1/deployedModels/2".to_string()),
            "AIP_PREDICT_ROUTE" => Some("/v1/endpoints/1/deployedModels/2:predict".to_string()),
            _ => None,
        };
        let parsed = parse_with_env(["tritonserver"], vertex).unwrap();
        assert_eq!(parsed.args.http_port, 8080);
        assert_eq!(parsed.args.predict_route, "/v1/endpoints/1/deployedModels/2:predict");
        assert_eq!(parsed.notes.len(), 3);
        let parsed = parse_with_env(["tritonserver", "--http-port=9000", "--predict-route=/score"], vertex).unwrap();
        assert_eq!((parsed.args.http_port, parsed.args.predict_route.as_str()), (9000, "/score"));
        assert_eq!(parsed.args.health_route, "/v1/endpoints/1/deployedModels/2");
        let bad = |key: &str| (key == "AIP_PREDICT_ROUTE").then(|| "predict".to_string());
        assert!(parse_with_env(["tritonserver"], bad).is_err());
    }

    #[test]
    fn prediction_mode_serves_the_vertex_ai_endpoint_alone() {
        let vertex = |key: &str| match key {
            "AIP_MODE" => Some("PREDICTION".to_string()),
            "AIP_HTTP_PORT" => Some("7080".to_string()),
            "AIP_PREDICT_ROUTE" => Some("/v1/endpoints/1/deployedModels/2:predict".to_string()),
            _ => None,
        };
        let args = parse_with_env(["tritonserver"], vertex).unwrap().args;
        assert!(args.allow_vertex_ai && !args.allow_http && !args.allow_grpc && args.allow_metrics);
        assert_eq!((args.vertex_ai_port, args.http_port), (7080, 8000));
        assert_eq!(args.predict_route, "/v1/endpoints/1/deployedModels/2:predict");
        // Flags given still win.
        let given = ["tritonserver", "--allow-http=true", "--vertex-ai-port=9090", "--allow-vertex-ai=false"];
        let args = parse_with_env(given, vertex).unwrap().args;
        assert!(!args.allow_vertex_ai && args.allow_http && !args.allow_grpc);
        assert_eq!((args.vertex_ai_port, args.http_port), (9090, 7080));
        // Asked for outside Vertex AI, on its default port.
        let args = parse(["tritonserver", "--allow-vertex-ai=true"]).unwrap().args;
        assert!(args.allow_vertex_ai && args.allow_http && args.vertex_ai_port == 8080);
    }

    #[test]
    fn cloud_routes_are_configurable_and_checked() {
        let args = parse(["tritonserver", "--model-repository=/m"]).unwrap().args;
        assert_eq!((args.health_route.as_str(), args.predict_route.as_str()), ("/health", "/predict"));
        assert_eq!(args.http_max_input_size, 64 * 1024 * 1024);
        let args = parse(["tritonserver", "--model-repository=/m", "--predict-route=/score", "--predict-model=simple"])
            .unwrap()
            .args;
        assert_eq!(args.predict_route, "/score");
        assert_eq!(args.predict_model.as_deref(), Some("simple"));
        assert!(parse(["tritonserver", "--model-repository=/m", "--health-route=health"]).is_err());
        assert!(parse(["tritonserver", "--model-repository=/m", "--predict-route=/v2/predict"]).is_err());
    }

    #[test]
    fn rate_limit_flags_are_read_as_triton_reads_them() {
        let args = parse(["tritonserver", "--model-repository=/m"]).unwrap().args;
        assert_eq!(args.rate_limit, RateLimitMode::Off);
        assert!(args.rate_limiter().0.is_none());
        let args = parse([
            "tritonserver",
            "--model-repository=/m",
            "--rate-limit=EXECUTION_COUNT",
            "--rate-limit-resource=R1:10",
            "--rate-limit-resource=R2:5:0",
        ])
        .unwrap()
        .args;
        assert_eq!(args.rate_limit, RateLimitMode::ExecutionCount);
        let names: Vec<_> = args.rate_limit_resource.iter().map(|limit| (limit.name.as_str(), limit.device)).collect();
        assert_eq!(names, [("r1", None), ("r2", Some(0))]);
        assert!(args.rate_limiter().0.is_some());
        let off = parse(["tritonserver", "--model-repository=/m", "--rate-limit-resource=R1:10"]).unwrap().args;
        assert_eq!(off.rate_limiter().1, ["ignoring --rate-limit-resource: --rate-limit is off"]);
        assert!(parse(["tritonserver", "--model-repository=/m", "--rate-limit=always"]).is_err());
        assert!(parse(["tritonserver", "--model-repository=/m", "--rate-limit-resource=R1"]).is_err());
    }

    #[test]
    fn backend_config_settings() {
        let args = parse([
            "tritonserver",
            "--model-repository=/m",
            "--backend-config=onnxruntime,library=/opt/libonnxruntime.so.1.31.1",
            "--backend-config=default-max-batch-size=16",
            "--backend-config=tensorflow,version=2",
        ])
        .unwrap()
        .args;
        let (config, warnings) = args.backend_config();
        assert_eq!(config.onnxruntime_library, Some(PathBuf::from("/opt/libonnxruntime.so.1.31.1")));
        assert_eq!(config.default_max_batch_size, 16);
        assert_eq!(config.global_thread_pool, None);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("tensorflow,version=2"));
    }

    #[test]
    fn the_global_thread_pool_takes_its_thread_counts_from_the_backend_config() {
        let config = |flags: &[&str]| {
            let argv = ["tritonserver", "--model-repository=/m"].iter().chain(flags);
            parse(argv).unwrap().args.backend_config()
        };
        let (pooled, warnings) = config(&[
            "--backend-config=onnxruntime,enable-global-threadpool=1",
            "--backend-config=onnxruntime,intra_op_thread_count=4",
            "--backend-config=onnxruntime,inter_op_thread_count=2",
        ]);
        assert_eq!(pooled.global_thread_pool, Some(GlobalThreadPool { intra_op_threads: 4, inter_op_threads: 2 }));
        assert!(warnings.is_empty(), "{warnings:?}");
        let (default_counts, _) = config(&["--backend-config=onnxruntime,enable-global-threadpool=true"]);
        assert_eq!(default_counts.global_thread_pool, Some(GlobalThreadPool::default()));
        let (unpooled, warnings) = config(&["--backend-config=onnxruntime,intra_op_thread_count=4"]);
        assert_eq!(unpooled.global_thread_pool, None);
        assert!(warnings[0].contains("enable-global-threadpool=1 turns on"), "{warnings:?}");
    }

    #[test]
    fn response_cache_settings() {
        let cache_size = |flags: &[&str]| {
            let argv = ["tritonserver", "--model-repository=/m"].iter().chain(flags);
            parse(argv).unwrap().args.response_cache_size()
        };
        assert_eq!(cache_size(&[]), Ok((None, vec![])));
        assert_eq!(cache_size(&["--cache-config", "local,size=1048576"]), Ok((Some(1_048_576), vec![])));
        assert_eq!(cache_size(&["--cache-config=local,size=0"]), Ok((None, vec![])));
        let (size, warnings) = cache_size(&["--response-cache-byte-size=4096"]).unwrap();
        assert_eq!(size, Some(4096));
        assert!(warnings[0].contains("deprecated") && warnings[0].contains("local,size=4096"), "{warnings:?}");
        let (size, warnings) =
            cache_size(&["--cache-config=local,size=100", "--cache-config=local,eviction=lru"]).unwrap();
        assert_eq!(size, Some(100));
        assert!(warnings[0].contains("local,eviction=lru"), "{warnings:?}");
        let refused = cache_size(&["--cache-config=redis,host=localhost"]).unwrap_err();
        assert!(refused.contains("no 'redis' cache") && refused.contains("local,size=<bytes>"), "{refused}");
        assert!(cache_size(&["--cache-config=local,size=1MB"]).unwrap_err().contains("number of bytes"));
        assert!(cache_size(&["--cache-config=size=10"]).unwrap_err().contains("<cache>,<setting>=<value>"));
    }
}
