//! What a request says about the sequence it belongs to: its correlation
//! ID and whether it starts or ends the sequence, read from Triton's
//! request parameters `sequence_id`, `sequence_start` and `sequence_end`.

use std::fmt;

use crate::error::{Error, Result};
use crate::inference::{ParameterValue, Parameters};

/// A sequence's correlation ID: a number or a string, as clients send it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CorrelationId {
    /// A non-zero unsigned integer.
    Number(u64),
    /// A non-empty string.
    Text(String),
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(number) => write!(f, "{number}"),
            Self::Text(text) => write!(f, "{text}"),
        }
    }
}

/// A request's place in a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceRequest {
    /// The sequence it belongs to.
    pub id: CorrelationId,
    /// Whether it is the sequence's first request.
    pub start: bool,
    /// Whether it is the sequence's last request.
    pub end: bool,
}

impl SequenceRequest {
    /// Reads the sequence parameters; `None` when the request names no
    /// sequence (no `sequence_id`, or Triton's "no sequence" values 0 and
    /// the empty string). Their types were checked with the other reserved
    /// parameters ([`crate::inference::check_reserved_parameters`]). A
    /// signed ID is taken as its unsigned 64 bits, as Triton's gRPC
    /// frontend takes `int64_param`.
    pub fn from_parameters(model: &str, parameters: &Parameters) -> Result<Option<Self>> {
        let id = match parameters.get("sequence_id") {
            None => return Ok(None),
            Some(ParameterValue::Uint64(number)) => CorrelationId::Number(*number),
            Some(ParameterValue::Int64(number)) => CorrelationId::Number(*number as u64),
            Some(ParameterValue::String(text)) => CorrelationId::Text(text.clone()),
            Some(other) => {
                return Err(Error::invalid_argument(format!(
                    "model '{model}': the 'sequence_id' parameter must be an integer or a string, not {other}"
                )));
            }
        };
        if matches!(&id, CorrelationId::Number(0)) || matches!(&id, CorrelationId::Text(text) if text.is_empty()) {
            return Ok(None);
        }
        let flag = |key: &str| matches!(parameters.get(key), Some(ParameterValue::Bool(true)));
        Ok(Some(Self { id, start: flag("sequence_start"), end: flag("sequence_end") }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(pairs: &[(&str, ParameterValue)]) -> Parameters {
        pairs.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
    }

    #[test]
    fn reads_the_correlation_id_and_flags() {
        let request = SequenceRequest::from_parameters(
            "m",
            &parameters(&[
                ("sequence_id", ParameterValue::Int64(42)),
                ("sequence_start", ParameterValue::Bool(true)),
                ("sequence_end", ParameterValue::Bool(false)),
            ]),
        )
        .unwrap();
        assert_eq!(request, Some(SequenceRequest { id: CorrelationId::Number(42), start: true, end: false }));
        let text =
            SequenceRequest::from_parameters("m", &parameters(&[("sequence_id", ParameterValue::String("a".into()))]))
                .unwrap();
        assert_eq!(text, Some(SequenceRequest { id: CorrelationId::Text("a".into()), start: false, end: false }));
    }

    #[test]
    fn zero_empty_or_missing_ids_name_no_sequence() {
        for value in [ParameterValue::Uint64(0), ParameterValue::Int64(0), ParameterValue::String(String::new())] {
            let request = SequenceRequest::from_parameters("m", &parameters(&[("sequence_id", value)])).unwrap();
            assert_eq!(request, None);
        }
        assert_eq!(SequenceRequest::from_parameters("m", &Parameters::new()).unwrap(), None);
        let signed = SequenceRequest::from_parameters("m", &parameters(&[("sequence_id", ParameterValue::Int64(-1))]));
        assert_eq!(signed.unwrap().unwrap().id, CorrelationId::Number(u64::MAX));
        let wrong = SequenceRequest::from_parameters("m", &parameters(&[("sequence_id", ParameterValue::Bool(true))]));
        assert!(wrong.unwrap_err().message().contains("must be an integer or a string, not true"));
    }
}
