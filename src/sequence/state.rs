//! Implicit state (`sequence_batching { state [...] }`): an output the
//! model produces for request i of a sequence comes back to it as an input
//! of request i + 1, kept by the server instead of the client.

use std::path::Path;

use bytes::Bytes;

use crate::proto::inference::ModelSequenceBatching;
use crate::proto::inference::model_sequence_batching::initial_state::StateData;
use crate::tensor::{DataType, Tensor, element_count, format_shape};

/// The directory, inside a model's directory, that `data_file` names are
/// relative to (Triton's layout).
pub const INITIAL_STATE_DIRECTORY: &str = "initial_state";

/// One state: which input takes it, which output produces it, and what a
/// sequence starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct ImplicitState {
    /// The model input that receives the state.
    pub input_name: String,
    /// The model output that produces the next state.
    pub output_name: String,
    /// Its element type.
    pub datatype: DataType,
    /// The input of a sequence's first request (named `input_name`, with
    /// the batch dimension when the model batches).
    pub initial: Tensor,
}

impl ImplicitState {
    /// Reads the states of a `sequence_batching` configuration. A state
    /// without `initial_state` starts as zeros (Triton leaves it
    /// uninitialized, and a model is expected to ignore it on START), with
    /// 1 for each variable dimension, as in Triton; `initial_state` gives
    /// zeros or the bytes of a file in the model's `initial_state`
    /// directory.
    pub fn from_config(
        batching: &ModelSequenceBatching,
        max_batch_size: i32,
        model_dir: &Path,
    ) -> Result<Vec<Self>, String> {
        let mut states: Vec<Self> = Vec::with_capacity(batching.state.len());
        for state in &batching.state {
            let input = &state.input_name;
            if input.is_empty() || state.output_name.is_empty() {
                return Err("sequence_batching: every state needs an input_name and an output_name".to_string());
            }
            if states.iter().any(|known| known.input_name == *input || known.output_name == state.output_name) {
                return Err(format!("sequence_batching: state '{input}' names an input or output of another state"));
            }
            let datatype = DataType::from_config(state.data_type)
                .ok_or_else(|| format!("sequence_batching: state '{input}' needs a data_type"))?;
            if state.use_growable_memory && !state.use_same_buffer_for_input_output {
                return Err(format!(
                    "sequence_batching: state '{input}': use_growable_memory needs use_same_buffer_for_input_output"
                ));
            }
            let mut shape: Vec<i64> = if max_batch_size > 0 { vec![1] } else { Vec::new() };
            let data = match state.initial_state.as_slice() {
                [] => {
                    shape.extend(state.dims.iter().map(|&dim| if dim == -1 { 1 } else { dim }));
                    zeros(datatype, &shape, input)?
                }
                [initial] => {
                    if initial.data_type != state.data_type {
                        return Err(format!(
                            "sequence_batching: the initial_state of state '{input}' has another data_type than \
                             the state"
                        ));
                    }
                    if initial.name.is_empty() {
                        return Err(format!("sequence_batching: the initial_state of state '{input}' needs a name"));
                    }
                    if initial.dims.len() != state.dims.len() {
                        return Err(format!(
                            "sequence_batching: the initial_state of state '{input}' has dims {} but the state {}",
                            format_shape(&initial.dims),
                            format_shape(&state.dims)
                        ));
                    }
                    let fits = initial
                        .dims
                        .iter()
                        .zip(&state.dims)
                        .all(|(&dim, &declared)| dim >= 0 && (declared == -1 || declared == dim));
                    if !fits {
                        return Err(format!(
                            "sequence_batching: the initial_state of state '{input}' has dims {}, which do not fit \
                             the state's {}",
                            format_shape(&initial.dims),
                            format_shape(&state.dims)
                        ));
                    }
                    shape.extend_from_slice(&initial.dims);
                    match &initial.state_data {
                        Some(StateData::ZeroData(true)) => zeros(datatype, &shape, input)?,
                        Some(StateData::DataFile(file)) => {
                            read_initial_state(&model_dir.join(INITIAL_STATE_DIRECTORY).join(file), datatype, &shape)
                                .map_err(|why| format!("sequence_batching: initial_state of state '{input}': {why}"))?
                        }
                        _ => {
                            return Err(format!(
                                "sequence_batching: the initial_state of state '{input}' needs zero_data: true or a \
                                 data_file"
                            ));
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "sequence_batching: state '{input}' has {} initial_state entries; at most one is allowed",
                        state.initial_state.len()
                    ));
                }
            };
            states.push(Self {
                input_name: input.clone(),
                output_name: state.output_name.clone(),
                datatype,
                initial: Tensor { name: input.clone(), datatype, shape, data },
            });
        }
        Ok(states)
    }
}

/// All-zero elements; for BYTES, empty strings (a zero length each).
fn zeros(datatype: DataType, shape: &[i64], input: &str) -> Result<Bytes, String> {
    let count = element_count(shape)
        .ok_or_else(|| format!("sequence_batching: state '{input}' has an invalid shape {}", format_shape(shape)))?;
    Ok(Bytes::from(vec![0; count * datatype.element_size().unwrap_or(4)]))
}

