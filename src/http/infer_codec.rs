//! KServe v2 inference requests and responses over HTTP: a JSON object,
//! optionally followed by binary tensor data (Triton's binary tensor data
//! extension), translated to and from the core's types.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::json_tensor::{data_array_text, encode_values, flatten, quote_non_finite_tokens};
use crate::error::{Error, Result};
use crate::inference::{
    InferenceRequest, InferenceResponse, ParameterValue, Parameters, RequestedOutput, check_reserved_parameters,
};
use crate::shared_memory::SharedMemoryRef;
use crate::tensor::{DataType, Tensor, element_count, encode_byte_strings, format_shape};

/// Header giving the length of the JSON part when binary data follows it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Debug, Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Debug, Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// How the client wants each output: as JSON `data` or as binary data
/// after the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputEncoding {
    /// `binary_data_output`: the default for outputs without their own
    /// `binary_data` parameter.
    pub binary_by_default: bool,
    /// Outputs with an explicit `binary_data` parameter.
    pub binary: HashMap<String, bool>,
}

impl OutputEncoding {
    /// Every output as binary data.
    pub fn all_binary() -> Self {
        Self { binary_by_default: true, binary: HashMap::new() }
    }

    fn is_binary(&self, output: &str) -> bool {
        self.binary.get(output).copied().unwrap_or(self.binary_by_default)
    }
}

/// Splits a body into its JSON part and the binary data after it, by the
/// `Inference-Header-Content-Length` value.
pub fn split_body(body: Bytes, header_length: Option<usize>) -> Result<(Bytes, Bytes)> {
    match header_length {
        None => Ok((body, Bytes::new())),
        Some(length) if length > body.len() => Err(Error::invalid_argument(format!(
            "Inference-Header-Content-Length is {length} but the body has only {} bytes",
            body.len()
        ))),
        Some(length) => {
            let binary = body.slice(length..);
            Ok((body.slice(..length), binary))
        }
    }
}

