//! Translation between the gRPC messages and the core's request, response
//! and error types. Raw tensor bytes pass through untouched; typed
//! `contents` are packed into the same little-endian layout.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use tonic::{Code, Status};

use crate::error::{Error, ErrorKind};
use crate::inference::{
    InferenceRequest, InferenceResponse, ParameterValue, Parameters, RequestedOutput, check_reserved_parameters,
    parse_model_version,
};
use crate::model_control::ControlParameters;
use crate::proto::inference::infer_parameter::ParameterChoice;
use crate::proto::inference::model_infer_request::InferInputTensor;
use crate::proto::inference::model_infer_response::InferOutputTensor;
use crate::proto::inference::model_repository_parameter::ParameterChoice as RepositoryChoice;
use crate::proto::inference::{
    InferBatchStatistics, InferParameter, InferStatistics, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelRepositoryParameter, ModelStatistics as ProtoModelStatistics, ModelStatisticsResponse, StatisticDuration,
};
use crate::shared_memory::SharedMemoryRef;
use crate::statistics::{Duration64, ModelStatistics};
use crate::tensor::{DataType, Tensor, encode_byte_strings};

/// The gRPC status for a core error.
pub fn status_of(error: Error) -> Status {
    let code = match error.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    };
    Status::new(code, error.message())
}

/// The one `triton_`-prefixed request parameter Triton's gRPC frontend
/// takes: a streaming client asks for an empty final answer with it.
const EMPTY_FINAL_RESPONSE: &str = "triton_enable_empty_final_response";

