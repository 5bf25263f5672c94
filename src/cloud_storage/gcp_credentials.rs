//! The OAuth access token Google Cloud Storage requests carry, found where
//! Triton's Google client looks: the credential file that
//! `GOOGLE_APPLICATION_CREDENTIALS` names (a service account key, whose
//! signed JWT is exchanged for a token; an authorized user's refresh token;
//! or an external account of workload identity federation, whose token
//! from another identity provider Google's security token service
//! exchanges, then impersonating a service account where the file says so),
//! else the attached service account of the VM, GKE node or Vertex AI
//! container (the metadata server); with neither, requests go without a
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
use super::oauth_token::{json_answer, text_answer, token_answer};
use super::sigv4::canonical_query;
use crate::utc_time::{parse_rfc3339_utc, unix_seconds};

/// Google's token endpoint, when a credential file names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The metadata server, when `GCE_METADATA_HOST` names no other.
const METADATA_HOST: &str = "metadata.google.internal";

/// Read access to buckets is all a repository copy needs.
const READ_ONLY_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";

/// How long the metadata server may take to answer: off Google Cloud its
/// name leads nowhere.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

/// Google's security token service, when an external account names none.
const DEFAULT_STS_URL: &str = "https://sts.googleapis.com/v1/token";

/// The scope of a federated token: impersonating a service account needs
/// more than reading buckets, as Google's own clients ask it.
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where an external account's own token (the subject token) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectToken {
    /// A file another identity provider keeps current (a Kubernetes
    /// projected service account token, for one).
    File {
        /// The file.
        path: PathBuf,
        /// With `"format": {"type": "json"}`, the field holding the token.
        json_field: Option<String>,
    },
    /// A URL that answers with it (an Azure managed identity endpoint, for
    /// one).
    Url {
        /// The URL.
        url: String,
        /// Headers to send.
        headers: Vec<(String, String)>,
        /// With `"format": {"type": "json"}`, the field holding the token.
        json_field: Option<String>,
    },
}

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
    /// Workload identity federation: a token of another identity provider
    /// exchanged at Google's security token service, then for a service
    /// account's token when `impersonation_url` is set.
    ExternalAccount {
        /// The workload identity pool provider.
        audience: String,
        /// The kind of subject token (`urn:ietf:params:oauth:token-type:jwt`, ...).
        subject_token_type: String,
        /// Where the subject token comes from.
        subject: SubjectToken,
        /// The security token service.
        token_url: String,
        /// The IAM credentials call that issues the service account's token.
        impersonation_url: Option<String>,
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
            "external_account" => {
                let source =
                    json.get("credential_source").ok_or_else(|| unreadable("no \"credential_source\"".into()))?;
                Ok(Self::ExternalAccount {
                    audience: field("audience")?,
                    subject_token_type: field("subject_token_type")?,
                    subject: subject_token(source).map_err(unreadable)?,
                    token_url: field("token_url").unwrap_or_else(|_| DEFAULT_STS_URL.to_string()),
                    impersonation_url: field("service_account_impersonation_url").ok(),
                })
            }
            other => Err(unreadable(format!("credentials of type \"{other}\" are not supported"))),
        }
    }

    /// Where tokens come from, for the log.
    pub fn describe(&self) -> String {
        match self {
            Self::ServiceAccount { client_email, .. } => format!("the service account {client_email}"),
            Self::AuthorizedUser { client_id, .. } => format!("an authorized user of client {client_id}"),
            Self::ExternalAccount { audience, impersonation_url: None, .. } => {
                format!("the external account of {audience}")
            }
            Self::ExternalAccount { audience, impersonation_url: Some(url), .. } => {
                let account = url.rsplit('/').next().unwrap_or(url).trim_end_matches(":generateAccessToken");
                format!("the external account of {audience}, as {account}")
            }
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
            GcpCredentialSource::ExternalAccount {
                audience,
                subject_token_type,
                subject,
                token_url,
                impersonation_url,
            } => {
                let federated = |why: String| format!("cannot get a token for the external account {audience}: {why}");
                let subject_token = subject.read(http).map_err(federated)?;
                let form = [
                    ("audience", audience.as_str()),
                    ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                    ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                    ("scope", CLOUD_PLATFORM_SCOPE),
                    ("subject_token", subject_token.as_str()),
                    ("subject_token_type", subject_token_type.as_str()),
                ];
                let token = exchange(http, token_url, &form, now).map_err(federated)?;
                match impersonation_url {
                    None => token,
                    Some(url) => impersonate(http, url, &token.value, now).map_err(federated)?,
                }
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

/// Reads an external account's `credential_source`: a file or a URL;
/// AWS's and executables' are refused by name.
fn subject_token(source: &serde_json::Value) -> Result<SubjectToken, String> {
    let text = |name: &str| source.get(name).and_then(|value| value.as_str()).map(str::to_string);
    let json_field = match source.get("format").and_then(|format| format.get("type")).and_then(|kind| kind.as_str()) {
        Some("json") => Some(
            source["format"]
                .get("subject_token_field_name")
                .and_then(|field| field.as_str())
                .map(str::to_string)
                .ok_or("a JSON subject token format names no \"subject_token_field_name\"")?,
        ),
        Some("text") | None => None,
        Some(other) => return Err(format!("subject token format \"{other}\" is not supported")),
    };
    if let Some(path) = text("file") {
        return Ok(SubjectToken::File { path: path.into(), json_field });
    }
    if let Some(url) = text("url") {
        let headers = source
            .get("headers")
            .and_then(|headers| headers.as_object())
            .map(|headers| {
                headers.iter().filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string()))).collect()
            })
            .unwrap_or_default();
        return Ok(SubjectToken::Url { url, headers, json_field });
    }
    let kind = text("environment_id").map_or("executable", |_| "AWS");
    Err(format!("an external account's {kind} credential source is not supported; a file or a URL is"))
}

