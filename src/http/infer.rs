//! `POST /v2/models/{model}[/versions/{version}]/infer`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::body::{header_length, infer_response, read_body};
use super::error::ApiError;
use super::infer_codec::{OutputEncoding, decode_request, encode_response, raw_binary_request, split_body};
use super::{AppState, ModelPath};
use crate::error::Error;
use crate::trace::{Activity, RequestTrace, TRACEPARENT, TracedBody, Tracer};

/// Runs one inference from a KServe v2 request body.
pub async fn infer(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive_and_run(&state, &path.model, path.version()?, &headers, body).await
}

/// Samples the request's trace, reads its body and runs it as a v2
/// request; shared with SageMaker's `/invocations`.
pub async fn receive_and_run(
    state: &AppState,
    model: &str,
    version: Option<i64>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let trace = sample_trace(state, model, headers);
    let body = read_body(headers, body, state.settings.max_input_size).await?;
    if let Some(trace) = &trace {
        trace.stamp(Activity::HttpRecvEnd);
    }
    run_v2_request(state, model, version, headers, body, trace).await
}

/// The request's trace, when it is sampled (or names its caller's span),
/// with its arrival stamped; shared with the generate routes.
pub fn sample_trace(state: &AppState, model: &str, headers: &HeaderMap) -> Option<Arc<RequestTrace>> {
    let traceparent = caller_span(&state.tracer, headers);
    let trace = state.tracer.sample(model, traceparent);
    if let Some(trace) = &trace {
        trace.stamp(Activity::HttpRecvStart);
    }
    trace
}

/// The caller's span a request names in its `traceparent` header, looked
/// up only where the tracer follows callers (mode `opentelemetry`).
pub fn caller_span<'a>(tracer: &Tracer, headers: &'a HeaderMap) -> Option<&'a str> {
    match tracer.follows_callers() {
        true => headers.get(TRACEPARENT).and_then(|value| value.to_str().ok()),
        false => None,
    }
}

/// Decodes a v2 request body (JSON, JSON plus binary data, or raw binary),
/// runs it and encodes the response; shared with the predict route. A
/// traced request's response stamps the send moments as it goes out.
pub async fn run_v2_request(
    state: &AppState,
    model: &str,
    version: Option<i64>,
    headers: &HeaderMap,
    body: bytes::Bytes,
    trace: Option<Arc<RequestTrace>>,
) -> Result<Response, ApiError> {
    let (request, encoding) = match header_length(headers)? {
        Some(0) => {
            let metadata = state.manager.model_metadata(model, version)?;
            let [input] = metadata.inputs.as_slice() else {
                return Err(Error::invalid_argument(format!(
                    "model '{model}': a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input, and this one has {}",
                    metadata.inputs.len()
                ))
                .into());
            };
            let batching = state.manager.model_config(model, version)?.max_batch_size > 0;
            (raw_binary_request(model, version, input, batching, body)?, OutputEncoding::all_binary())
        }
        length => {
            let (json, binary) = split_body(body, length)?;
            decode_request(model, version, &json, binary)?
        }
    };
    let response = state.manager.infer(request, trace.clone()).await?;
    Ok(traced(infer_response(encode_response(response, &encoding)?), trace))
}

/// A traced request's response, which stamps the send moments as it goes
/// out; shared with the generate routes.
pub fn traced(response: Response, trace: Option<Arc<RequestTrace>>) -> Response {
    match trace {
        Some(trace) => {
            response.map(|body| Body::new(TracedBody::new(body, trace, Activity::HttpSendStart, Activity::HttpSendEnd)))
        }
        None => response,
    }
}
