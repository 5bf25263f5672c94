//! What the server says about itself in ServerMetadata (gRPC) and `GET /v2`
//! (HTTP).

/// Protocol extensions this server implements. Only extensions whose every
/// part works are listed: clients decide what to call from this list.
pub const EXTENSIONS: &[&str] = &[
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "model_configuration",
    "binary_tensor_data",
    "statistics",
    "schedule_policy",
    "logging",
    "trace",
];

/// The shared-memory extensions, system and CUDA, listed only when clients
/// may use them (`--allow-client-shm=true`), as Triton's GPU builds list
/// them.
pub const SHARED_MEMORY: [&str; 2] = ["system_shared_memory", "cuda_shared_memory"];

/// The server's name, version and extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// `--id`, "triton" by default as Triton's clients expect.
    pub name: String,
    /// This server's version.
    pub version: String,
    /// Protocol extensions actually supported.
    pub extensions: Vec<String>,
}

impl ServerIdentity {
    /// The identity of this build under the name `name`; `shared_memory`
    /// says whether clients may use shared memory.
    pub fn new(name: &str, shared_memory: bool) -> Self {
        let mut extensions: Vec<String> = EXTENSIONS.iter().map(|extension| extension.to_string()).collect();
        if shared_memory {
            extensions.extend(SHARED_MEMORY.map(str::to_string));
        }
        Self { name: name.to_string(), version: env!("CARGO_PKG_VERSION").to_string(), extensions }
    }
}