/// Decodes the JSON part and binary data of an inference request for
/// `model_name` at `model_version`.
pub fn decode_request(
    model_name: &str,
    model_version: Option<i64>,
    json: &[u8],
    binary: Bytes,
) -> Result<(InferenceRequest, OutputEncoding)> {
    let invalid = |message: String| Error::invalid_argument(format!("model '{model_name}': {message}"));
    let body: RequestJson = serde_json::from_slice(&quote_non_finite_tokens(json))
        .map_err(|error| invalid(format!("the request body is not a valid inference request: {error}")))?;

    let mut offset = 0usize;
    let mut inputs = Vec::with_capacity(body.inputs.len());
    let mut shared_memory_inputs = Vec::new();
    for input in body.inputs {
        let parameters = input.parameters.unwrap_or_default();
        // Most inputs carry at most binary_data_size: only those naming
        // shared memory pay for converting their parameters.
        let place = if parameters.keys().any(|key| key.starts_with("shared_memory_")) {
            SharedMemoryRef::from_parameters(model_name, "input", &input.name, &decode_parameters(parameters.clone()))?
        } else {
            None
        };
        let datatype = DataType::from_protocol_name(&input.datatype).ok_or_else(|| {
            let known: Vec<&str> = DataType::ALL.iter().map(|datatype| datatype.protocol_name()).collect();
            invalid(format!(
                "input '{}' has unknown datatype '{}'; expected one of {}",
                input.name,
                input.datatype,
                known.join(", ")
            ))
        })?;
        if let Some(place) = place {
            if input.data.is_some() || parameters.contains_key("binary_data_size") {
                return Err(invalid(format!(
                    "input '{}' is in shared memory region '{}' and also has data; send one of them",
                    input.name, place.region
                )));
            }
            shared_memory_inputs.push((inputs.len(), place));
            inputs.push(Tensor { name: input.name, datatype, shape: input.shape, data: Bytes::new() });
            continue;
        }
        let data = match (parameters.get("binary_data_size"), input.data) {
            (Some(size), None) => {
                let size = size.as_u64().and_then(|size| usize::try_from(size).ok()).ok_or_else(|| {
                    invalid(format!("input '{}' has binary_data_size {size}, expected a byte count", input.name))
                })?;
                let end = offset.checked_add(size).filter(|&end| end <= binary.len()).ok_or_else(|| {
                    invalid(format!(
                        "input '{}' has binary_data_size {size} but only {} bytes of binary data remain",
                        input.name,
                        binary.len().saturating_sub(offset)
                    ))
                })?;
                let data = binary.slice(offset..end);
                offset = end;
                data
            }
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "input '{}' has both data and binary_data_size; send one of them",
                    input.name
                )));
            }
            (None, Some(data)) => {
                let mut values = Vec::new();
                flatten(&data, &mut values);
                if let Some(expected) = element_count(&input.shape)
                    && expected != values.len()
                {
                    return Err(invalid(format!(
                        "input '{}' has {} values in data, expected {expected} for shape {}",
                        input.name,
                        values.len(),
                        format_shape(&input.shape)
                    )));
                }
                encode_values(datatype, &values).map_err(|error| invalid(format!("input '{}': {error}", input.name)))?
            }
            (None, None) => {
                return Err(invalid(format!(
                    "input '{}' has no data; send \"data\" or binary data with a binary_data_size parameter",
                    input.name
                )));
            }
        };
        inputs.push(Tensor { name: input.name, datatype, shape: input.shape, data });
    }
    if offset != binary.len() {
        return Err(invalid(format!(
            "the body has {} bytes of binary data but the inputs' binary_data_size add up to {offset}",
            binary.len()
        )));
    }

    let parameters = body.parameters.unwrap_or_default();
    let binary_by_default = match parameters.get("binary_data_output") {
        None => false,
        Some(Value::Bool(binary)) => *binary,
        Some(other) => {
            return Err(invalid(format!("the 'binary_data_output' parameter must be true or false, not {other}")));
        }
    };
    let mut encoding = OutputEncoding { binary_by_default, binary: HashMap::new() };
    let mut outputs = Vec::new();
    for output in body.outputs.unwrap_or_default() {
        let parameters = output.parameters.unwrap_or_default();
        if let Some(binary) = parameters.get("binary_data").and_then(Value::as_bool) {
            encoding.binary.insert(output.name.clone(), binary);
        }
        outputs.push(RequestedOutput { name: output.name, parameters: decode_parameters(parameters) });
    }
    let parameters = decode_parameters(parameters);
    // Triton's HTTP frontend takes no `triton_` parameters at all.
    check_reserved_parameters(model_name, &parameters, &[])?;
    let request = InferenceRequest {
        model_name: model_name.to_string(),
        model_version,
        id: body.id.unwrap_or_default(),
        parameters,
        inputs,
        shared_memory_inputs,
        outputs,
    };
    Ok((request, encoding))
}

/// Request or tensor parameters from JSON; values that are not scalars are
/// left out.
pub fn decode_parameters(parameters: Map<String, Value>) -> Parameters {
    parameters
        .into_iter()
        .filter_map(|(key, value)| {
            let value = match value {
                Value::Bool(value) => ParameterValue::Bool(value),
                Value::String(value) => ParameterValue::String(value),
                Value::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
                    (Some(value), _, _) => ParameterValue::Int64(value),
                    (None, Some(value), _) => ParameterValue::Uint64(value),
                    (None, None, Some(value)) => ParameterValue::Double(value),
                    (None, None, None) => return None,
                },
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            Some((key, value))
        })
        .collect()
}

fn encode_parameter(value: ParameterValue) -> Value {
    match value {
        ParameterValue::Bool(value) => Value::Bool(value),
        ParameterValue::Int64(value) => Value::from(value),
        ParameterValue::Uint64(value) => Value::from(value),
        ParameterValue::Double(value) => Value::from(value),
        ParameterValue::String(value) => Value::String(value),
    }
}

/// An encoded response: the JSON part and the binary chunks that follow
/// it, in output order.
#[derive(Debug)]
pub struct EncodedResponse {
    /// The JSON object.
    pub json: Vec<u8>,
    /// Binary output data; empty when every output went into the JSON.
    pub binary: Vec<Bytes>,
}

