//! Triton's `--grpc-infer-response-compression-level`: inference answers
//! compressed with an algorithm the client accepts, chosen by level as
//! gRPC's own servers choose it (gzip for `low`, deflate for `medium` and
//! `high`); other calls' answers stay uncompressed, as in Triton, which
//! sets the level on its inference calls only.

use tonic::body::Body;
use tonic::codec::CompressionEncoding;

/// The header in which a client lists the encodings it accepts.
const ACCEPT_ENCODING: &str = "grpc-accept-encoding";

/// The methods whose answers are compressed.
const INFERENCE_PATHS: [&str; 2] =
    ["/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelStreamInfer"];

/// A compression level, by Triton's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseCompression {
    /// Answers go uncompressed (the default).
    #[default]
    None,
    /// gzip.
    Low,
    /// deflate where the client accepts it, else gzip.
    Medium,
    /// As `Medium`: gRPC ranks deflate as its strongest algorithm.
    High,
}

impl ResponseCompression {
    /// The level named `name`, in any case, as Triton reads the flag.
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            _ => Err(format!("'{name}' is not a compression level: use none, low, medium or high")),
        }
    }

    /// The encodings answers may be sent in. Where a client accepts more
    /// than one of them, tonic takes the first in the client's list; gRPC's
    /// clients list deflate before gzip.
    pub fn encodings(self) -> &'static [CompressionEncoding] {
        match self {
            Self::None => &[],
            Self::Low => &[CompressionEncoding::Gzip],
            Self::Medium | Self::High => &[CompressionEncoding::Deflate, CompressionEncoding::Gzip],
        }
    }
}

/// Keeps a call other than inference from having its answer compressed,
/// by hiding the encodings its client accepts, when answers are
/// compressed at all.
pub fn only_inference_compressed(
    compression: ResponseCompression,
) -> impl Fn(http::Request<Body>) -> http::Request<Body> + Clone {
    move |mut request| {
        if compression != ResponseCompression::None && !INFERENCE_PATHS.contains(&request.uri().path()) {
            request.headers_mut().remove(ACCEPT_ENCODING);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_read_by_triton_names() {
        assert_eq!(ResponseCompression::from_name("HIGH"), Ok(ResponseCompression::High));
        assert_eq!(ResponseCompression::from_name("low").unwrap().encodings(), [CompressionEncoding::Gzip]);
        assert!(ResponseCompression::from_name("none").unwrap().encodings().is_empty());
        assert!(ResponseCompression::from_name("max").unwrap_err().contains("'max'"));
    }

    #[test]
    fn only_inference_answers_keep_the_accepted_encodings() {
        let request = |path: &str| {
            http::Request::builder()
                .uri(format!("http://localhost{path}"))
                .header(ACCEPT_ENCODING, "identity,deflate,gzip")
                .body(Body::empty())
                .unwrap()
        };
        let filter = only_inference_compressed(ResponseCompression::Low);
        let infer = filter(request("/inference.GRPCInferenceService/ModelInfer"));
        assert_eq!(infer.headers()[ACCEPT_ENCODING], "identity,deflate,gzip");
        let metadata = filter(request("/inference.GRPCInferenceService/ModelMetadata"));
        assert!(!metadata.headers().contains_key(ACCEPT_ENCODING));
        let untouched = only_inference_compressed(ResponseCompression::None);
        assert!(
            untouched(request("/inference.GRPCInferenceService/ModelMetadata")).headers().contains_key(ACCEPT_ENCODING)
        );
    }
}
