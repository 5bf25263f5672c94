//! Triton's generate extension: `POST /v2/models/{model}[/versions/{v}]/generate`
//! and `.../generate_stream`, a flat JSON form of an inference request.
//! Each member of the request object that names a model input is that
//! input (a value or a flat list of values, shaped from the model's
//! metadata); `id` is the request id, and every other member, with those
//! of `parameters`, is a request parameter. The answer is one object:
//! `id` (when given), `model_name`, `model_version`, and each output by
//! name, a single element unwrapped from its list. `generate_stream`
//! sends the same object as a server-sent event.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::body::read_body;
use super::error::ApiError;
use super::infer::{sample_trace, traced};
use super::infer_codec::decode_parameters;
use super::json_tensor::{decode_values, encode_values};
use super::{AppState, ModelPath};
use crate::error::{Error, Result};
use crate::inference::{InferenceRequest, InferenceResponse, Parameters};
use crate::model_manager::TensorMetadata;
use crate::tensor::{Tensor, format_shape};
use crate::trace::{Activity, RequestTrace};

/// `POST .../generate`: the answer as one JSON object.
pub async fn generate(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let trace = sample_trace(&state, &path.model, &headers);
    let answer = run(&state, &path, &headers, body, trace.clone()).await?;
    Ok(traced(axum::Json(answer).into_response(), trace))
}

