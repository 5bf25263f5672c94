//! The internal inference request and response that every frontend decodes
//! into and encodes from.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::shared_memory::SharedMemoryRef;
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
    /// The inputs whose data lies in a registered shared-memory region, by
    /// position in `inputs`; their data stays empty until the model
    /// manager reads it from there.
    pub shared_memory_inputs: Vec<(usize, SharedMemoryRef)>,
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
    /// The outputs written into the shared memory their request named:
    /// their data is empty, and the answer carries none for them.
    pub shared_memory_outputs: Vec<String>,
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

/// Checks the request parameters Triton reserves and that no other part of
/// the server reads: `sequence_id` (an integer or a string),
/// `sequence_start` and `sequence_end` (booleans), and keys starting with
/// `triton_`, of which only `allowed_internal` may be sent (the gRPC
/// frontend takes `triton_enable_empty_final_response`). Triton refuses
/// these rather than ignoring them, so a client's mistake shows at once.
/// `priority` and `timeout` are checked where the scheduler reads them.
pub fn check_reserved_parameters(model: &str, parameters: &Parameters, allowed_internal: &[&str]) -> Result<()> {
    let invalid = |key: &str, expected: &str, value: &ParameterValue| {
        Error::invalid_argument(format!("model '{model}': the '{key}' parameter must be {expected}, not {value}"))
    };
    for (key, value) in parameters {
        match (key.as_str(), value) {
            ("sequence_id", ParameterValue::Int64(_) | ParameterValue::Uint64(_) | ParameterValue::String(_)) => {}
            ("sequence_id", _) => return Err(invalid(key, "an integer or a string", value)),
            ("sequence_start" | "sequence_end", ParameterValue::Bool(_)) => {}
            ("sequence_start" | "sequence_end", _) => return Err(invalid(key, "true or false", value)),
            (key, _) if key.starts_with("triton_") && !allowed_internal.contains(&key) => {
                let allowed = if allowed_internal.is_empty() {
                    "none may be sent".to_string()
                } else {
                    format!("only {} may be sent", allowed_internal.join(", "))
                };
                return Err(Error::invalid_argument(format!(
                    "model '{model}': parameter '{key}': keys starting with 'triton_' are reserved for Triton's own \
                     use; {allowed}"
                )));
            }
            _ => {}
        }
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

    #[test]
    fn reserved_parameters_must_have_their_types_and_triton_keys_are_refused() {
        let parameters = |pairs: &[(&str, ParameterValue)]| -> Parameters {
            pairs.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
        };
        let fine = parameters(&[
            ("sequence_id", ParameterValue::String("s-1".into())),
            ("sequence_start", ParameterValue::Bool(true)),
            ("sequence_end", ParameterValue::Bool(false)),
            ("triton_enable_empty_final_response", ParameterValue::Bool(true)),
            ("my_own", ParameterValue::Double(0.5)),
        ]);
        check_reserved_parameters("m", &fine, &["triton_enable_empty_final_response"]).unwrap();
        check_reserved_parameters("m", &parameters(&[("sequence_id", ParameterValue::Uint64(7))]), &[]).unwrap();
        let cases = [
            (
                ("sequence_id", ParameterValue::Bool(true)),
                "the 'sequence_id' parameter must be an integer or a string, not true",
            ),
            (
                ("sequence_start", ParameterValue::Int64(1)),
                "the 'sequence_start' parameter must be true or false, not 1",
            ),
            (
                ("sequence_end", ParameterValue::String("yes".into())),
                "the 'sequence_end' parameter must be true or false",
            ),
            (
                ("triton_enable_empty_final_response", ParameterValue::Bool(true)),
                "parameter 'triton_enable_empty_final_response': keys starting with 'triton_' are reserved for \
                 Triton's own use; none may be sent",
            ),
        ];
        for ((key, value), expected) in cases {
            let error = check_reserved_parameters("m", &parameters(&[(key, value)]), &[]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument);
            assert!(error.message().starts_with(&format!("model 'm': {expected}")), "{}", error.message());
        }
        let error =
            check_reserved_parameters("m", &parameters(&[("triton_x", ParameterValue::Int64(1))]), &["triton_y"])
                .unwrap_err();
        assert!(error.message().ends_with("only triton_y may be sent"), "{}", error.message());
    }
}