/// Encodes a response, putting each output in the JSON or after it as
/// `encoding` asks.
pub fn encode_response(response: InferenceResponse, encoding: &OutputEncoding) -> Result<EncodedResponse> {
    let encoding_error = |error: serde_json::Error| Error::internal(format!("cannot encode the response: {error}"));
    let mut binary = Vec::new();
    let mut outputs = Vec::with_capacity(response.outputs.len());
    for tensor in response.outputs {
        let mut output = json!({
            "name": tensor.name,
            "datatype": tensor.datatype.protocol_name(),
            "shape": tensor.shape,
        });
        if response.shared_memory_outputs.contains(&tensor.name) {
            // Its data went into the shared memory the request named.
            outputs.push(serde_json::to_string(&output).map_err(encoding_error)?);
        } else if encoding.is_binary(&tensor.name) {
            output["parameters"] = json!({ "binary_data_size": tensor.data.len() });
            outputs.push(serde_json::to_string(&output).map_err(encoding_error)?);
            binary.push(tensor.data);
        } else {
            // The data array is written as text of its own, since it may hold
            // NaN or infinities, which no JSON value can.
            let data = data_array_text(&tensor).map_err(|error| {
                Error::invalid_argument(format!("model '{}': output '{}': {error}", response.model_name, tensor.name))
            })?;
            outputs.push(with_member(serde_json::to_string(&output).map_err(encoding_error)?, "data", &data));
        }
    }
    let mut head = json!({
        "model_name": response.model_name,
        "model_version": response.model_version.to_string(),
    });
    if !response.id.is_empty() {
        head["id"] = Value::String(response.id);
    }
    if !response.parameters.is_empty() {
        head["parameters"] =
            Value::Object(response.parameters.into_iter().map(|(key, value)| (key, encode_parameter(value))).collect());
    }
    let outputs = format!("[{}]", outputs.join(","));
    let json = with_member(serde_json::to_string(&head).map_err(encoding_error)?, "outputs", &outputs);
    Ok(EncodedResponse { json: json.into_bytes(), binary })
}

/// Appends a member whose value is ready-made JSON text to the text of a
/// non-empty JSON object.
fn with_member(mut object: String, key: &str, value: &str) -> String {
    object.pop();
    object.push_str(&format!(",\"{key}\":{value}}}"));
    object
}

