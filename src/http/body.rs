//! Reading request bodies within the size limit (decompressing gzip and
//! deflate bodies, as tritonclient sends them), and writing inference
//! responses whose binary outputs follow the JSON without being copied.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body::{Frame, SizeHint};

use super::error::ApiError;
use super::infer_codec::{EncodedResponse, HEADER_LENGTH};

/// How a request body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentEncoding {
    Identity,
    Gzip,
    /// HTTP's "deflate" is the zlib format.
    Deflate,
}

fn content_encoding(headers: &HeaderMap) -> Result<ContentEncoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(ContentEncoding::Identity);
    };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(ContentEncoding::Identity),
        "gzip" | "x-gzip" => Ok(ContentEncoding::Gzip),
        "deflate" => Ok(ContentEncoding::Deflate),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {value:?} is not supported; send gzip, deflate or identity"),
        )),
    }
}

/// The bound behind a 413, as its message names it: the flag, for JSON, raw
/// and decompressed bodies ...
const INPUT_SIZE_FLAG: &str = "--http-max-input-size";
/// ... or [`BINARY_REQUEST_LIMIT`], for requests with binary tensor data.
const BINARY_BOUND: &str = "the most a request with binary tensor data may carry";

/// 413 for a body over `limit` bytes, naming the `bound` that set it.
fn too_large(limit: usize, bound: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the limit of {limit} bytes ({bound})"),
    )
}

/// The most an uncompressed request with binary tensor data may carry: its
/// binary part does not count against `--http-max-input-size` (as in
/// Triton), and 2 GiB is the most a gRPC message may carry too.
const BINARY_REQUEST_LIMIT: usize = i32::MAX as usize;

/// Reads a whole request body, decompressing it as its Content-Encoding
/// says. As in Triton, `limit` (`--http-max-input-size`) bounds the JSON
/// (with any data in it), a raw binary body and a decompressed body; the
/// binary tensor data after a JSON header is bounded only by
/// [`BINARY_REQUEST_LIMIT`]. Too much is 413.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let encoding = content_encoding(headers)?;
    let (raw_limit, bound) = match (encoding, header_length(headers)?) {
        (ContentEncoding::Identity, Some(json_length)) if json_length > 0 => {
            if json_length > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request's JSON of {json_length} bytes is larger than the limit of {limit} bytes \
                         ({INPUT_SIZE_FLAG})"
                    ),
                ));
            }
            if limit > BINARY_REQUEST_LIMIT { (limit, INPUT_SIZE_FLAG) } else { (BINARY_REQUEST_LIMIT, BINARY_BOUND) }
        }
        _ => (limit, INPUT_SIZE_FLAG),
    };
    let raw = read_raw_body(headers, body, raw_limit, bound).await?;
    if encoding == ContentEncoding::Identity {
        return Ok(raw);
    }
    // Inflating many megabytes is CPU work; keep it off the async threads.
    tokio::task::spawn_blocking(move || inflate(encoding, &raw, limit))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decompression failed: {error}")))?
}

fn inflate(encoding: ContentEncoding, compressed: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let (name, reader): (&str, Box<dyn Read + '_>) = match encoding {
        ContentEncoding::Gzip => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(compressed))),
        ContentEncoding::Deflate => ("deflate", Box::new(flate2::read::ZlibDecoder::new(compressed))),
        ContentEncoding::Identity => return Ok(Bytes::copy_from_slice(compressed)),
    };
    let mut inflated = Vec::new();
    // One byte past the limit is enough to know the body is too large,
    // without inflating a decompression bomb any further.
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|error| ApiError::bad_request(format!("the {name} request body cannot be decompressed: {error}")))?;
    if inflated.len() > limit {
        return Err(too_large(limit, INPUT_SIZE_FLAG));
    }
    Ok(Bytes::from(inflated))
}

async fn read_raw_body(headers: &HeaderMap, body: Body, limit: usize, bound: &str) -> Result<Bytes, ApiError> {
    let too_large = || too_large(limit, bound);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut chunks = Vec::new();
    let mut total = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ApiError::bad_request(format!("cannot read the request body: {error}")))?;
        total += chunk.len();
        if total > limit {
            return Err(too_large());
        }
        chunks.push(chunk);
    }
    // A body that arrived in one piece is kept as it is; tensors sliced
    // from it then reach the backend without a copy.
    if chunks.len() == 1 {
        return Ok(chunks.remove(0));
    }
    let mut buffer = BytesMut::with_capacity(total);
    chunks.iter().for_each(|chunk| buffer.extend_from_slice(chunk));
    Ok(buffer.freeze())
}

