//! The process's default TLS crypto, which the blocking HTTP clients
//! (the OTLP exporter's, cloud storage's) take since their rustls is built
//! without a provider of its own: ring, as for gRPC's TLS.

/// Makes ring the process's default rustls crypto, unless one is set
/// already; call it before building a blocking HTTP client.
pub fn use_ring() {
    // An error only says that a default is set already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