/// Builds the request of Triton's raw binary form (an
/// `Inference-Header-Content-Length` of 0): the whole body is the data of
/// the model's only input, whose shape follows from the byte count; the
/// batch is 1 and every output comes back as binary data.
pub fn raw_binary_request(
    model_name: &str,
    model_version: Option<i64>,
    input: &crate::model_manager::TensorMetadata,
    batching: bool,
    body: Bytes,
) -> Result<InferenceRequest> {
    let invalid = |message: String| Error::invalid_argument(format!("model '{model_name}': {message}"));
    let mut shape = input.shape.clone();
    if batching && let Some(first) = shape.first_mut() {
        *first = 1;
    }
    let variable: Vec<usize> = shape.iter().enumerate().filter(|(_, dim)| **dim < 0).map(|(index, _)| index).collect();
    let mut data = body;
    match input.datatype.element_size() {
        None => {
            if element_count(&shape.iter().map(|&dim| dim.max(1)).collect::<Vec<_>>()) != Some(1) {
                return Err(invalid(format!(
                    "a raw binary request needs a BYTES input of one element, but input '{}' has shape {}",
                    input.name,
                    format_shape(&input.shape)
                )));
            }
            shape.iter_mut().for_each(|dim| *dim = (*dim).max(1));
            // The body is the one element's bytes; as Triton does, give it
            // the length prefix that BYTES tensors carry.
            data = encode_byte_strings([&data]);
        }
        Some(size) => {
            if variable.len() > 1 {
                return Err(invalid(format!(
                    "a raw binary request needs at most one variable dimension, but input '{}' has shape {}",
                    input.name,
                    format_shape(&input.shape)
                )));
            }
            if let Some(&index) = variable.first() {
                let known: usize = shape.iter().filter(|&&dim| dim >= 0).map(|&dim| dim as usize).product();
                let per_step = known * size;
                if per_step == 0 || !data.len().is_multiple_of(per_step) {
                    return Err(invalid(format!(
                        "{} bytes of raw binary data do not fill input '{}' of shape {} with {} elements",
                        data.len(),
                        input.name,
                        format_shape(&input.shape),
                        input.datatype
                    )));
                }
                shape[index] = (data.len() / per_step) as i64;
            }
        }
    }
    Ok(InferenceRequest {
        model_name: model_name.to_string(),
        model_version,
        id: String::new(),
        parameters: Parameters::new(),
        inputs: vec![Tensor { name: input.name.clone(), datatype: input.datatype, shape, data }],
        shared_memory_inputs: Vec::new(),
        outputs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::inference::BatchPosition;
    use crate::tensor::encode_byte_strings;

    #[test]
    fn json_data_and_binary_data_decode_to_the_same_tensor() {
        let json = br#"{"id":"r1","inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1,2]}],
                        "outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let (request, encoding) = decode_request("m", None, json, Bytes::new()).unwrap();
        assert_eq!(request.id, "r1");
        assert_eq!(request.inputs[0].data[..], [1, 0, 0, 0, 2, 0, 0, 0]);
        assert!(encoding.is_binary("y"));
        assert!(!encoding.is_binary("z"));

        let json = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}],
                        "parameters":{"binary_data_output":true}}"#;
        let binary = Bytes::from_static(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let (request, encoding) = decode_request("m", None, json, binary.clone()).unwrap();
        assert_eq!(request.inputs[0].data, binary);
        assert!(encoding.is_binary("anything"));
    }

    #[test]
    fn malformed_requests_are_named() {
        let cases: [(&[u8], &[u8], &str); 6] = [
            (b"{", b"", "not a valid inference request"),
            (
                br#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1]}]}"#,
                b"",
                "input 'x' has 1 values in data, expected 2 for shape [2]",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#,
                b"",
                "unknown datatype 'FLOAT'",
            ),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32"}]}"#, b"", "input 'x' has no data"),
            (
                br#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}]}"#,
                b"1234",
                "binary_data_size 8 but only 4 bytes",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1]}]}"#,
                b"extra",
                "5 bytes of binary data",
            ),
        ];
        for (json, binary, expected) in cases {
            let error = decode_request("m", None, json, Bytes::copy_from_slice(binary)).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument);
            assert!(error.message().contains(expected), "expected '{expected}' in '{}'", error.message());
        }
    }

    #[test]
    fn responses_mix_json_and_binary_outputs_in_order() {
        let response = InferenceResponse {
            model_name: "m".into(),
            model_version: 1,
            id: String::new(),
            parameters: Parameters::new(),
            outputs: vec![
                Tensor {
                    name: "a".into(),
                    datatype: DataType::Int32,
                    shape: vec![1],
                    data: Bytes::from_static(&[7, 0, 0, 0]),
                },
                Tensor {
                    name: "b".into(),
                    datatype: DataType::Bytes,
                    shape: vec![1],
                    data: encode_byte_strings(["hi"]),
                },
                Tensor { name: "c".into(), datatype: DataType::Fp32, shape: vec![2], data: Bytes::new() },
            ],
            shared_memory_outputs: vec!["c".into()],
            batch_position: BatchPosition::ALONE,
        };
        let encoding = OutputEncoding { binary_by_default: false, binary: HashMap::from([("b".to_string(), true)]) };
        let encoded = encode_response(response, &encoding).unwrap();
        let json: Value = serde_json::from_slice(&encoded.json).unwrap();
        assert_eq!(json["model_version"], "1");
        assert!(json.get("id").is_none());
        assert_eq!(json["outputs"][0]["data"], json!([7]));
        assert_eq!(json["outputs"][1]["parameters"]["binary_data_size"], 6);
        // An output in shared memory has neither data nor binary data.
        assert_eq!(json["outputs"][2], json!({ "name": "c", "datatype": "FP32", "shape": [2] }));
        assert_eq!(encoded.binary, vec![encode_byte_strings(["hi"])]);
    }

    #[test]
    fn header_length_splits_the_body() {
        let (json, binary) = split_body(Bytes::from_static(b"{}abc"), Some(2)).unwrap();
        assert_eq!((&json[..], &binary[..]), (&b"{}"[..], &b"abc"[..]));
        assert!(split_body(Bytes::from_static(b"{}"), Some(3)).is_err());
    }
}
