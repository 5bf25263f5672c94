//! The two Google Cloud Storage calls a repository copy needs, over its
//! JSON API: listing objects, and reading one (`alt=media`).

use std::io::Write;

use blocking_reqwest::blocking::{Client, Response};

use super::object_store::{ObjectStore, StoredObject};
use super::sigv4::{canonical_query, uri_encode};

/// Google's storage endpoint.
pub const GCS_ORIGIN: &str = "https://storage.googleapis.com";

/// A client of one bucket.
pub struct GcsClient<'a> {
    http: &'a Client,
    /// `https://storage.googleapis.com`, or an emulator's.
    origin: String,
    bucket: String,
    /// The OAuth access token; None for requests without one.
    token: Option<String>,
}

impl<'a> GcsClient<'a> {
    /// A client for `bucket` at `origin`, sending `token`.
    pub fn new(http: &'a Client, origin: String, bucket: String, token: Option<String>) -> Self {
        Self { http, origin, bucket, token }
    }

    /// A GET of `path` (after `/storage/v1/b/<bucket>/o`) with `query`.
    fn get(&self, path: &str, query: &[(&str, &str)], what: &str) -> Result<Response, String> {
        let url = format!(
            "{}/storage/v1/b/{}/o{path}?{}",
            self.origin.trim_end_matches('/'),
            uri_encode(&self.bucket, true),
            canonical_query(query)
        );
        let mut request = self.http.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().map_err(|error| format!("cannot reach {}: {error}", self.origin))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json.pointer("/error/message").and_then(|message| message.as_str()).map(str::to_string))
            .unwrap_or(body);
        Err(format!("{what}: Google Cloud Storage answered {status}: {}", message.trim()))
    }
}

impl ObjectStore for GcsClient<'_> {
    fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, String> {
        let what = format!("listing gs://{}", self.bucket);
        let mut objects = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut query = vec![("prefix", prefix), ("fields", "items(name,size,generation,etag),nextPageToken")];
            if let Some(token) = &page {
                query.push(("pageToken", token));
            }
            let body = self.get("", &query, &what)?.text().map_err(|error| format!("{what}: {error}"))?;
            let json: serde_json::Value =
                serde_json::from_str(&body).map_err(|error| format!("{what}: unreadable answer: {error}"))?;
            for item in json.get("items").and_then(|items| items.as_array()).into_iter().flatten() {
                let text = |name: &str| item.get(name).and_then(|value| value.as_str()).map(str::to_string);
                let Some(key) = text("name") else { continue };
                // The generation changes with every write of the object.
                let version = text("generation").or_else(|| text("etag")).unwrap_or_default();
                let size = text("size").and_then(|size| size.parse().ok()).unwrap_or(0);
                objects.push(StoredObject { key, version, size });
            }
            page = json.get("nextPageToken").and_then(|token| token.as_str()).map(str::to_string);
            if page.is_none() {
                return Ok(objects);
            }
        }
    }

    fn download(&self, key: &str, destination: &mut dyn Write) -> Result<u64, String> {
        let what = format!("gs://{}/{key}", self.bucket);
        let mut response = self.get(&format!("/{}", uri_encode(key, true)), &[("alt", "media")], &what)?;
        response.copy_to(destination).map_err(|error| format!("cannot download {what}: {error}"))
    }
}