/// The initial state in `path`: row-major elements, little-endian (for
/// BYTES, each a 4-byte length and its bytes), exactly as many as the shape
/// holds.
fn read_initial_state(path: &Path, datatype: DataType, shape: &[i64]) -> Result<Bytes, String> {
    let data = std::fs::read(path).map_err(|error| format!("cannot read '{}': {error}", path.display()))?;
    let count = element_count(shape).unwrap_or(0);
    let valid = match datatype.element_size() {
        Some(size) => data.len() == count * size,
        None => crate::tensor::split_byte_strings(&data).is_ok_and(|elements| elements.len() == count),
    };
    if !valid {
        return Err(format!(
            "'{}' holds {} bytes, which are not {count} {datatype} elements (dims {})",
            path.display(),
            data.len(),
            format_shape(shape)
        ));
    }
    Ok(Bytes::from(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;
    use crate::proto::inference::model_config::SchedulingChoice;

    fn states(text: &str, max_batch_size: i32, model_dir: &Path) -> Result<Vec<ImplicitState>, String> {
        let config = parse_text_format(&format!("sequence_batching {{ {text} }}")).unwrap();
        let Some(SchedulingChoice::SequenceBatching(batching)) = &config.scheduling_choice else {
            panic!("no sequence_batching");
        };
        ImplicitState::from_config(batching, max_batch_size, model_dir)
    }

    #[test]
    fn a_state_starts_as_zeros_with_variable_dimensions_of_one() {
        let read = states(
            r#"state [ { input_name: "IN" output_name: "OUT" data_type: TYPE_INT32 dims: [ -1, 2 ] } ]"#,
            4,
            Path::new("/nowhere"),
        )
        .unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].input_name.as_str(), read[0].output_name.as_str()), ("IN", "OUT"));
        assert_eq!(read[0].initial.name, "IN");
        assert_eq!(read[0].initial.shape, [1, 1, 2]);
        assert_eq!(read[0].initial.data[..], [0; 8]);
    }

    #[test]
    fn an_initial_state_comes_from_zeros_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(INITIAL_STATE_DIRECTORY)).unwrap();
        let values: Vec<u8> = [5f32, 6.0, 7.0].iter().flat_map(|value| value.to_le_bytes()).collect();
        std::fs::write(dir.path().join(INITIAL_STATE_DIRECTORY).join("start.bin"), &values).unwrap();
        let from_file = states(
            r#"state [ { input_name: "IN" output_name: "OUT" data_type: TYPE_FP32 dims: [ -1 ]
                         initial_state { data_type: TYPE_FP32 dims: [ 3 ] data_file: "start.bin" name: "s" } } ]"#,
            0,
            dir.path(),
        )
        .unwrap();
        assert_eq!((from_file[0].initial.shape.clone(), &from_file[0].initial.data[..]), (vec![3], &values[..]));
        let zero = states(
            r#"state [ { input_name: "IN" output_name: "OUT" data_type: TYPE_FP32 dims: [ 2 ]
                         initial_state { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true name: "s" } } ]"#,
            8,
            dir.path(),
        )
        .unwrap();
        assert_eq!((zero[0].initial.shape.clone(), zero[0].initial.data.len()), (vec![1, 2], 8));
    }

    #[test]
    fn malformed_states_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = |initial: &str| {
            format!(
                r#"state [ {{ input_name: "IN" output_name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] {initial} }} ]"#
            )
        };
        let cases = [
            (
                r#"state [ { input_name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]"#.to_string(),
                "needs an input_name and an output_name",
            ),
            (r#"state [ { input_name: "IN" output_name: "OUT" dims: [ 1 ] } ]"#.to_string(), "needs a data_type"),
            (
                state(r#"initial_state { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "s" }"#),
                "another data_type",
            ),
            (state(r#"initial_state { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true }"#), "needs a name"),
            (
                state(r#"initial_state { data_type: TYPE_FP32 dims: [ 1, 1 ] zero_data: true name: "s" }"#),
                "has dims [1,1]",
            ),
            (state(r#"initial_state { data_type: TYPE_FP32 dims: [ -1 ] zero_data: true name: "s" }"#), "do not fit"),
            (
                state(r#"initial_state { data_type: TYPE_FP32 dims: [ 2 ] name: "s" }"#),
                "zero_data: true or a data_file",
            ),
            (
                state(r#"initial_state { data_type: TYPE_FP32 dims: [ 2 ] data_file: "missing" name: "s" }"#),
                "cannot read",
            ),
            (
                r#"state [ { input_name: "IN" output_name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] },
                           { input_name: "IN" output_name: "OUT2" data_type: TYPE_FP32 dims: [ 1 ] } ]"#
                    .to_string(),
                "names an input or output of another state",
            ),
        ];
        for (text, expected) in cases {
            let error = states(&text, 4, dir.path()).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
