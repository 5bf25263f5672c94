//! The two S3 calls a repository copy needs, ListObjectsV2 and GetObject,
//! over path-style URLs (`<endpoint>/<bucket>/<key>`, as Triton addresses
//! S3) and signed with SigV4. Blocking: call it off the async runtime.

use std::io::Write;
use std::sync::Mutex;

use blocking_reqwest::blocking::{Client, Response};
use blocking_reqwest::{StatusCode, Url};

use super::aws_credentials::AwsCredentials;
use super::object_store::{ObjectStore, StoredObject};
use super::s3_path::S3Path;
use super::sigv4::{self, UnsignedRequest};
use super::xml_text::{element, elements};
use crate::utc_time::UtcTime;

/// How many keys one ListObjectsV2 answer holds at most (S3's maximum).
const KEYS_PER_PAGE: &str = "1000";

/// A client of one bucket.
pub struct S3Client<'a> {
    http: &'a Client,
    /// The endpoint when the path named one; else Amazon's for the region.
    custom_origin: Option<String>,
    bucket: String,
    /// None: requests go unsigned.
    credentials: Option<AwsCredentials>,
    /// The region requests are signed for: the configured one until Amazon
    /// says the bucket lives in another (kept by the caller across clients).
    region: &'a Mutex<String>,
}

impl<'a> S3Client<'a> {
    /// A client for the bucket of `path` in `region`, signing with
    /// `credentials`.
    pub fn new(
        http: &'a Client,
        path: &S3Path,
        credentials: Option<AwsCredentials>,
        region: &'a Mutex<String>,
    ) -> Self {
        Self {
            http,
            custom_origin: path.endpoint.as_ref().map(|endpoint| endpoint.origin()),
            bucket: path.bucket.clone(),
            credentials,
            region,
        }
    }

    fn region(&self) -> String {
        self.region.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn origin(&self) -> String {
        self.custom_origin.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region()))
    }

    /// A signed GET of `key` (the bucket itself when empty), following
    /// Amazon once to the bucket's own region.
    fn get(&self, key: &str, query: &[(&str, &str)]) -> Result<Response, String> {
        let response = self.send_get(key, query)?;
        let moved_to = response
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|region| region.to_str().ok())
            .filter(|region| *region != self.region())
            .map(str::to_string);
        let wrong_region = matches!(response.status(), StatusCode::MOVED_PERMANENTLY | StatusCode::BAD_REQUEST);
        let response = match (moved_to, wrong_region && self.custom_origin.is_none()) {
            (Some(region), true) => {
                tracing::info!(bucket = %self.bucket, %region, "the S3 bucket lives in another region; asking there");
                *self.region.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = region;
                self.send_get(key, query)?
            }
            _ => response,
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().unwrap_or_default();
        let code = element(&body, "Code").unwrap_or_default();
        let message = element(&body, "Message").unwrap_or_default();
        let what = if key.is_empty() {
            format!("listing s3://{}", self.bucket)
        } else {
            format!("s3://{}/{key}", self.bucket)
        };
        Err(format!("{what}: S3 answered {} {code}: {message}", status.as_u16())
            .trim_end_matches([' ', ':'])
            .to_string())
    }

    fn send_get(&self, key: &str, query: &[(&str, &str)]) -> Result<Response, String> {
        let bucket = sigv4::uri_encode(&self.bucket, true);
        let path = match key.is_empty() {
            true => format!("/{bucket}"),
            false => format!("/{bucket}/{}", sigv4::uri_encode(key, false)),
        };
        let query_string = sigv4::canonical_query(query);
        let address = match query_string.is_empty() {
            true => format!("{}{path}", self.origin()),
            false => format!("{}{path}?{query_string}", self.origin()),
        };
        let url = Url::parse(&address).map_err(|error| format!("cannot address S3 at '{address}': {error}"))?;
        let mut request = self.http.get(url.clone());
        if let Some(credentials) = &self.credentials {
            // The Host header as the client sends it: no port when it is
            // the scheme's default.
            let host = match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_string(),
                (None, _) => return Err(format!("'{address}' names no host")),
            };
            let unsigned = UnsignedRequest { method: "GET", host: &host, path: url.path(), query, headers: &[] };
            for (name, value) in sigv4::sign(&unsigned, credentials, &self.region(), UtcTime::now()) {
                request = request.header(name, value);
            }
        }
        request.send().map_err(|error| format!("cannot reach S3 at {}: {error}", self.origin()))
    }
}

impl ObjectStore for S3Client<'_> {
    fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, String> {
        let mut objects = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("max-keys", KEYS_PER_PAGE), ("prefix", prefix)];
            if let Some(token) = &continuation {
                query.push(("continuation-token", token));
            }
            let body = self
                .get("", &query)?
                .text()
                .map_err(|error| format!("cannot read the listing of s3 bucket '{}': {error}", self.bucket))?;
            for contents in elements(&body, "Contents") {
                let (Some(key), Some(etag)) = (element(contents, "Key"), element(contents, "ETag")) else {
                    continue;
                };
                let size = element(contents, "Size").and_then(|size| size.parse().ok()).unwrap_or(0);
                objects.push(StoredObject { key, version: etag, size });
            }
            continuation = match element(&body, "IsTruncated").as_deref() {
                Some("true") => element(&body, "NextContinuationToken"),
                _ => None,
            };
            if continuation.is_none() {
                return Ok(objects);
            }
        }
    }

    fn download(&self, key: &str, destination: &mut dyn Write) -> Result<u64, String> {
        let mut response = self.get(key, &[])?;
        response.copy_to(destination).map_err(|error| format!("cannot download s3://{}/{key}: {error}", self.bucket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>models</Name><Prefix>repo/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>repo/simple/config.pbtxt</Key><LastModified>2026-11-24T09:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>412</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>repo/a&amp;b/1/model.onnx</Key><ETag>&quot;e1&quot;</ETag><Size>1048576</Size></Contents>
<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>"#;

    #[test]
    fn a_listing_reads_its_objects_and_next_page() {
        let objects: Vec<(String, String, u64)> = elements(LISTING, "Contents")
            .into_iter()
            .map(|contents| {
                let size = element(contents, "Size").unwrap().parse().unwrap();
                (element(contents, "Key").unwrap(), element(contents, "ETag").unwrap(), size)
            })
            .collect();
        assert_eq!(
            objects,
            [
                ("repo/simple/config.pbtxt".into(), "\"9b2cf535f27731c974343645a3985328\"".into(), 412),
                ("repo/a&b/1/model.onnx".into(), "\"e1\"".into(), 1_048_576)
            ]
        );
        assert_eq!(element(LISTING, "IsTruncated").as_deref(), Some("true"));
        assert_eq!(
            element(LISTING, "NextContinuationToken").as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
    }
}
