//! The gRPC frontend: Triton's inference service, the standard health
//! service and server reflection, on one port.

mod answer_pacing;
mod codec;
mod direct_infer;
mod health_service;
mod inference_service;
mod response_compression;
mod restricted;
mod trace_timing;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tower::ServiceBuilder;

pub use health_service::HealthService;
pub use inference_service::InferenceService;
pub use response_compression::ResponseCompression;

use crate::identity::ServerIdentity;
use crate::logging::LogControl;
use crate::model_manager::ModelManager;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::health::health_server::HealthServer;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::restricted_api::ApiRestrictions;
use crate::shutdown::ShutdownSignal;
use crate::trace::Tracer;

/// The PEM files of gRPC over TLS, as read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTls {
    /// The server's certificate chain.
    pub certificate: Vec<u8>,
    /// The server's private key.
    pub key: Vec<u8>,
    /// The authority client certificates must be signed by: mutual TLS.
    pub client_ca: Option<Vec<u8>>,
}

impl GrpcTls {
    /// The TLS configuration, checked: certificates and key that do not
    /// parse or do not match are an error at start, not at the first call.
    pub fn config(&self) -> Result<ServerTlsConfig, String> {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&self.certificate, &self.key));
        if let Some(authority) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(authority));
        }
        Server::builder()
            .tls_config(config.clone())
            .map_err(|error| format!("the gRPC TLS certificate, key or root certificate is not usable: {error:?}"))?;
        Ok(config)
    }
}

/// Triton's `--grpc-keepalive-time` default: two idle hours.
pub const DEFAULT_KEEPALIVE_TIME: Duration = Duration::from_secs(2 * 60 * 60);
/// Triton's `--grpc-keepalive-timeout` default.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Unanswered TCP keepalive probes after which a connection is closed.
const TCP_KEEPALIVE_PROBES: u32 = 4;

/// Settings of the gRPC endpoint.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// Idle time after which the server pings a connection's peer
    /// (`--grpc-keepalive-time`).
    pub keepalive_time: Duration,
    /// How long the peer has to answer the ping before the connection is
    /// closed (`--grpc-keepalive-timeout`).
    pub keepalive_timeout: Duration,
    /// How long a connection may live before the server asks its client to
    /// reconnect (`--grpc-max-connection-age`), so that clients behind a
    /// load balancer spread over new replicas; `None`: for ever.
    pub max_connection_age: Option<Duration>,
    /// How long a connection past its age has to finish its calls
    /// (`--grpc-max-connection-age-grace`); `None`: as long as they take.
    pub max_connection_age_grace: Option<Duration>,
    /// The categories whose calls need a header (`--grpc-restricted-protocol`).
    pub restrictions: ApiRestrictions,
    /// TLS (`--grpc-use-ssl`, `--grpc-use-ssl-mutual`), checked by
    /// [`GrpcTls::config`]; `None`: plain HTTP/2.
    pub tls: Option<ServerTlsConfig>,
    /// How inference answers are compressed
    /// (`--grpc-infer-response-compression-level`).
    pub response_compression: ResponseCompression,
}

/// Serves gRPC on `listener` until `shutdown` fires, then stops taking
/// connections and new stream messages, and returns once the requests in
/// flight are answered.
pub async fn serve(
    listener: TcpListener,
    manager: Arc<ModelManager>,
    identity: ServerIdentity,
    logging: Arc<LogControl>,
    tracer: Arc<Tracer>,
    settings: GrpcSettings,
    shutdown: ShutdownSignal,
) -> Result<(), tonic::transport::Error> {
    let handler =
        Arc::new(InferenceService::new(Arc::clone(&manager), identity, logging, Arc::clone(&tracer), shutdown.clone()));
    // ModelInfer skips tonic's unary path, with the same handler, unless
    // its answers are to be compressed (`direct_infer`).
    let direct_infer = settings
        .response_compression
        .encodings()
        .is_empty()
        .then(|| direct_infer::DirectInferLayer::new(Arc::clone(&handler)));
    // Triton accepts messages of any size; tensors of hundreds of megabytes
    // are normal. Compressed requests are accepted (tritonclient's
    // `compression_algorithm`); responses go uncompressed unless the
    // compression level asks otherwise, as Triton sends them by default,
    // since compressing tensors costs more than it saves on the networks
    // servers run on.
    let mut inference = GrpcInferenceServiceServer::from_arc(handler)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate);
    for encoding in settings.response_compression.encodings() {
        inference = inference.send_compressed(*encoding);
    }
    let health = HealthServer::new(HealthService::new(manager, shutdown.clone()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("build.rs emits a valid descriptor set");
    // grpcurl 1.8 and many other tools still speak only v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("build.rs emits a valid descriptor set");
    // Nagle's algorithm would hold small responses back while earlier ones
    // wait for their ACK: tens of milliseconds per request on a busy
    // connection. The builder's tcp_nodelay only applies to listeners it
    // binds itself, so the accepted sockets get it here.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // Triton pings a peer idle for the keepalive time (HTTP/2 PING) and
    // closes the connection when no answer comes in the keepalive timeout,
    // so that streams and health watches of peers that vanished end.
    // hyper's pings cost every connection a timer reset and a lock per
    // frame, ~2 % of W1's throughput (BENCHMARKS.md, "What changed between
    // runs"); at Triton's defaults, two idle hours, the kernel's TCP
    // keepalive closes such connections at no cost per request (probes
    // every quarter of the timeout, four unanswered close it). Times a user
    // sets are kept with HTTP/2 pings, as asked.
    let http2_pings =
        settings.keepalive_time != DEFAULT_KEEPALIVE_TIME || settings.keepalive_timeout != DEFAULT_KEEPALIVE_TIMEOUT;
    let incoming = match http2_pings {
        true => incoming,
        false => incoming
            .with_keepalive(Some(settings.keepalive_time))
            .with_keepalive_interval(Some(settings.keepalive_timeout / TCP_KEEPALIVE_PROBES))
            .with_keepalive_retries(Some(TCP_KEEPALIVE_PROBES)),
    };
    // Traced calls: when each arrived, and when its response went out.
    let trace_timing = ServiceBuilder::new()
        .map_request(move |request| trace_timing::note_arrival(&tracer, request))
        .map_request(response_compression::only_inference_compressed(settings.response_compression))
        .map_response(trace_timing::stamp_sending);
    let mut builder = Server::builder();
    if let Some(config) = settings.tls {
        builder = builder.tls_config(config)?;
    }
    if http2_pings {
        builder = builder
            .http2_keepalive_interval(Some(settings.keepalive_time))
            .http2_keepalive_timeout(Some(settings.keepalive_timeout));
    }
    if let Some(age) = settings.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    if let Some(grace) = settings.max_connection_age_grace {
        builder = builder.max_connection_age_grace(grace);
    }
    builder
        .layer(trace_timing)
        .layer(restricted::RestrictionLayer::new(settings.restrictions))
        .layer(tower::util::option_layer(direct_infer))
        .add_service(inference)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown.fired())
        .await
}
