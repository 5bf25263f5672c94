//! Code generated from `proto/` by `build.rs`.

/// The `inference` package: Triton's gRPC service and model configuration.
#[allow(missing_docs, clippy::all)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// The `grpc.health.v1` package: the standard gRPC health service.
#[allow(missing_docs, clippy::all)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// Every file in `proto/` as an encoded `FileDescriptorSet`, for server
/// reflection and for reading `config.pbtxt` by message descriptor.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));
