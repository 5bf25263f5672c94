//! The cloud deployment prediction route (`POST /predict` by default): a
//! KServe v2 request, or the `{"instances": [...]}` form that REST users of
//! scikit-learn-style models post, answered with `{"predictions": [...]}`.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::future::try_join_all;
use serde_json::{Map, Value, json};

use super::body::{header_length, read_body};
use super::error::ApiError;
use super::infer::run_v2_request;
use super::infer_codec::decode_parameters;
use super::json_tensor::{decode_values, encode_values, flatten, nest, shape_of};
use super::{AppState, only_model};
use crate::error::{Error, Result};
use crate::inference::{InferenceRequest, InferenceResponse, parse_model_version};
use crate::tensor::{Tensor, format_shape};
use crate::trace::Activity;

/// Headers naming the model, as Oracle's model deployment sends them to a
/// Triton container.
const MODEL_NAME_HEADER: &str = "model_name";
const MODEL_VERSION_HEADER: &str = "model_version";

/// `POST /predict`. A KServe v2 request is traced as on the v2 infer
/// route; the instances form, which may run several requests, is not.
pub async fn predict(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (model, version) = choose_model(&state, &headers)?;
    let receiving = Instant::now();
    let body = read_body(&headers, body, state.settings.max_input_size).await?;
    let received = Instant::now();
    // Sampled once the form is known, so an untraced form takes no sample.
    let traced = || {
        let traceparent = super::infer::caller_span(&state.tracer, &headers);
        let trace = state.tracer.sample(&model, traceparent);
        if let Some(trace) = &trace {
            trace.stamp_at(Activity::HttpRecvStart, receiving);
            trace.stamp_at(Activity::HttpRecvEnd, received);
        }
        trace
    };
    if header_length(&headers)?.is_some() {
        return run_v2_request(&state, &model, version, &headers, body, traced()).await;
    }
    let parsed: Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("the request body is not JSON: {error}")))?;
    match &parsed {
        Value::Object(object) if object.contains_key("inputs") => {
            run_v2_request(&state, &model, version, &headers, body, traced()).await
        }
        Value::Object(object) if object.contains_key("instances") => {
            let predictions = predict_instances(&state, &model, version, object).await?;
            Ok(Json(json!({ "predictions": predictions })).into_response())
        }
        _ => Err(ApiError::bad_request(
            "expected a KServe v2 inference request (with \"inputs\") or {\"instances\": [...]}",
        )),
    }
}

/// The model named by the `model_name` / `model_version` headers, else by
/// `--predict-model`, else the only model in the repository.
fn choose_model(state: &AppState, headers: &HeaderMap) -> Result<(String, Option<i64>), ApiError> {
    let header = |name: &str| -> Result<Option<String>, ApiError> {
        headers
            .get(name)
            .map(|value| {
                value
                    .to_str()
                    .map(|text| text.trim().to_string())
                    .map_err(|_| ApiError::bad_request(format!("the {name} header is not text")))
            })
            .transpose()
    };
    let model = match header(MODEL_NAME_HEADER)?.filter(|name| !name.is_empty()) {
        Some(name) => name,
        None => match &state.settings.predict_model {
            Some(name) => name.clone(),
            None => only_model(state).map_err(|models| {
                ApiError::bad_request(format!(
                    "which model? Name it in the model_name header or start the server with --predict-model; the models are: {}",
                    models.join(", ")
                ))
            })?,
        },
    };
    let version = match header(MODEL_VERSION_HEADER)? {
        Some(version) => parse_model_version(&model, &version)?,
        None => None,
    };
    Ok((model, version))
}

