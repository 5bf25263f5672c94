//! The control inputs of `sequence_batching`: tensors the server adds to
//! each request of a sequence so that the model can tell where the
//! sequence stands (START, END, READY) and which sequence it is (CORRID).

use bytes::Bytes;

use super::request::{CorrelationId, SequenceRequest};
use crate::error::{Error, Result};
use crate::proto::inference::ModelSequenceBatching;
use crate::proto::inference::model_sequence_batching::control::Kind;
use crate::tensor::{DataType, Tensor, encode_byte_strings};

/// The values a boolean control takes, in the element type the
/// configuration chose.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FalseTrue {
    Int32([i32; 2]),
    Fp32([f32; 2]),
    Bool([bool; 2]),
}

impl FalseTrue {
    fn tensor(self, name: &str, value: bool, shape: &[i64]) -> Tensor {
        let index = usize::from(value);
        let data = match self {
            Self::Int32(values) => values[index].to_le_bytes().to_vec(),
            Self::Fp32(values) => values[index].to_le_bytes().to_vec(),
            Self::Bool(values) => vec![u8::from(values[index])],
        };
        Tensor { name: name.to_string(), datatype: self.datatype(), shape: shape.to_vec(), data: Bytes::from(data) }
    }

    fn datatype(self) -> DataType {
        match self {
            Self::Int32(_) => DataType::Int32,
            Self::Fp32(_) => DataType::Fp32,
            Self::Bool(_) => DataType::Bool,
        }
    }
}

/// A START, END or READY control input.
#[derive(Debug, Clone, PartialEq)]
struct BooleanControl {
    name: String,
    values: FalseTrue,
}

/// The CORRID control input.
#[derive(Debug, Clone, PartialEq)]
struct CorrelationControl {
    name: String,
    datatype: DataType,
}

/// The control inputs a model's configuration asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SequenceControls {
    start: Option<BooleanControl>,
    end: Option<BooleanControl>,
    ready: Option<BooleanControl>,
    correlation: Option<CorrelationControl>,
}

impl SequenceControls {
    /// Reads and checks `control_input` as Triton does: every control input
    /// has a name, no tensor serves two kinds, each kind appears once;
    /// START, END and READY give exactly one pair of false/true values,
    /// CORRID gives a data type and no values.
    pub fn from_config(batching: &ModelSequenceBatching) -> Result<Self, String> {
        let mut controls = Self::default();
        let mut names = Vec::new();
        for input in &batching.control_input {
            if input.name.is_empty() {
                return Err("sequence_batching: a control input has no name".to_string());
            }
            if names.contains(&input.name) {
                return Err(format!(
                    "sequence_batching: control input '{}' is specified for multiple control kinds",
                    input.name
                ));
            }
            names.push(input.name.clone());
            for control in &input.control {
                let kind = control.kind();
                let kind_name = kind.as_str_name();
                let taken = match kind {
                    Kind::ControlSequenceStart => controls.start.is_some(),
                    Kind::ControlSequenceEnd => controls.end.is_some(),
                    Kind::ControlSequenceReady => controls.ready.is_some(),
                    Kind::ControlSequenceCorrid => controls.correlation.is_some(),
                };
                if taken {
                    return Err(format!("sequence_batching specifies multiple {kind_name} tensors"));
                }
                let pairs = [
                    ("int32_false_true", control.int32_false_true.len()),
                    ("fp32_false_true", control.fp32_false_true.len()),
                    ("bool_false_true", control.bool_false_true.len()),
                ];
                let given: Vec<_> = pairs.iter().filter(|(_, count)| *count > 0).collect();
                if kind == Kind::ControlSequenceCorrid {
                    if !given.is_empty() {
                        return Err(format!(
                            "sequence_batching control '{}': {kind_name} takes a data_type, not \
                             int32_false_true, fp32_false_true or bool_false_true",
                            input.name
                        ));
                    }
                    let datatype = DataType::from_config(control.data_type)
                        .filter(|datatype| {
                            matches!(
                                datatype,
                                DataType::Uint64
                                    | DataType::Int64
                                    | DataType::Uint32
                                    | DataType::Int32
                                    | DataType::Bytes
                            )
                        })
                        .ok_or_else(|| {
                            format!(
                                "sequence_batching control '{}': {kind_name} must have data_type TYPE_UINT64, \
                                 TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING",
                                input.name
                            )
                        })?;
                    controls.correlation = Some(CorrelationControl { name: input.name.clone(), datatype });
                    continue;
                }
                let values = match given.as_slice() {
                    [(_, 2)] if !control.int32_false_true.is_empty() => {
                        FalseTrue::Int32([control.int32_false_true[0], control.int32_false_true[1]])
                    }
                    [(_, 2)] if !control.fp32_false_true.is_empty() => {
                        FalseTrue::Fp32([control.fp32_false_true[0], control.fp32_false_true[1]])
                    }
                    [(_, 2)] => FalseTrue::Bool([control.bool_false_true[0], control.bool_false_true[1]]),
                    [(field, _)] => {
                        return Err(format!(
                            "sequence_batching control '{}': '{field}' must have exactly 2 entries for {kind_name}",
                            input.name
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "sequence_batching control '{}' must specify exactly one of 'int32_false_true', \
                             'fp32_false_true' and 'bool_false_true' for {kind_name}",
                            input.name
                        ));
                    }
                };
                let control = Some(BooleanControl { name: input.name.clone(), values });
                match kind {
                    Kind::ControlSequenceStart => controls.start = control,
                    Kind::ControlSequenceEnd => controls.end = control,
                    _ => controls.ready = control,
                }
            }
        }
        Ok(controls)
    }

