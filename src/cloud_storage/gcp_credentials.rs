//! The OAuth access token Google Cloud Storage requests carry, found where
//! Triton's Google client looks: the credential file that
//! `GOOGLE_APPLICATION_CREDENTIALS` names (a service account key, whose
//! signed JWT is exchanged for a token, or an authorized user's refresh
//! token), else the attached service account of the VM, GKE node or Vertex
//! AI container (the metadata server); with neither, requests go without a
//! token, which public buckets allow. Tokens are kept until five minutes
//! before they expire.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use blocking_reqwest::blocking::Client;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

use super::expiring::Expiring;
use super::oauth_token::token_answer;
use super::sigv4::canonical_query;
use crate::utc_time::unix_seconds;

/// Google's token endpoint, when a credential file names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The metadata server, when `GCE_METADATA_HOST` names no other.
const METADATA_HOST: &str = "metadata.google.internal";

/// Read access to buckets is all a repository copy needs.
const READ_ONLY_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";

/// How long the metadata server may take to answer: off Google Cloud its
/// name leads nowhere.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

/// Where tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcpCredentialSource {
    /// A service account key: a JWT signed with it, exchanged at `token_uri`.
    ServiceAccount {
        /// The account (`...@....iam.gserviceaccount.com`).
        client_email: String,
        /// Its RSA private key, PKCS #8 PEM.
        private_key: String,
        /// Where the JWT is exchanged.
        token_uri: String,
    },
    /// An authorized user's refresh token (`gcloud auth
    /// application-default login`).
    AuthorizedUser {
        /// The OAuth client.
        client_id: String,
        /// Its secret.
        client_secret: String,
        /// The user's refresh token.
        refresh_token: String,
        /// Where it is exchanged.
        token_uri: String,
    },
    /// The metadata server's default service account, at this origin;
    /// when it does not answer, requests go without a token.
    Metadata {
        /// `http://metadata.google.internal`, or `GCE_METADATA_HOST`.
        origin: String,
    },
}

impl GcpCredentialSource {
    /// Chooses the source with `var` reading the environment.
    pub fn from_environment(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| var(name).map(|value| value.trim().to_string()).filter(|value| !value.is_empty());
        let Some(file) = var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from) else {
            let host = var("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.to_string());
            return Ok(Self::Metadata { origin: format!("http://{host}") });
        };
        let unreadable = |why: String| format!("GOOGLE_APPLICATION_CREDENTIALS={}: {why}", file.display());
        let text = std::fs::read_to_string(&file).map_err(|error| unreadable(error.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|error| unreadable(error.to_string()))?;
        let field = |name: &str| {
            json.get(name)
                .and_then(|value| value.as_str())
                .map(str::to_string)
                .ok_or_else(|| unreadable(format!("no \"{name}\"")))
        };
        let token_uri = field("token_uri").unwrap_or_else(|_| DEFAULT_TOKEN_URI.to_string());
        match field("type")?.as_str() {
            "service_account" => Ok(Self::ServiceAccount {
                client_email: field("client_email")?,
                private_key: field("private_key")?,
                token_uri,
            }),
            "authorized_user" => Ok(Self::AuthorizedUser {
                client_id: field("client_id")?,
                client_secret: field("client_secret")?,
                refresh_token: field("refresh_token")?,
                token_uri,
            }),
            other => Err(unreadable(format!("credentials of type \"{other}\" are not supported"))),
        }
    }

    /// Where tokens come from, for the log.
    pub fn describe(&self) -> String {
        match self {
            Self::ServiceAccount { client_email, .. } => format!("the service account {client_email}"),
            Self::AuthorizedUser { client_id, .. } => format!("an authorized user of client {client_id}"),
            Self::Metadata { origin } => format!("the attached service account (metadata at {origin}), else none"),
        }
    }
}

/// What was fetched last.
#[derive(Debug, Default)]
struct Fetched {
    token: Option<Expiring<String>>,
    /// The metadata server did not answer: no token, without asking again.
    no_attached_account: bool,
}

/// The tokens of one repository's source.
#[derive(Debug)]
pub struct GcpCredentialCache {
    source: GcpCredentialSource,
    fetched: Mutex<Fetched>,
}

impl GcpCredentialCache {
    /// A cache that fetches nothing until asked.
    pub fn new(source: GcpCredentialSource) -> Self {
        Self { source, fetched: Mutex::new(Fetched::default()) }
    }

