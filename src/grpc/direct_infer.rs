//! ModelInfer answered directly, past tonic's generic unary path.
//!
//! Under load the one frontend thread is what a batch waits for: after
//! ONNX Runtime has run a batch, the thread writes its answers and reads
//! the next requests while the instance idles. tonic's generic unary path
//! routes each call through its router, decodes the message through a
//! streaming decoder into a buffer of its own, and encodes the answer
//! through a body stream. For Triton's hot call, ModelInfer, this layer
//! does the same work in one step: it takes the message out of the request
//! body (without a copy when it arrives in one piece), runs the same
//! handler, and answers with one framed message and the `grpc-status`
//! trailer, the bytes tonic sends. W2 batched at c=32 over one connection
//! went from 52.7 to 62.7 k/s on average in an interleaved A/B
//! (BENCHMARKS.md, "Twenty-second run").
//!
//! The layer sits inside the server's own layers, so deadlines
//! (`grpc-timeout`), restricted protocols and trace timing apply as before.
//! Calls with a compressed message (`grpc-encoding`) go through tonic,
//! which decompresses them, and the layer is left out when inference
//! answers are to be compressed.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::{BoxFuture, Either};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use prost::Message;
use tonic::Status;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tower::{Layer, Service};

use super::InferenceService;
use crate::proto::inference::ModelInferRequest;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceService;

/// The path of the call this layer answers.
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// gRPC's message prefix: a compression flag and a big-endian length.
const PREFIX_LEN: usize = 5;

/// Puts [`DirectInfer`] around the services.
#[derive(Clone)]
pub struct DirectInferLayer {
    service: Arc<InferenceService>,
}

impl DirectInferLayer {
    /// A layer that answers ModelInfer with `service`.
    pub fn new(service: Arc<InferenceService>) -> Self {
        Self { service }
    }
}

impl<S> Layer<S> for DirectInferLayer {
    type Service = DirectInfer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DirectInfer { inner, service: Arc::clone(&self.service) }
    }
}

/// Answers uncompressed ModelInfer calls itself and passes every other call
/// to the services inside.
#[derive(Clone)]
pub struct DirectInfer<S> {
    inner: S,
    service: Arc<InferenceService>,
}

impl<S> Service<http::Request<Body>> for DirectInfer<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<http::Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let compressed = request.headers().get("grpc-encoding").is_some_and(|encoding| encoding != "identity");
        if request.uri().path() != MODEL_INFER || compressed {
            return Either::Left(self.inner.call(request));
        }
        let service = Arc::clone(&self.service);
        Either::Right(Box::pin(async move { Ok(answer(&service, request).await) }))
    }
}

/// Reads the call's message, runs the handler and frames its answer; a
/// failure is a trailers-only answer with its status, as from tonic.
async fn answer(service: &InferenceService, request: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let message = match read_message(body).await.and_then(decode) {
        Ok(message) => message,
        Err(status) => return status.into_http(),
    };
    let request = tonic::Request::from_parts(MetadataMap::from_headers(parts.headers), parts.extensions, message);
    match service.model_infer(request).await {
        Ok(response) => {
            // The extensions carry the trace that `trace_timing` stamps
            // when the answer goes out.
            let (_, message, extensions) = response.into_parts();
            let body = match FramedAnswer::new(&message) {
                Ok(body) => body,
                Err(status) => return status.into_http(),
            };
            let mut answer = http::Response::new(Body::new(body));
            answer.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
            *answer.extensions_mut() = extensions;
            answer
        }
        Err(status) => status.into_http(),
    }
}

/// The request body's bytes; `to_bytes` hands over the one frame that a
/// message usually arrives in without copying it.
async fn read_message(body: Body) -> Result<Bytes, Status> {
    Ok(body.collect().await?.to_bytes())
}

/// The one message of a unary call, with tonic's statuses for what does not
/// frame one.
fn decode(mut framed: Bytes) -> Result<ModelInferRequest, Status> {
    if framed.is_empty() {
        return Err(Status::internal("Missing request message."));
    }
    if framed.len() < PREFIX_LEN {
        return Err(Status::internal(format!(
            "the request ends inside the message prefix: {} of its {PREFIX_LEN} bytes",
            framed.len()
        )));
    }
    match framed.get_u8() {
        0 => {}
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ));
        }
        flag => return Err(Status::internal(format!("protocol error: invalid compression flag {flag}"))),
    }
    let length = framed.get_u32() as usize;
    if framed.len() != length {
        return Err(Status::internal(format!(
            "a unary call carries one message; the prefix announced {length} bytes and {} followed",
            framed.len()
        )));
    }
    ModelInferRequest::decode(framed).map_err(|error| Status::internal(error.to_string()))
}

/// An answer's body: one framed message, then the `grpc-status: 0` trailer.
struct FramedAnswer {
    message: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl FramedAnswer {
    /// The framed message; one of 4 GiB or more, which gRPC's prefix
    /// cannot announce, is refused as tonic refuses it.
    fn new(message: &impl Message) -> Result<Self, Status> {
        let length = message.encoded_len();
        let announced = u32::try_from(length).map_err(|_| {
            Status::resource_exhausted(format!("Cannot return body with more than 4GB of data but got {length} bytes"))
        })?;
        let mut framed = BytesMut::with_capacity(PREFIX_LEN + length);
        framed.put_u8(0);
        framed.put_u32(announced);
        message.encode(&mut framed).expect("the buffer was sized for the message");
        let mut trailers = http::HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        Ok(Self { message: Some(framed.freeze()), trailers: Some(trailers) })
    }
}

impl HttpBody for FramedAnswer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        Poll::Ready(self.trailers.take().map(|trailers| Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }

    /// Unknown, as for tonic's bodies: an exact size would make hyper send a
    /// `content-length` header, which gRPC answers do not carry.
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inference::ModelInferResponse;

    fn next_frame(body: &mut FramedAnswer) -> Option<Frame<Bytes>> {
        let waker = futures::task::noop_waker();
        match Pin::new(body).poll_frame(&mut Context::from_waker(&waker)) {
            Poll::Ready(frame) => frame.map(|frame| frame.unwrap_or_else(|never| match never {})),
            Poll::Pending => panic!("the answer's body is all in memory"),
        }
    }

    #[test]
    fn an_answer_is_one_framed_message_then_the_ok_status() {
        let message = ModelInferResponse { model_name: "simple".into(), id: "7".into(), ..Default::default() };
        let mut body = FramedAnswer::new(&message).unwrap();
        let data = next_frame(&mut body).unwrap().into_data().unwrap();
        assert_eq!(data[0], 0, "uncompressed");
        assert_eq!(u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize, data.len() - PREFIX_LEN);
        assert_eq!(ModelInferResponse::decode(&data[PREFIX_LEN..]).unwrap(), message);
        let trailers = next_frame(&mut body).unwrap().into_trailers().unwrap();
        assert_eq!(trailers.len(), 1);
        assert_eq!(trailers["grpc-status"], "0");
        assert!(body.is_end_stream());
        assert!(next_frame(&mut body).is_none());
    }

    #[test]
    fn a_request_decodes_from_its_one_framed_message() {
        let request = ModelInferRequest { model_name: "simple".into(), id: "3".into(), ..Default::default() };
        let encoded = request.encode_to_vec();
        let mut framed = vec![0];
        framed.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        framed.extend_from_slice(&encoded);
        assert_eq!(decode(Bytes::from(framed.clone())).unwrap(), request);
        framed[0] = 2;
        let status = decode(Bytes::from(framed)).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("invalid compression flag 2"), "{}", status.message());
    }
}