/// Runs the instances form: each instance is one row of the model's single
/// input. A batching model gets the rows in batches of up to
/// max_batch_size; any other model gets one request per row.
async fn predict_instances(
    state: &AppState,
    model: &str,
    version: Option<i64>,
    body: &Map<String, Value>,
) -> Result<Vec<Value>> {
    let invalid = |message: String| Error::invalid_argument(format!("model '{model}': {message}"));
    let metadata = state.manager.model_metadata(model, version)?;
    let [input] = metadata.inputs.as_slice() else {
        let names: Vec<&str> = metadata.inputs.iter().map(|input| input.name.as_str()).collect();
        return Err(invalid(format!(
            "the instances form needs a model with one input, and this one has {}: {}; send a KServe v2 request with \"inputs\" instead",
            names.len(),
            names.join(", ")
        )));
    };
    let Some(Value::Array(instances)) = body.get("instances") else {
        return Err(invalid("\"instances\" must be a list of rows".to_string()));
    };
    if instances.is_empty() {
        return Ok(Vec::new());
    }
    let row_shape = shape_of(&instances[0]).map_err(|error| invalid(format!("instance 0: {error}")))?;
    for (index, instance) in instances.iter().enumerate().skip(1) {
        let shape = shape_of(instance).map_err(|error| invalid(format!("instance {index}: {error}")))?;
        if shape != row_shape {
            return Err(invalid(format!(
                "instance {index} has shape {}, but instance 0 has shape {}; every instance must have the same shape",
                format_shape(&shape),
                format_shape(&row_shape)
            )));
        }
    }
    let parameters =
        body.get("parameters").and_then(Value::as_object).cloned().map(decode_parameters).unwrap_or_default();
    let max_batch_size = usize::try_from(state.manager.model_config(model, version)?.max_batch_size).unwrap_or(0);
    let batch = max_batch_size.max(1);
    let requests = instances.chunks(batch).map(|rows| {
        let mut values = Vec::new();
        rows.iter().for_each(|row| flatten(row, &mut values));
        let mut shape = Vec::with_capacity(row_shape.len() + 1);
        if max_batch_size > 0 {
            shape.push(rows.len() as i64);
        }
        shape.extend_from_slice(&row_shape);
        let data = encode_values(input.datatype, &values).map_err(|error| invalid(format!("instances: {error}")))?;
        let request = InferenceRequest {
            model_name: model.to_string(),
            model_version: version,
            id: String::new(),
            parameters: parameters.clone(),
            inputs: vec![Tensor { name: input.name.clone(), datatype: input.datatype, shape, data }],
            shared_memory_inputs: Vec::new(),
            outputs: Vec::new(),
        };
        Ok((request, rows.len()))
    });
    let requests = requests.collect::<Result<Vec<_>>>()?;
    let responses = try_join_all(requests.into_iter().map(|(request, rows)| async move {
        state.manager.infer(request, None).await.map(|response| (response, rows))
    }))
    .await?;
    let mut predictions = Vec::with_capacity(instances.len());
    for (response, rows) in responses {
        predictions.extend(rows_of(model, response, rows, max_batch_size > 0)?);
    }
    Ok(predictions)
}

/// Splits a response into one prediction per row: the output's row, or an
/// object of every output's row when the model has several outputs.
fn rows_of(model: &str, response: InferenceResponse, rows: usize, batched: bool) -> Result<Vec<Value>> {
    let mut per_output = Vec::with_capacity(response.outputs.len());
    for output in &response.outputs {
        let values = decode_values(output)
            .map_err(|error| Error::invalid_argument(format!("model '{model}': output '{}': {error}", output.name)))?;
        let row_dims = if batched { output.shape.get(1..).unwrap_or(&[]) } else { &output.shape[..] };
        let per_row = values.len() / rows.max(1);
        let mut values = values.into_iter();
        let split: Vec<Value> = (0..rows).map(|_| nest(values.by_ref().take(per_row).collect(), row_dims)).collect();
        per_output.push((output.name.clone(), split));
    }
    if let [(_, only)] = per_output.as_slice() {
        return Ok(only.clone());
    }
    Ok((0..rows)
        .map(|row| Value::Object(per_output.iter().map(|(name, values)| (name.clone(), values[row].clone())).collect()))
        .collect())
}
