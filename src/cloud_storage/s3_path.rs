//! Where an `s3://` model repository is, written as Triton reads it:
//!
//! ```text
//! s3://bucket/path/to/repository                   Amazon S3 (the region's endpoint)
//! s3://host:port/bucket/path/to/repository         another S3 service, over http
//! s3://https://host:port/bucket/path/to/repository another S3 service, over https
//! ```
//!
//! Slashes repeated inside the path and at its ends do not matter.

use super::object_store::key_prefix;

/// The scheme Triton's path form names an endpoint with.
const S3_SCHEME: &str = "s3://";

/// An S3 service named in the path instead of Amazon's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEndpoint {
    /// Whether it is reached over https (`s3://https://host:port/...`).
    pub https: bool,
    /// `host:port`.
    pub authority: String,
}

impl CustomEndpoint {
    /// The endpoint as a URL origin (`http://host:port`).
    pub fn origin(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.authority)
    }
}

/// A parsed `s3://` repository path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Path {
    /// The service, when not Amazon S3.
    pub endpoint: Option<CustomEndpoint>,
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the repository inside the bucket, without a
    /// trailing slash; empty for the bucket's root.
    pub prefix: String,
}

/// Whether `path` names an S3 repository.
pub fn is_s3_path(path: &str) -> bool {
    path.starts_with(S3_SCHEME)
}

impl S3Path {
    /// Parses an `s3://` repository path.
    pub fn parse(path: &str) -> Result<Self, String> {
        let malformed = |why: &str| format!("malformed S3 model repository '{path}': {why}");
        let rest = path.strip_prefix(S3_SCHEME).ok_or_else(|| malformed("it does not start with s3://"))?;
        let (https, rest) = match (rest.strip_prefix("https://"), rest.strip_prefix("http://")) {
            (Some(rest), _) => (Some(true), rest),
            (None, Some(rest)) => (Some(false), rest),
            (None, None) => (None, rest),
        };
        let mut segments = rest.split('/').filter(|segment| !segment.is_empty());
        let first = segments.next().ok_or_else(|| malformed("no bucket is named"))?;
        // As in Triton, an endpoint is told from a bucket by its port.
        let endpoint = match first.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                Some(CustomEndpoint { https: https.unwrap_or(false), authority: first.to_string() })
            }
            _ if https.is_some() => return Err(malformed("an http:// or https:// endpoint needs a port (host:port)")),
            _ => None,
        };
        let bucket = match endpoint {
            Some(_) => segments.next().ok_or_else(|| malformed("no bucket follows the endpoint"))?,
            None => first,
        };
        if !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
            return Err(malformed(&format!("'{bucket}' is not a bucket name")));
        }
        let prefix = key_prefix(segments).ok_or_else(|| malformed("'.' and '..' are not folders of a bucket"))?;
        Ok(Self { endpoint, bucket: bucket.to_string(), prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(https: bool, authority: &str) -> Option<CustomEndpoint> {
        Some(CustomEndpoint { https, authority: authority.to_string() })
    }

    #[test]
    fn the_three_forms_triton_reads() {
        let amazon = S3Path::parse("s3://models-bucket/teams/vision/repository").unwrap();
        assert_eq!(
            amazon,
            S3Path { endpoint: None, bucket: "models-bucket".into(), prefix: "teams/vision/repository".into() }
        );
        let minio = S3Path::parse("s3://minio.local:9000/models/repository").unwrap();
        assert_eq!(minio.endpoint, endpoint(false, "minio.local:9000"));
        assert_eq!((minio.bucket.as_str(), minio.prefix.as_str()), ("models", "repository"));
        assert_eq!(minio.endpoint.unwrap().origin(), "http://minio.local:9000");
        let secure = S3Path::parse("s3://https://10.0.0.5:443/models").unwrap();
        assert_eq!(secure.endpoint, endpoint(true, "10.0.0.5:443"));
        assert_eq!((secure.bucket.as_str(), secure.prefix.as_str()), ("models", ""));
        assert_eq!(
            S3Path::parse("s3://http://127.0.0.1:5000/b/r").unwrap().endpoint,
            endpoint(false, "127.0.0.1:5000")
        );
    }

    #[test]
    fn extra_slashes_are_ignored() {
        let path = S3Path::parse("s3://bucket//a///b/").unwrap();
        assert_eq!((path.bucket.as_str(), path.prefix.as_str()), ("bucket", "a/b"));
        assert_eq!(S3Path::parse("s3://bucket").unwrap().prefix, "");
    }

    #[test]
    fn malformed_paths_say_what_is_wrong() {
        for (path, why) in [
            ("s3://", "no bucket is named"),
            ("s3://host:9000", "no bucket follows the endpoint"),
            ("s3://https://host/bucket", "needs a port"),
            ("s3://bucket/../etc", "'.' and '..'"),
            ("s3://bu cket/x", "is not a bucket name"),
            ("gs://bucket", "does not start with s3://"),
        ] {
            let error = S3Path::parse(path).unwrap_err();
            assert!(error.contains(path) && error.contains(why), "{path}: {error}");
        }
        assert!(is_s3_path("s3://b") && !is_s3_path("/models"));
    }
}