/// The `Inference-Header-Content-Length` of a request, if it has one.
pub fn header_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    headers
        .get(HEADER_LENGTH)
        .map(|value| {
            value.to_str().ok().and_then(|text| text.trim().parse::<usize>().ok()).ok_or_else(|| {
                ApiError::bad_request(format!("Inference-Header-Content-Length must be a byte count, not {value:?}"))
            })
        })
        .transpose()
}

/// The HTTP response for an encoded inference response: plain JSON, or JSON
/// followed by binary outputs with `Inference-Header-Content-Length`.
pub fn infer_response(encoded: EncodedResponse) -> Response {
    if encoded.binary.is_empty() {
        return ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], encoded.json).into_response();
    }
    let json_length = encoded.json.len();
    let mut chunks = VecDeque::with_capacity(encoded.binary.len() + 1);
    chunks.push_back(Bytes::from(encoded.json));
    chunks.extend(encoded.binary.into_iter().filter(|chunk| !chunk.is_empty()));
    let mut response = Body::new(ChunkedBody::new(chunks)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(HEADER_LENGTH, HeaderValue::from(json_length));
    response
}

/// A body of several buffers sent one after another, with its exact length
/// known so the response carries a Content-Length.
struct ChunkedBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkedBody {
    fn new(chunks: VecDeque<Bytes>) -> Self {
        let remaining = chunks.iter().map(|chunk| chunk.len() as u64).sum();
        Self { chunks, remaining }
    }
}

impl http_body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = self.chunks.pop_front();
        if let Some(chunk) = &chunk {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(chunk.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binary_responses_carry_both_lengths() {
        let response = infer_response(EncodedResponse {
            json: b"{\"outputs\":[]}".to_vec(),
            binary: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")],
        });
        assert_eq!(response.headers()[HEADER_LENGTH], "14");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/octet-stream");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(&body[..], b"{\"outputs\":[]}abcde");
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let error = read_body(&HeaderMap::new(), Body::from(vec![0u8; 11]), 10).await.unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        let body = read_body(&HeaderMap::new(), Body::from(vec![1u8; 10]), 10).await.unwrap();
        assert_eq!(body.len(), 10);
    }

    #[tokio::test]
    async fn binary_tensor_data_does_not_count_against_the_limit() {
        // As in Triton, the limit bounds the JSON, not the binary data after it.
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LENGTH, HeaderValue::from_static("10"));
        let body = read_body(&headers, Body::from(vec![1u8; 50]), 10).await.unwrap();
        assert_eq!(body.len(), 50);
        headers.insert(HEADER_LENGTH, HeaderValue::from_static("11"));
        let error = read_body(&headers, Body::from(vec![1u8; 50]), 10).await.unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        // A raw binary body (header length 0) is all data, and bounded.
        headers.insert(HEADER_LENGTH, HeaderValue::from_static("0"));
        let error = read_body(&headers, Body::from(vec![1u8; 11]), 10).await.unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn compressed_bodies_are_inflated_within_the_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&[7u8; 100]).unwrap();
        let compressed = encoder.finish().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("deflate"));
        let body = read_body(&headers, Body::from(compressed.clone()), 100).await.unwrap();
        assert_eq!(&body[..], &[7u8; 100][..]);
        let error = read_body(&headers, Body::from(compressed), 99).await.unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        let error = read_body(&headers, Body::from(vec![1, 2, 3]), 100).await.unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        let error = read_body(&headers, Body::from(vec![1, 2, 3]), 100).await.unwrap_err();
        assert_eq!(error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn header_length_must_be_a_number() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_length(&headers).unwrap(), None);
        headers.insert(HEADER_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(header_length(&headers).unwrap(), Some(12));
        headers.insert(HEADER_LENGTH, HeaderValue::from_static("twelve"));
        assert_eq!(header_length(&headers).unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
