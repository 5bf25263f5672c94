//! What the server says about itself in ServerMetadata (gRPC) and `GET /v2`
//! (HTTP).

/// Protocol extensions this server implements. Only extensions whose every
/// part works are listed: clients decide what to call from this list.
pub const EXTENSIONS: &[&str] = &[
    "classification",
    "model_repository",
    "model_repository(unload_dependents)",
    "model_configuration",
    "binary_tensor_data",
    "statistics",
    "schedule_policy",
];

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
    /// The identity of this build under the name `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: EXTENSIONS.iter().map(|extension| extension.to_string()).collect(),
        }
    }
}