    /// Where tokens come from, for the log.
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// The token to send now; None for requests without one.
    pub fn access_token(&self, http: &Client) -> Result<Option<String>, String> {
        let now = unix_seconds();
        let mut fetched = self.fetched.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(token) = fetched.token.as_ref().filter(|token| token.fresh_at(now)) {
            return Ok(Some(token.value.clone()));
        }
        let token = match &self.source {
            GcpCredentialSource::ServiceAccount { client_email, private_key, token_uri } => {
                let assertion = signed_jwt(client_email, private_key, token_uri, now)?;
                let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)];
                exchange(http, token_uri, &form, now)
                    .map_err(|why| format!("cannot get a token for service account {client_email}: {why}"))?
            }
            GcpCredentialSource::AuthorizedUser { client_id, client_secret, refresh_token, token_uri } => {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.as_str()),
                    ("refresh_token", refresh_token.as_str()),
                ];
                exchange(http, token_uri, &form, now)
                    .map_err(|why| format!("cannot refresh the authorized user's token: {why}"))?
            }
            GcpCredentialSource::Metadata { .. } if fetched.no_attached_account => return Ok(None),
            GcpCredentialSource::Metadata { origin } => {
                let request = http
                    .get(format!("{origin}/computeMetadata/v1/instance/service-accounts/default/token"))
                    .header("metadata-flavor", "Google")
                    .timeout(METADATA_TIMEOUT);
                match token_answer(request, now) {
                    Ok(token) => token,
                    // Off Google Cloud, or no account attached.
                    Err(reason) if fetched.token.is_none() => {
                        tracing::info!("no attached Google service account ({reason}): requests go without a token");
                        fetched.no_attached_account = true;
                        return Ok(None);
                    }
                    Err(reason) => return Err(format!("cannot renew the attached service account's token: {reason}")),
                }
            }
        };
        fetched.token = Some(token.clone());
        Ok(Some(token.value))
    }
}

/// A JWT for Google's token endpoint, signed RS256 with the account's key.
fn signed_jwt(client_email: &str, private_key: &str, token_uri: &str, now: u64) -> Result<String, String> {
    let bad_key = |why: String| format!("the private key of service account {client_email} is unusable: {why}");
    let der: String =
        private_key.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with("-----")).collect();
    let der = STANDARD.decode(der).map_err(|error| bad_key(error.to_string()))?;
    let key = RsaKeyPair::from_pkcs8(&der).map_err(|error| bad_key(error.to_string()))?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": client_email,
        "scope": READ_ONLY_SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut signature)
        .map_err(|error| bad_key(error.to_string()))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// An OAuth token request (form-encoded POST).
fn exchange(http: &Client, token_uri: &str, form: &[(&str, &str)], now: u64) -> Result<Expiring<String>, String> {
    let request =
        http.post(token_uri).header("content-type", "application/x-www-form-urlencoded").body(canonical_query(form));
    token_answer(request, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential_file(json: &str) -> (tempfile::TempDir, String) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("key.json");
        std::fs::write(&path, json).unwrap();
        (folder, path.to_str().unwrap().to_string())
    }

    #[test]
    fn the_credential_file_comes_first_else_the_metadata_server() {
        let (_folder, file) = credential_file(
            r#"{"type": "service_account", "client_email": "reader@p.iam.gserviceaccount.com",
                "private_key": "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n"}"#,
        );
        let source = GcpCredentialSource::from_environment(|name| {
            (name == "GOOGLE_APPLICATION_CREDENTIALS").then(|| file.clone())
        })
        .unwrap();
        assert!(
            matches!(&source, GcpCredentialSource::ServiceAccount { token_uri, .. } if token_uri == DEFAULT_TOKEN_URI)
        );
        assert_eq!(
            GcpCredentialSource::from_environment(|_| None).unwrap(),
            GcpCredentialSource::Metadata { origin: "http://metadata.google.internal".to_string() }
        );
        let (_folder, file) = credential_file(r#"{"type": "external_account"}"#);
        let error = GcpCredentialSource::from_environment(|name| {
            (name == "GOOGLE_APPLICATION_CREDENTIALS").then(|| file.clone())
        })
        .unwrap_err();
        assert!(error.contains("\"external_account\" are not supported"), "{error}");
    }

    #[test]
    fn an_unusable_key_is_named() {
        let error =
            signed_jwt("reader@p", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "t", 0).unwrap_err();
        assert!(error.contains("private key of service account reader@p is unusable"), "{error}");
    }
}