/// Decodes a `ModelInferRequest`.
pub fn decode_request(request: ModelInferRequest) -> Result<InferenceRequest, Error> {
    let model = request.model_name;
    let invalid = |message: String| Error::invalid_argument(format!("model '{model}': {message}"));
    let model_version = parse_model_version(&model, &request.model_version)?;
    let mut wire_inputs = request.inputs;
    let mut shared_memory_inputs = Vec::new();
    for (index, input) in wire_inputs.iter_mut().enumerate() {
        let parameters = decode_parameters(std::mem::take(&mut input.parameters));
        if let Some(place) = SharedMemoryRef::from_parameters(&model, "input", &input.name, &parameters)? {
            shared_memory_inputs.push((index, place));
        }
    }
    // As in Triton, raw_input_contents holds the data of the inputs that
    // are not in shared memory, in order.
    let raw = request.raw_input_contents;
    let raw_needed = wire_inputs.len() - shared_memory_inputs.len();
    if !raw.is_empty() && raw.len() != raw_needed {
        let outside = if shared_memory_inputs.is_empty() { "" } else { " outside shared memory" };
        return Err(invalid(format!(
            "the request has {raw_needed} inputs{outside} but {} raw_input_contents; send raw data for every input \
             or for none",
            raw.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut shared = shared_memory_inputs.iter().peekable();
    let inputs = wire_inputs
        .into_iter()
        .enumerate()
        .map(|(index, input)| {
            let place = shared.next_if(|(shared_index, _)| *shared_index == index).map(|(_, place)| place);
            let data = if place.is_some() { None } else { raw.next() };
            decode_input(input, data, place).map_err(&invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = request
        .outputs
        .into_iter()
        .map(|output| RequestedOutput { name: output.name, parameters: decode_parameters(output.parameters) })
        .collect();
    let parameters = decode_parameters(request.parameters);
    check_reserved_parameters(&model, &parameters, &[EMPTY_FINAL_RESPONSE])?;
    Ok(InferenceRequest {
        model_name: model.clone(),
        model_version,
        id: request.id,
        parameters,
        inputs,
        shared_memory_inputs,
        outputs,
    })
}

/// Decodes one input; one in shared memory (`place`) gets its data later,
/// from the model manager.
fn decode_input(
    input: InferInputTensor,
    raw: Option<Bytes>,
    place: Option<&SharedMemoryRef>,
) -> Result<Tensor, String> {
    let name = input.name;
    let datatype = DataType::from_protocol_name(&input.datatype).ok_or_else(|| {
        let known: Vec<&str> = DataType::ALL.iter().map(|datatype| datatype.protocol_name()).collect();
        format!("input '{name}' has unknown datatype '{}'; expected one of {}", input.datatype, known.join(", "))
    })?;
    if let Some(place) = place {
        if input.contents.is_some() {
            return Err(format!(
                "input '{name}' is in shared memory region '{}' and also has contents; send one of them",
                place.region
            ));
        }
        return Ok(Tensor { name, datatype, shape: input.shape, data: Bytes::new() });
    }
    let data = match (raw, input.contents) {
        (Some(raw), None) => raw,
        (Some(_), Some(_)) => {
            return Err(format!("input '{name}' has both contents and raw_input_contents; send one of them"));
        }
        (None, Some(contents)) => pack_contents(&name, datatype, contents)?,
        // As in Triton: a tensor without data is a mistake, even an empty one.
        (None, None) => {
            return Err(format!("input '{name}' has no data: send it in raw_input_contents or in contents"));
        }
    };
    Ok(Tensor { name, datatype, shape: input.shape, data })
}

/// Packs typed contents into raw little-endian bytes, checking that they are
/// in the field the datatype uses and that every value fits the type.
fn pack_contents(name: &str, datatype: DataType, contents: InferTensorContents) -> Result<Bytes, String> {
    let field = match datatype {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 | DataType::Bf16 => {
            return Err(format!(
                "input '{name}' is {datatype}, which has no typed contents field; send it in raw_input_contents"
            ));
        }
    };
    let filled: Vec<&str> = [
        ("bool_contents", contents.bool_contents.is_empty()),
        ("int_contents", contents.int_contents.is_empty()),
        ("int64_contents", contents.int64_contents.is_empty()),
        ("uint_contents", contents.uint_contents.is_empty()),
        ("uint64_contents", contents.uint64_contents.is_empty()),
        ("fp32_contents", contents.fp32_contents.is_empty()),
        ("fp64_contents", contents.fp64_contents.is_empty()),
        ("bytes_contents", contents.bytes_contents.is_empty()),
    ]
    .into_iter()
    .filter(|&(other, empty)| !empty && other != field)
    .map(|(other, _)| other)
    .collect();
    if let Some(other) = filled.first() {
        return Err(format!("input '{name}' is {datatype}, so its data belongs in {field}, not {other}"));
    }
    let out_of_range =
        |value: &dyn std::fmt::Display| format!("input '{name}': {value} in {field} does not fit {datatype}");
    let mut buffer = BytesMut::new();
    match datatype {
        DataType::Bool => contents.bool_contents.iter().for_each(|&value| buffer.put_u8(u8::from(value))),
        DataType::Int8 => {
            for &value in &contents.int_contents {
                buffer.put_i8(i8::try_from(value).map_err(|_| out_of_range(&value))?);
            }
        }
        DataType::Int16 => {
            for &value in &contents.int_contents {
                buffer.put_i16_le(i16::try_from(value).map_err(|_| out_of_range(&value))?);
            }
        }
        DataType::Int32 => contents.int_contents.iter().for_each(|&value| buffer.put_i32_le(value)),
        DataType::Int64 => contents.int64_contents.iter().for_each(|&value| buffer.put_i64_le(value)),
        DataType::Uint8 => {
            for &value in &contents.uint_contents {
                buffer.put_u8(u8::try_from(value).map_err(|_| out_of_range(&value))?);
            }
        }
        DataType::Uint16 => {
            for &value in &contents.uint_contents {
                buffer.put_u16_le(u16::try_from(value).map_err(|_| out_of_range(&value))?);
            }
        }
        DataType::Uint32 => contents.uint_contents.iter().for_each(|&value| buffer.put_u32_le(value)),
        DataType::Uint64 => contents.uint64_contents.iter().for_each(|&value| buffer.put_u64_le(value)),
        DataType::Fp32 => contents.fp32_contents.iter().for_each(|&value| buffer.put_f32_le(value)),
        DataType::Fp64 => contents.fp64_contents.iter().for_each(|&value| buffer.put_f64_le(value)),
        DataType::Bytes => return Ok(encode_byte_strings(&contents.bytes_contents)),
        DataType::Fp16 | DataType::Bf16 => unreachable!("rejected above"),
    }
    Ok(buffer.freeze())
}

fn decode_parameters(parameters: HashMap<String, InferParameter>) -> Parameters {
    parameters
        .into_iter()
        .filter_map(|(key, parameter)| {
            let value = match parameter.parameter_choice? {
                ParameterChoice::BoolParam(value) => ParameterValue::Bool(value),
                ParameterChoice::Int64Param(value) => ParameterValue::Int64(value),
                ParameterChoice::StringParam(value) => ParameterValue::String(value),
                ParameterChoice::DoubleParam(value) => ParameterValue::Double(value),
                ParameterChoice::Uint64Param(value) => ParameterValue::Uint64(value),
            };
            Some((key, value))
        })
        .collect()
}

/// Decodes the parameters of a load or unload request; bytes (the model
/// files of Triton's `file:` parameters) are kept apart from the values.
pub fn decode_repository_parameters(parameters: HashMap<String, ModelRepositoryParameter>) -> ControlParameters {
    let mut decoded = ControlParameters::default();
    for (key, parameter) in parameters {
        let value = match parameter.parameter_choice {
            None => continue,
            Some(RepositoryChoice::BoolParam(value)) => ParameterValue::Bool(value),
            Some(RepositoryChoice::Int64Param(value)) => ParameterValue::Int64(value),
            Some(RepositoryChoice::StringParam(value)) => ParameterValue::String(value),
            Some(RepositoryChoice::BytesParam(contents)) => {
                decoded.bytes.insert(key, contents);
                continue;
            }
        };
        decoded.values.insert(key, value);
    }
    decoded
}

fn encode_parameters(parameters: Parameters) -> HashMap<String, InferParameter> {
    parameters
        .into_iter()
        .map(|(key, value)| {
            let choice = match value {
                ParameterValue::Bool(value) => ParameterChoice::BoolParam(value),
                ParameterValue::Int64(value) => ParameterChoice::Int64Param(value),
                ParameterValue::String(value) => ParameterChoice::StringParam(value),
                ParameterValue::Double(value) => ParameterChoice::DoubleParam(value),
                ParameterValue::Uint64(value) => ParameterChoice::Uint64Param(value),
            };
            (key, InferParameter { parameter_choice: Some(choice) })
        })
        .collect()
}

/// Encodes a response with every output in `raw_output_contents`, the form
/// Triton's clients read.
pub fn encode_response(response: InferenceResponse) -> ModelInferResponse {
    let (outputs, raw_output_contents) = response
        .outputs
        .into_iter()
        .map(|tensor| {
            let output = InferOutputTensor {
                name: tensor.name,
                datatype: tensor.datatype.protocol_name().to_string(),
                shape: tensor.shape,
                parameters: HashMap::new(),
                contents: None,
            };
            (output, tensor.data)
        })
        .unzip();
    ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version.to_string(),
        id: response.id,
        parameters: encode_parameters(response.parameters),
        outputs,
        raw_output_contents,
    }
}

/// Encodes model statistics.
pub fn encode_statistics(statistics: Vec<ModelStatistics>) -> ModelStatisticsResponse {
    let duration = |value: Duration64| Some(StatisticDuration { count: value.count, ns: value.ns });
    let model_stats = statistics
        .into_iter()
        .map(|model| {
            let stats = model.inference_stats;
            ProtoModelStatistics {
                name: model.name,
                version: model.version.to_string(),
                last_inference: model.last_inference,
                inference_count: model.inference_count,
                execution_count: model.execution_count,
                inference_stats: Some(InferStatistics {
                    success: duration(stats.success),
                    fail: duration(stats.fail),
                    queue: duration(stats.queue),
                    compute_input: duration(stats.compute_input),
                    compute_infer: duration(stats.compute_infer),
                    compute_output: duration(stats.compute_output),
                    cache_hit: duration(stats.cache_hit),
                    cache_miss: duration(stats.cache_miss),
                }),
                batch_stats: model
                    .batch_stats
                    .into_iter()
                    .map(|(batch_size, batch)| InferBatchStatistics {
                        batch_size,
                        compute_input: duration(batch.compute_input),
                        compute_infer: duration(batch.compute_infer),
                        compute_output: duration(batch.compute_output),
                    })
                    .collect(),
                memory_usage: Vec::new(),
                response_stats: HashMap::new(),
            }
        })
        .collect();
    ModelStatisticsResponse { model_stats }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::BatchPosition;

    fn input(name: &str, datatype: &str, shape: Vec<i64>, contents: Option<InferTensorContents>) -> InferInputTensor {
        InferInputTensor { name: name.into(), datatype: datatype.into(), shape, parameters: HashMap::new(), contents }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Bytes>) -> ModelInferRequest {
        ModelInferRequest { model_name: "m".into(), inputs, raw_input_contents: raw, ..Default::default() }
    }

    #[test]
    fn typed_contents_become_little_endian_bytes() {
        let contents = InferTensorContents { int_contents: vec![1, -2], ..Default::default() };
        let decoded = decode_request(request(vec![input("x", "INT16", vec![2], Some(contents))], vec![])).unwrap();
        assert_eq!(decoded.inputs[0].data[..], [1, 0, 0xfe, 0xff]);

        let contents = InferTensorContents { bytes_contents: vec![b"ab".to_vec()], ..Default::default() };
        let decoded = decode_request(request(vec![input("s", "BYTES", vec![1], Some(contents))], vec![])).unwrap();
        assert_eq!(decoded.inputs[0].data[..], *b"\x02\x00\x00\x00ab");
    }

    #[test]
    fn raw_contents_pass_through_and_must_cover_every_input() {
        let raw = Bytes::from_static(&[1, 2, 3, 4]);
        let decoded = decode_request(request(vec![input("x", "INT32", vec![1], None)], vec![raw.clone()])).unwrap();
        assert_eq!(decoded.inputs[0].data, raw);

        let error = decode_request(request(
            vec![input("x", "INT32", vec![1], None), input("y", "INT32", vec![1], None)],
            vec![raw],
        ))
        .unwrap_err();
        assert!(error.message().contains("2 inputs but 1 raw_input_contents"), "{}", error.message());
    }

    #[test]
    fn contents_errors_name_the_input_and_field() {
        let cases = [
            (input("x", "FLOAT", vec![1], None), "input 'x' has unknown datatype 'FLOAT'"),
            (input("x", "FP16", vec![1], Some(InferTensorContents::default())), "send it in raw_input_contents"),
            (
                input("x", "FP32", vec![1], Some(InferTensorContents { int_contents: vec![1], ..Default::default() })),
                "its data belongs in fp32_contents, not int_contents",
            ),
            (
                input(
                    "x",
                    "UINT8",
                    vec![1],
                    Some(InferTensorContents { uint_contents: vec![256], ..Default::default() }),
                ),
                "256 in uint_contents does not fit UINT8",
            ),
            (input("x", "INT32", vec![0], None), "input 'x' has no data"),
        ];
        for (tensor, expected) in cases {
            let error = decode_request(request(vec![tensor], vec![])).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument);
            assert!(error.message().contains(expected), "expected '{expected}' in '{}'", error.message());
        }
    }

    #[test]
    fn shared_memory_inputs_take_no_raw_contents() {
        let region = |name: &str| {
            let mut tensor = input(name, "INT32", vec![1], None);
            let parameter = |choice| InferParameter { parameter_choice: Some(choice) };
            tensor
                .parameters
                .insert("shared_memory_region".into(), parameter(ParameterChoice::StringParam("r".into())));
            tensor.parameters.insert("shared_memory_byte_size".into(), parameter(ParameterChoice::Int64Param(4)));
            tensor
        };
        let raw = vec![Bytes::from_static(&[7, 0, 0, 0])];
        let decoded = decode_request(request(vec![region("a"), input("b", "INT32", vec![1], None)], raw)).unwrap();
        assert_eq!(
            decoded.shared_memory_inputs,
            [(0, SharedMemoryRef { region: "r".into(), offset: 0, byte_size: 4 })]
        );
        assert!(decoded.inputs[0].data.is_empty());
        assert_eq!(decoded.inputs[1].data[..], [7, 0, 0, 0]);

        let two_raw = vec![Bytes::from_static(&[0; 4]), Bytes::from_static(&[0; 4])];
        let error =
            decode_request(request(vec![region("a"), input("b", "INT32", vec![1], None)], two_raw)).unwrap_err();
        assert!(error.message().contains("1 inputs outside shared memory but 2 raw_input_contents"), "{error}");
        let mut both = region("a");
        both.contents = Some(InferTensorContents { int_contents: vec![1], ..Default::default() });
        let error = decode_request(request(vec![both], vec![])).unwrap_err();
        assert!(error.message().contains("in shared memory region 'r' and also has contents"), "{error}");
    }

    #[test]
    fn response_outputs_are_raw() {
        let response = encode_response(InferenceResponse {
            model_name: "m".into(),
            model_version: 3,
            id: "req-1".into(),
            parameters: Parameters::new(),
            outputs: vec![Tensor {
                name: "y".into(),
                datatype: DataType::Fp32,
                shape: vec![1],
                data: Bytes::from_static(&[0, 0, 128, 63]),
            }],
            shared_memory_outputs: Vec::new(),
            batch_position: BatchPosition::ALONE,
        });
        assert_eq!(response.model_version, "3");
        assert_eq!(response.id, "req-1");
        assert_eq!(response.outputs[0].datatype, "FP32");
        assert_eq!(response.raw_output_contents[0][..], [0, 0, 128, 63]);
    }
}
