//! The one error type the core returns; each frontend maps its kind to a
//! status code of its own protocol.

use std::fmt;

/// What kind of failure an [`Error`] is, independent of any wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or does not match the model (gRPC
    /// INVALID_ARGUMENT, HTTP 400).
    InvalidArgument,
    /// The model or version does not exist (gRPC NOT_FOUND, HTTP 404).
    NotFound,
    /// The model exists but cannot serve now (gRPC UNAVAILABLE, HTTP 503).
    Unavailable,
    /// Something of that name exists already (gRPC ALREADY_EXISTS, HTTP
    /// 409).
    AlreadyExists,
    /// The server does not offer this operation (gRPC UNIMPLEMENTED,
    /// HTTP 501).
    Unimplemented,
    /// Something failed inside the server or the backend (gRPC INTERNAL,
    /// HTTP 500).
    Internal,
}

/// A failure with a message meant for the person who sent the request: it
/// names the model, the tensor and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// A request that is malformed or does not fit the model.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// A model or version that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A model that exists but cannot serve right now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// A failure inside the server or its backend.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The deepest cause of `error`, which says most: libraries often wrap an
/// operating-system message in a generic one ("dlopen failed").
pub fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
