//! The internal inference request and response that every frontend decodes
//! into and encodes from.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A request or tensor parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int64(i64),
    /// An unsigned integer.
    Uint64(u64),
    /// A floating-point number.
    Double(f64),
    /// A string.
    String(String),
}

impl fmt::Display for ParameterValue {
    /// The value as a client wrote it, for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(value) => write!(f, "{value}"),
            Self::Int64(value) => write!(f, "{value}"),
            Self::Uint64(value) => write!(f, "{value}"),
            Self::Double(value) => write!(f, "{value}"),
            Self::String(value) => write!(f, "{value:?}"),
        }
    }
}

/// Named parameters, ordered so responses are deterministic.
pub type Parameters = BTreeMap<String, ParameterValue>;

/// An output the client asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Per-output parameters as sent.
    pub parameters: Parameters,
}

/// One inference request, independent of the protocol it arrived on.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceRequest {
    /// Model to run.
    pub model_name: String,
    /// Version to run; `None` lets the server choose (the highest ready one).
    pub model_version: Option<i64>,
    /// Client-chosen identifier, echoed in the response.
    pub id: String,
    /// Request parameters.
    pub parameters: Parameters,
    /// Input tensors.
    pub inputs: Vec<Tensor>,
    /// Outputs to return; empty means all of them.
    pub outputs: Vec<RequestedOutput>,
}

/// The result of one inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceResponse {
    /// Model that ran.
    pub model_name: String,
    /// Version that ran.
    pub model_version: i64,
    /// The request's identifier.
    pub id: String,
    /// Response parameters.
    pub parameters: Parameters,
    /// Output tensors, in the order they were requested (or the model's
    /// configuration order when all were requested).
    pub outputs: Vec<Tensor>,
    /// Where this answer stood among the answers of the execution that
    /// produced it.
    pub batch_position: BatchPosition,
}

/// The place of one answer among the answers of one execution: the
/// instance hands a batch's answers back in this order, all at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPosition {
    /// 0 for the first answer handed back.
    pub index: usize,
    /// How many requests the execution answered.
    pub answers: usize,
}

impl BatchPosition {
    /// The only answer of an execution.
    pub const ALONE: Self = Self { index: 0, answers: 1 };
}

/// Refuses tensor parameters that ask for a feature this server does not
/// offer (shared memory): ignoring them would give wrong answers silently.
/// `what` is "input" or "output".
pub fn check_tensor_parameters<'a>(
    model: &str,
    what: &str,
    name: &str,
    keys: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    const SHARED_MEMORY: &str = "shared_memory_region";
    if keys.into_iter().any(|key| key == SHARED_MEMORY) {
        return Err(Error::new(
            crate::error::ErrorKind::Unimplemented,
            format!(
                "model '{model}': {what} '{name}' sets the '{SHARED_MEMORY}' parameter, which this server does not support"
            ),
        ));
    }
    Ok(())
}

/// Parses the version string of the protocol: empty means "let the server
/// choose", otherwise a non-negative decimal number.
pub fn parse_model_version(model_name: &str, version: &str) -> Result<Option<i64>> {
    if version.is_empty() {
        return Ok(None);
    }
    match version.parse::<i64>() {
        Ok(number) if number >= 0 => Ok(Some(number)),
        _ => Err(Error::invalid_argument(format!(
            "model '{model_name}': version '{version}' is not a valid version number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn empty_version_lets_the_server_choose() {
        assert_eq!(parse_model_version("m", ""), Ok(None));
        assert_eq!(parse_model_version("m", "3"), Ok(Some(3)));
    }

    #[test]
    fn malformed_versions_are_invalid_arguments() {
        for bad in ["latest", "-1", "1.0"] {
            let error = parse_model_version("m", bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument);
            assert!(error.message().contains(bad), "{}", error.message());
        }
    }
}