/// `POST .../generate_stream`: the answer as a server-sent event. A
/// request refused before it runs gets a JSON error, as from `generate`; an
/// inference that fails gets the error object as the event, with the
/// error's status, as Triton sends it for a first response.
pub async fn generate_stream(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let trace = sample_trace(&state, &path.model, &headers);
    let (status, answer) = match run(&state, &path, &headers, body, trace.clone()).await {
        Ok(answer) => (StatusCode::OK, answer),
        Err(GenerateError::BeforeInference(error)) => return Err(error),
        Err(GenerateError::Inference(error)) => (error.status, serde_json::json!({ "error": error.message })),
    };
    let event = format!("data: {answer}\n\n");
    let response = (status, [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")], event).into_response();
    Ok(traced(response, trace))
}

/// Why a generate request failed: before it could run (the answer is a
/// plain JSON error), or in the inference itself.
enum GenerateError {
    BeforeInference(ApiError),
    Inference(ApiError),
}

impl From<GenerateError> for ApiError {
    fn from(error: GenerateError) -> Self {
        match error {
            GenerateError::BeforeInference(error) | GenerateError::Inference(error) => error,
        }
    }
}

impl From<ApiError> for GenerateError {
    fn from(error: ApiError) -> Self {
        Self::BeforeInference(error)
    }
}

impl From<Error> for GenerateError {
    fn from(error: Error) -> Self {
        Self::BeforeInference(error.into())
    }
}

async fn run(
    state: &AppState,
    path: &ModelPath,
    headers: &HeaderMap,
    body: Body,
    trace: Option<Arc<RequestTrace>>,
) -> std::result::Result<Value, GenerateError> {
    let version = path.version()?;
    let model = path.model.as_str();
    // As in Triton, whose generate endpoint takes no compressed body.
    if headers.get(header::CONTENT_ENCODING).is_some_and(|encoding| encoding != "identity") {
        return Err(ApiError::bad_request("Unsupported content-encoding, only 'identity' is supported.").into());
    }
    let body = read_body(headers, body, state.settings.max_input_size).await?;
    if let Some(trace) = &trace {
        trace.stamp(Activity::HttpRecvEnd);
    }
    let object = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(ApiError::bad_request("the generate request must be a JSON object").into()),
        Err(error) => return Err(ApiError::bad_request(format!("the request body is not JSON: {error}")).into()),
    };
    let inputs = state.manager.model_metadata(model, version)?.inputs;
    let request = generate_request(model, version, &inputs, object)?;
    let response = state.manager.infer(request, trace).await.map_err(|error| GenerateError::Inference(error.into()))?;
    Ok(generate_response(response)?)
}

/// The inference request a generate request object describes.
fn generate_request(
    model: &str,
    version: Option<i64>,
    inputs: &[TensorMetadata],
    object: Map<String, Value>,
) -> Result<InferenceRequest> {
    let invalid = |message: String| Error::invalid_argument(format!("model '{model}': {message}"));
    let mut request = InferenceRequest {
        model_name: model.to_string(),
        model_version: version,
        id: String::new(),
        parameters: Parameters::new(),
        inputs: Vec::new(),
        shared_memory_inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let mut loose = Map::new();
    for (key, value) in object {
        if let Some(input) = inputs.iter().find(|input| input.name == key) {
            request.inputs.push(input_tensor(input, &value).map_err(|why| invalid(format!("input '{key}': {why}")))?);
            continue;
        }
        match (key.as_str(), value) {
            ("id", Value::String(id)) => request.id = id,
            ("id", _) => return Err(invalid("\"id\" must be a string".to_string())),
            ("parameters", Value::Object(parameters)) => loose.extend(parameters),
            ("parameters", _) => return Err(invalid("\"parameters\" must be an object".to_string())),
            (_, value @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => {
                loose.insert(key, value);
            }
            (_, _) => {
                let names: Vec<&str> = inputs.iter().map(|input| input.name.as_str()).collect();
                return Err(invalid(format!(
                    "'{key}' is not an input (the inputs are {}), so it is a parameter, which must be a string, a \
                     number or a boolean",
                    names.join(", ")
                )));
            }
        }
    }
    request.parameters = decode_parameters(loose);
    Ok(request)
}

/// An input from its generate value: a single element or a flat list,
/// shaped as Triton shapes it: the model's fixed dimensions divide the
/// element count, the last variable dimension takes what is left, and the
/// other variable ones (the batch dimension among them) are 1.
fn input_tensor(input: &TensorMetadata, value: &Value) -> std::result::Result<Tensor, String> {
    let elements: Vec<&Value> = match value {
        Value::Array(elements) => elements.iter().collect(),
        single => vec![single],
    };
    let mut remaining = elements.len() as i64;
    for &dim in input.shape.iter().filter(|&&dim| dim != -1) {
        if dim == 0 || remaining % dim != 0 {
            return Err(format!("{} elements do not fill its shape {}", elements.len(), format_shape(&input.shape)));
        }
        remaining /= dim;
    }
    let mut shape = input.shape.clone();
    for dim in shape.iter_mut().rev().filter(|dim| **dim == -1) {
        *dim = std::mem::replace(&mut remaining, 1);
    }
    if remaining != 1 {
        return Err(format!("{} elements do not fill its shape {}", elements.len(), format_shape(&input.shape)));
    }
    let data = encode_values(input.datatype, &elements)?;
    Ok(Tensor { name: input.name.clone(), datatype: input.datatype, shape, data })
}

/// The generate answer of a response.
fn generate_response(response: InferenceResponse) -> Result<Value> {
    let mut answer = Map::new();
    if !response.id.is_empty() {
        answer.insert("id".to_string(), Value::String(response.id.clone()));
    }
    answer.insert("model_name".to_string(), Value::String(response.model_name.clone()));
    answer.insert("model_version".to_string(), Value::String(response.model_version.to_string()));
    for output in &response.outputs {
        let mut values = decode_values(output).map_err(|why| {
            Error::internal(format!("model '{}': output '{}': {why}", response.model_name, output.name))
        })?;
        let value = if values.len() == 1 { values.remove(0) } else { Value::Array(values) };
        answer.insert(output.name.clone(), value);
    }
    Ok(Value::Object(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DataType;

    fn metadata(datatype: DataType, shape: &[i64]) -> TensorMetadata {
        TensorMetadata { name: "x".into(), datatype, shape: shape.to_vec() }
    }

    #[test]
    fn inputs_take_their_shape_from_the_metadata_as_triton_gives_it() {
        let sixteen: Vec<Value> = (0..16).map(Value::from).collect();
        let tensor = input_tensor(&metadata(DataType::Int32, &[-1, 16]), &Value::Array(sixteen)).unwrap();
        assert_eq!((tensor.shape, tensor.data.len()), (vec![1, 16], 64));
        let text = input_tensor(&metadata(DataType::Bytes, &[-1, -1]), &Value::from("hi")).unwrap();
        assert_eq!((text.shape, &text.data[..]), (vec![1, 1], &[2, 0, 0, 0, b'h', b'i'][..]));
        let three: Vec<Value> = (0..3).map(Value::from).collect();
        let varying = input_tensor(&metadata(DataType::Fp32, &[-1, -1]), &Value::Array(three.clone())).unwrap();
        assert_eq!(varying.shape, [1, 3]);
        let error = input_tensor(&metadata(DataType::Int32, &[-1, 16]), &Value::Array(three)).unwrap_err();
        assert_eq!(error, "3 elements do not fill its shape [-1,16]");
    }

    #[test]
    fn other_members_are_the_id_and_parameters() {
        let inputs = [metadata(DataType::Int32, &[1])];
        let object = serde_json::json!({
            "x": 7, "id": "r1", "temperature": 0.5, "parameters": { "stream": false }
        });
        let Value::Object(object) = object else { unreachable!() };
        let request = generate_request("m", None, &inputs, object).unwrap();
        assert_eq!((request.id.as_str(), request.inputs.len()), ("r1", 1));
        assert_eq!(request.parameters.keys().collect::<Vec<_>>(), ["stream", "temperature"]);
        let Value::Object(bad) = serde_json::json!({ "x": 7, "other": [1, 2] }) else { unreachable!() };
        let error = generate_request("m", None, &inputs, bad).unwrap_err();
        assert!(error.message().starts_with("model 'm': 'other' is not an input (the inputs are x)"), "{error}");
    }
}