    /// The control inputs' names and element types: the model declares
    /// them as inputs, and clients do not send them.
    pub fn inputs(&self) -> Vec<(&str, DataType)> {
        let booleans = [&self.start, &self.end, &self.ready]
            .into_iter()
            .flatten()
            .map(|control| (control.name.as_str(), control.values.datatype()));
        booleans.chain(self.correlation.iter().map(|control| (control.name.as_str(), control.datatype))).collect()
    }

    /// The control tensors of one request, each with one element (shape
    /// `[1]`, or `[1, 1]` for a model that batches). A request that is
    /// handed to the model is always READY. Fails when the correlation ID's
    /// kind (number or string) does not fit CORRID's data type, in
    /// Triton's words.
    pub fn tensors(&self, model: &str, request: &SequenceRequest, batching: bool) -> Result<Vec<Tensor>> {
        let shape: &[i64] = if batching { &[1, 1] } else { &[1] };
        let mut tensors = Vec::with_capacity(4);
        for (control, value) in [(&self.start, request.start), (&self.end, request.end), (&self.ready, true)] {
            if let Some(control) = control {
                tensors.push(control.values.tensor(&control.name, value, shape));
            }
        }
        if let Some(control) = &self.correlation {
            let data = match (&request.id, control.datatype) {
                (CorrelationId::Text(text), DataType::Bytes) => encode_byte_strings([text.as_bytes()]),
                // Narrower integer types take the ID as C's conversions do,
                // as Triton hands it over.
                (CorrelationId::Number(number), DataType::Uint64) => Bytes::copy_from_slice(&number.to_le_bytes()),
                (CorrelationId::Number(number), DataType::Int64) => {
                    Bytes::copy_from_slice(&(*number as i64).to_le_bytes())
                }
                (CorrelationId::Number(number), DataType::Uint32) => {
                    Bytes::copy_from_slice(&(*number as u32).to_le_bytes())
                }
                (CorrelationId::Number(number), DataType::Int32) => {
                    Bytes::copy_from_slice(&(*number as i32).to_le_bytes())
                }
                (id, expected) => {
                    let sent = match id {
                        CorrelationId::Text(_) => DataType::Bytes,
                        CorrelationId::Number(_) => DataType::Uint64,
                    };
                    return Err(Error::invalid_argument(format!(
                        "sequence batching control '{}' data-type is '{sent}', but model '{model}' expects \
                         '{expected}'",
                        control.name
                    )));
                }
            };
            tensors.push(Tensor {
                name: control.name.clone(),
                datatype: control.datatype,
                shape: shape.to_vec(),
                data,
            });
        }
        Ok(tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    fn controls(text: &str) -> Result<SequenceControls, String> {
        let config = parse_text_format(&format!("sequence_batching {{ {text} }}")).unwrap();
        let Some(crate::proto::inference::model_config::SchedulingChoice::SequenceBatching(batching)) =
            &config.scheduling_choice
        else {
            panic!("no sequence_batching");
        };
        SequenceControls::from_config(batching)
    }

    const ALL_FOUR: &str = r#"
        control_input [
          { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
          { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
          { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] },
          { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
        ]"#;

    #[test]
    fn each_control_gets_its_value_type_and_shape() {
        let controls = controls(ALL_FOUR).unwrap();
        let inputs = [
            ("START", DataType::Fp32),
            ("END", DataType::Int32),
            ("READY", DataType::Bool),
            ("CORRID", DataType::Uint64),
        ];
        assert_eq!(controls.inputs(), inputs);
        let first = SequenceRequest { id: CorrelationId::Number(7), start: true, end: false };
        let tensors = controls.tensors("m", &first, true).unwrap();
        let summary: Vec<_> =
            tensors.iter().map(|tensor| (tensor.name.as_str(), tensor.datatype, tensor.shape.clone())).collect();
        assert_eq!(
            summary,
            [
                ("START", DataType::Fp32, vec![1, 1]),
                ("END", DataType::Int32, vec![1, 1]),
                ("READY", DataType::Bool, vec![1, 1]),
                ("CORRID", DataType::Uint64, vec![1, 1]),
            ]
        );
        assert_eq!(tensors[0].data[..], 1f32.to_le_bytes());
        assert_eq!(tensors[1].data[..], 0i32.to_le_bytes());
        assert_eq!(tensors[2].data[..], [1]);
        assert_eq!(tensors[3].data[..], 7u64.to_le_bytes());
        let last = SequenceRequest { id: CorrelationId::Number(7), start: false, end: true };
        let tensors = controls.tensors("m", &last, false).unwrap();
        assert_eq!((tensors[0].data[..].to_vec(), tensors[0].shape.clone()), (0f32.to_le_bytes().to_vec(), vec![1]));
        assert_eq!(tensors[1].data[..], 1i32.to_le_bytes());
    }

    #[test]
    fn a_string_id_needs_a_string_corrid_and_a_number_a_numeric_one() {
        let numeric = controls(ALL_FOUR).unwrap();
        let text = SequenceRequest { id: CorrelationId::Text("s".into()), start: true, end: false };
        let error = numeric.tensors("m", &text, true).unwrap_err();
        assert_eq!(
            error.message(),
            "sequence batching control 'CORRID' data-type is 'BYTES', but model 'm' expects 'UINT64'"
        );
        let strings = controls(
            r#"control_input [ { name: "ID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] } ]"#,
        )
        .unwrap();
        assert_eq!(strings.tensors("m", &text, false).unwrap()[0].data[..], [1, 0, 0, 0, b's']);
        let number = SequenceRequest { id: CorrelationId::Number(3), start: true, end: false };
        assert!(strings.tensors("m", &number, false).unwrap_err().message().contains("expects 'BYTES'"));
    }

    #[test]
    fn malformed_controls_are_refused() {
        let cases = [
            (
                r#"control_input [ { control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] } ] } ]"#,
                "has no name",
            ),
            (
                r#"control_input [ { name: "A" control [ { kind: CONTROL_SEQUENCE_START } ] } ]"#,
                "must specify exactly one of",
            ),
            (
                r#"control_input [ { name: "A" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [1] } ] } ]"#,
                "'int32_false_true' must have exactly 2 entries for CONTROL_SEQUENCE_START",
            ),
            (
                r#"control_input [ { name: "A" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [0, 1]
                                                          fp32_false_true: [0, 1] } ] } ]"#,
                "must specify exactly one of",
            ),
            (
                r#"control_input [ { name: "A" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [0, 1] } ] },
                                   { name: "A" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [0, 1] } ] } ]"#,
                "'A' is specified for multiple control kinds",
            ),
            (
                r#"control_input [ { name: "A" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [0, 1] } ] },
                                   { name: "B" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [0, 1] } ] } ]"#,
                "multiple CONTROL_SEQUENCE_READY tensors",
            ),
            (
                r#"control_input [ { name: "A" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } ] } ]"#,
                "must have data_type TYPE_UINT64",
            ),
            (
                r#"control_input [ { name: "A" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_INT32
                                                          int32_false_true: [0, 1] } ] } ]"#,
                "takes a data_type",
            ),
        ];
        for (text, expected) in cases {
            let error = controls(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
