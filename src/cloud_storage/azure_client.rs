//! The two Azure Blob Storage calls a repository copy needs, List Blobs and
//! Get Blob, authorized with the account's shared key (the Shared Key
//! scheme, signed with ring's HMAC-SHA256) or a bearer token.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use blocking_reqwest::Url;
use blocking_reqwest::blocking::{Client, Response};
use ring::hmac;

use super::object_store::{ObjectStore, StoredObject};
use super::sigv4::{canonical_query, uri_encode};
use super::xml_text::{element, elements};
use crate::utc_time::{http_date, unix_seconds};

/// The Blob service version asked for (bearer tokens need 2017-11-09 or later).
const SERVICE_VERSION: &str = "2021-08-06";

/// How a request is authorized.
pub enum BlobAuthorization {
    /// Signed with the account's key.
    SharedKey(Vec<u8>),
    /// A bearer token.
    Bearer(String),
    /// Nothing (a public container).
    Anonymous,
}

/// A client of one container.
pub struct AzureClient<'a> {
    http: &'a Client,
    /// The account's blob endpoint.
    endpoint: String,
    account: String,
    container: String,
    authorization: BlobAuthorization,
}

impl<'a> AzureClient<'a> {
    /// A client of `container` of `account` at `endpoint`.
    pub fn new(
        http: &'a Client,
        endpoint: String,
        account: String,
        container: String,
        authorization: BlobAuthorization,
    ) -> Self {
        Self { http, endpoint, account, container, authorization }
    }

    /// An authorized GET of `blob` (the container itself when empty).
    fn get(&self, blob: &str, query: &[(&str, &str)], what: &str) -> Result<Response, String> {
        let mut address = format!("{}/{}", self.endpoint, uri_encode(&self.container, true));
        if !blob.is_empty() {
            address = format!("{address}/{}", uri_encode(blob, false));
        }
        if !query.is_empty() {
            address = format!("{address}?{}", canonical_query(query));
        }
        let url = Url::parse(&address).map_err(|error| format!("cannot address '{address}': {error}"))?;
        let date = http_date(unix_seconds());
        let mut request = self.http.get(url.clone()).header("x-ms-date", &date).header("x-ms-version", SERVICE_VERSION);
        match &self.authorization {
            BlobAuthorization::SharedKey(key) => {
                let signature = shared_key_signature(key, &self.account, url.path(), query, &date);
                request = request.header("authorization", format!("SharedKey {}:{signature}", self.account));
            }
            BlobAuthorization::Bearer(token) => request = request.bearer_auth(token),
            BlobAuthorization::Anonymous => {}
        }
        let response = request.send().map_err(|error| format!("cannot reach {}: {error}", self.endpoint))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().unwrap_or_default();
        let code = element(&body, "Code").unwrap_or_default();
        let message = element(&body, "Message").unwrap_or_default();
        let message = message.lines().next().unwrap_or_default();
        Err(format!("{what}: Azure Storage answered {status} {code}: {message}")
            .trim_end_matches([' ', ':'])
            .to_string())
    }
}

/// The Shared Key signature of a GET without a body: its string to sign is
/// the verb, eleven empty standard headers, the `x-ms-` headers and the
/// canonicalized resource (`/<account><path>`, then each query parameter
/// as `\n<name>:<value>`, sorted).
fn shared_key_signature(key: &[u8], account: &str, path: &str, query: &[(&str, &str)], date: &str) -> String {
    let mut parameters: Vec<(String, &str)> =
        query.iter().map(|(name, value)| (name.to_ascii_lowercase(), *value)).collect();
    parameters.sort();
    let resource: String = parameters.iter().map(|(name, value)| format!("\n{name}:{value}")).collect();
    let string_to_sign =
        format!("GET{}x-ms-date:{date}\nx-ms-version:{SERVICE_VERSION}\n/{account}{path}{resource}", "\n".repeat(12));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), string_to_sign.as_bytes());
    STANDARD.encode(tag.as_ref())
}

impl ObjectStore for AzureClient<'_> {
    fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, String> {
        let what = format!("listing container '{}' of account '{}'", self.container, self.account);
        let mut objects = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![("comp", "list"), ("prefix", prefix), ("restype", "container")];
            if let Some(marker) = &marker {
                query.push(("marker", marker));
            }
            let body = self.get("", &query, &what)?.text().map_err(|error| format!("{what}: {error}"))?;
            for blob in elements(&body, "Blob") {
                let Some(key) = element(blob, "Name") else { continue };
                let version = element(blob, "Etag").unwrap_or_default();
                let size = element(blob, "Content-Length").and_then(|size| size.parse().ok()).unwrap_or(0);
                objects.push(StoredObject { key, version, size });
            }
            marker = element(&body, "NextMarker").filter(|marker| !marker.is_empty());
            if marker.is_none() {
                return Ok(objects);
            }
        }
    }

    fn download(&self, key: &str, destination: &mut dyn Write) -> Result<u64, String> {
        let what = format!("blob '{key}' of container '{}'", self.container);
        let mut response = self.get(key, &[], &what)?;
        response.copy_to(destination).map_err(|error| format!("cannot download {what}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_to_sign_follows_the_shared_key_scheme() {
        // Recomputed here from the scheme's definition, so that a change of
        // the signature's layout is seen.
        let date = "Mon, 23 Nov 2026 20:05:41 GMT";
        let expected = "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Mon, 23 Nov 2026 20:05:41 GMT\nx-ms-version:2021-08-06\n\
                        /devstoreaccount1/devstoreaccount1/models\ncomp:list\nprefix:team/repository/\nrestype:container";
        let key = b"key";
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), expected.as_bytes());
        let query = [("restype", "container"), ("comp", "list"), ("prefix", "team/repository/")];
        assert_eq!(
            shared_key_signature(key, "devstoreaccount1", "/devstoreaccount1/models", &query, date),
            STANDARD.encode(tag.as_ref())
        );
    }
}