impl SubjectToken {
    /// The subject token as it is now (the provider renews it).
    fn read(&self, http: &Client) -> Result<String, String> {
        let (text, json_field) = match self {
            Self::File { path, json_field } => (
                std::fs::read_to_string(path)
                    .map_err(|error| format!("cannot read the subject token {}: {error}", path.display()))?,
                json_field,
            ),
            Self::Url { url, headers, json_field } => {
                let request = headers.iter().fold(http.get(url), |request, (name, value)| request.header(name, value));
                let body =
                    text_answer(request).map_err(|why| format!("cannot fetch the subject token from {url}: {why}"))?;
                (body, json_field)
            }
        };
        match json_field {
            None => Ok(text.trim().to_string()),
            Some(field) => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|json| json.get(field)?.as_str().map(str::to_string))
                .ok_or_else(|| format!("the subject token has no \"{field}\" field")),
        }
    }
}

/// A service account's token from the IAM credentials call at `url`,
/// authorized by the federated token.
fn impersonate(http: &Client, url: &str, federated_token: &str, now: u64) -> Result<Expiring<String>, String> {
    let body = serde_json::json!({ "scope": [READ_ONLY_SCOPE], "lifetime": "3600s" });
    let request =
        http.post(url).bearer_auth(federated_token).header("content-type", "application/json").body(body.to_string());
    let json = json_answer(request).map_err(|why| format!("impersonating the service account: {why}"))?;
    let value = json.get("accessToken").and_then(|token| token.as_str()).ok_or("the answer has no accessToken")?;
    let expires_at = json.get("expireTime").and_then(|time| time.as_str()).and_then(parse_rfc3339_utc);
    Ok(Expiring { value: value.to_string(), expires_at: Some(expires_at.unwrap_or(now + 3600)) })
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
        let (_folder, file) = credential_file(r#"{"type": "impersonated_service_account"}"#);
        let error = GcpCredentialSource::from_environment(|name| {
            (name == "GOOGLE_APPLICATION_CREDENTIALS").then(|| file.clone())
        })
        .unwrap_err();
        assert!(error.contains("\"impersonated_service_account\" are not supported"), "{error}");
    }

    #[test]
    fn external_accounts_read_a_file_or_a_url() {
        let source = |json: &str| {
            let (_folder, file) = credential_file(json);
            GcpCredentialSource::from_environment(|name| {
                (name == "GOOGLE_APPLICATION_CREDENTIALS").then(|| file.clone())
            })
        };
        let audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k8s";
        let from_file = source(&format!(
            r#"{{"type": "external_account", "audience": "{audience}",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "credential_source": {{"file": "/var/run/token"}},
                "service_account_impersonation_url":
                  "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/r@p.iam.gserviceaccount.com:generateAccessToken"}}"#
        ))
        .unwrap();
        let GcpCredentialSource::ExternalAccount { subject, token_url, .. } = &from_file else {
            panic!("{from_file:?}")
        };
        assert_eq!(subject, &SubjectToken::File { path: "/var/run/token".into(), json_field: None });
        assert_eq!(token_url, DEFAULT_STS_URL);
        assert_eq!(from_file.describe(), format!("the external account of {audience}, as r@p.iam.gserviceaccount.com"));
        let from_url = source(&format!(
            r#"{{"type": "external_account", "audience": "{audience}", "subject_token_type": "jwt",
                "credential_source": {{"url": "http://169.254.169.254/token", "headers": {{"Metadata": "True"}},
                  "format": {{"type": "json", "subject_token_field_name": "access_token"}}}}}}"#
        ))
        .unwrap();
        let GcpCredentialSource::ExternalAccount { subject, .. } = from_url else { panic!() };
        assert_eq!(
            subject,
            SubjectToken::Url {
                url: "http://169.254.169.254/token".into(),
                headers: vec![("Metadata".into(), "True".into())],
                json_field: Some("access_token".into())
            }
        );
        let aws = source(&format!(
            r#"{{"type": "external_account", "audience": "{audience}", "subject_token_type": "aws",
                "credential_source": {{"environment_id": "aws1", "region_url": "http://169.254.169.254"}}}}"#
        ));
        assert!(aws.unwrap_err().contains("AWS credential source is not supported"));
    }

    #[test]
    fn an_unusable_key_is_named() {
        let error =
            signed_jwt("reader@p", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "t", 0).unwrap_err();
        assert!(error.contains("private key of service account reader@p is unusable"), "{error}");
    }
}
