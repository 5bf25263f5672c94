//! The credentials of a [`CredentialSource`] at the moment of a request:
//! keys as given, or temporary credentials fetched from STS (a web
//! identity), the container credentials endpoint or the EC2 instance
//! metadata service, kept until five minutes before they expire.

use std::sync::Mutex;
use std::time::Duration;

use blocking_reqwest::blocking::{Client, RequestBuilder};

use super::aws_credentials::{AwsAccess, AwsCredentials, ContainerAuthorization, CredentialSource};
use super::expiring::Expiring;
use super::sigv4::canonical_query;
use super::xml_text::element;
use crate::utc_time::{parse_rfc3339_utc, unix_seconds};

/// How long the instance metadata service may take to answer: off EC2 its
/// address leads nowhere, and the AWS SDKs give it about a second too.
const INSTANCE_METADATA_TIMEOUT: Duration = Duration::from_secs(1);

/// What was fetched last.
#[derive(Debug, Default)]
struct Fetched {
    credentials: Option<Expiring<AwsCredentials>>,
    /// The instance metadata service did not answer (not on EC2), or the
    /// instance has no role: requests go unsigned without asking again.
    no_instance_role: bool,
}

/// The credentials of one repository's [`AwsAccess`].
#[derive(Debug)]
pub struct CredentialCache {
    access: AwsAccess,
    fetched: Mutex<Fetched>,
}

impl CredentialCache {
    /// A cache that fetches nothing until asked.
    pub fn new(access: AwsAccess) -> Self {
        Self { access, fetched: Mutex::new(Fetched::default()) }
    }

    /// Where the credentials come from, for the log.
    pub fn describe(&self) -> String {
        self.access.describe()
    }

    /// The region the access was configured for.
    pub fn region(&self) -> &str {
        &self.access.region
    }

    /// The credentials to sign with now; None for unsigned requests.
    pub fn current(&self, http: &Client) -> Result<Option<AwsCredentials>, String> {
        let now = unix_seconds();
        let mut fetched = self.fetched.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(expiring) = fetched.credentials.as_ref().filter(|expiring| expiring.fresh_at(now)) {
            return Ok(Some(expiring.value.clone()));
        }
        let expiring = match &self.access.source {
            CredentialSource::Keys(credentials) => return Ok(Some(credentials.clone())),
            CredentialSource::Unsigned => return Ok(None),
            CredentialSource::InstanceMetadata { .. } if fetched.no_instance_role => return Ok(None),
            CredentialSource::WebIdentity { role_arn, token_file, session_name, sts_origin } => {
                let token = std::fs::read_to_string(token_file)
                    .map_err(|error| format!("cannot read the web identity token {}: {error}", token_file.display()))?;
                assume_role_with_web_identity(http, sts_origin, role_arn, session_name, token.trim())?
            }
            CredentialSource::Container { url, authorization } => from_container(http, url, authorization)?,
            CredentialSource::InstanceMetadata { origin } => match from_instance_metadata(http, origin) {
                Ok(expiring) => expiring,
                // Off EC2, or an instance without a role.
                Err(reason) if fetched.credentials.is_none() => {
                    tracing::info!("no EC2 instance role ({reason}): S3 requests go unsigned");
                    fetched.no_instance_role = true;
                    return Ok(None);
                }
                Err(reason) => return Err(format!("cannot renew the EC2 instance role's credentials: {reason}")),
            },
        };
        fetched.credentials = Some(expiring.clone());
        Ok(Some(expiring.value))
    }
}

/// STS's AssumeRoleWithWebIdentity, which is not signed: the token is the
/// proof.
fn assume_role_with_web_identity(
    http: &Client,
    sts_origin: &str,
    role_arn: &str,
    session_name: &str,
    token: &str,
) -> Result<Expiring<AwsCredentials>, String> {
    let form = canonical_query(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", token),
    ]);
    let failed = |why: String| format!("cannot assume role {role_arn} with the web identity token: {why}");
    let request = http
        .post(format!("{}/", sts_origin.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form);
    let (ok, body) = text_of(request).map_err(failed)?;
    if !ok {
        let code = element(&body, "Code").unwrap_or_default();
        return Err(failed(format!("STS answered {code}: {}", element(&body, "Message").unwrap_or_default())));
    }
    let field = |name: &str| element(&body, name).ok_or_else(|| failed(format!("STS's answer has no {name}")));
    Ok(Expiring {
        value: AwsCredentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: Some(field("SessionToken")?),
        },
        expires_at: element(&body, "Expiration").as_deref().and_then(parse_rfc3339_utc),
    })
}

/// The container credentials endpoint (ECS, EKS Pod Identity).
fn from_container(
    http: &Client,
    url: &str,
    authorization: &ContainerAuthorization,
) -> Result<Expiring<AwsCredentials>, String> {
    let failed = |why: String| format!("cannot get credentials from the container endpoint {url}: {why}");
    let mut request = http.get(url);
    match authorization {
        ContainerAuthorization::None => {}
        ContainerAuthorization::Token(token) => request = request.header("authorization", token.trim()),
        ContainerAuthorization::TokenFile(path) => {
            let token = std::fs::read_to_string(path)
                .map_err(|error| failed(format!("cannot read {}: {error}", path.display())))?;
            request = request.header("authorization", token.trim());
        }
    }
    let (ok, body) = text_of(request).map_err(failed)?;
    if !ok {
        return Err(failed(format!("it answered: {}", body.trim())));
    }
    credentials_json(&body).map_err(failed)
}

/// IMDSv2: a session token, the instance role's name, its credentials.
fn from_instance_metadata(http: &Client, origin: &str) -> Result<Expiring<AwsCredentials>, String> {
    let token_request = http
        .put(format!("{origin}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .timeout(INSTANCE_METADATA_TIMEOUT);
    let (ok, token) = text_of(token_request)?;
    if !ok {
        return Err(format!("the instance metadata service refused a session token: {}", token.trim()));
    }
    let get = |path: &str| {
        let request = http
            .get(format!("{origin}/latest/meta-data/iam/security-credentials/{path}"))
            .header("x-aws-ec2-metadata-token", token.trim())
            .timeout(INSTANCE_METADATA_TIMEOUT);
        match text_of(request)? {
            (true, body) => Ok(body),
            (false, body) => Err(format!("the instance metadata service answered: {}", body.trim())),
        }
    };
    let roles = get("")?;
    let role = roles.lines().map(str::trim).find(|line| !line.is_empty()).ok_or("the instance has no role")?;
    credentials_json(&get(role)?)
}

/// The JSON both the container endpoint and the instance metadata service
/// answer with.
fn credentials_json(body: &str) -> Result<Expiring<AwsCredentials>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        access_key_id: String,
        secret_access_key: String,
        token: Option<String>,
        expiration: Option<String>,
    }
    let answer: Answer = serde_json::from_str(body).map_err(|error| format!("unreadable credentials: {error}"))?;
    Ok(Expiring {
        value: AwsCredentials {
            access_key_id: answer.access_key_id,
            secret_access_key: answer.secret_access_key,
            session_token: answer.token.filter(|token| !token.is_empty()),
        },
        expires_at: answer.expiration.as_deref().and_then(parse_rfc3339_utc),
    })
}

/// Whether the answer was a success, and its text.
fn text_of(request: RequestBuilder) -> Result<(bool, String), String> {
    let response = request.send().map_err(|error| error.to_string())?;
    let ok = response.status().is_success();
    let body = response.text().map_err(|error| error.to_string())?;
    Ok((ok, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_of_the_container_and_instance_endpoints() {
        let answer = r#"{"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAEXAMPLE",
            "SecretAccessKey": "secret", "Token": "token", "Expiration": "2026-11-23T20:05:41Z"}"#;
        let expiring = credentials_json(answer).unwrap();
        assert_eq!(expiring.value.access_key_id, "ASIAEXAMPLE");
        assert_eq!(expiring.value.session_token.as_deref(), Some("token"));
        assert_eq!(expiring.expires_at, Some(1_795_464_341));
        assert!(credentials_json("{}").unwrap_err().contains("unreadable credentials"));
    }

    #[test]
    fn keys_need_no_fetch_and_expired_credentials_are_fetched_again() {
        let http = crate::cloud_storage::object_store::http_client().unwrap();
        let keys = AwsCredentials {
            access_key_id: "AKID".to_string(),
            secret_access_key: "s".to_string(),
            session_token: None,
        };
        let access = AwsAccess { source: CredentialSource::Keys(keys.clone()), region: "us-east-1".to_string() };
        assert_eq!(CredentialCache::new(access).current(&http).unwrap(), Some(keys.clone()));

        // An instance metadata address where nothing listens: off EC2, so
        // unsigned, and remembered.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let access =
            AwsAccess { source: CredentialSource::InstanceMetadata { origin }, region: "us-east-1".to_string() };
        let cache = CredentialCache::new(access);
        assert_eq!(cache.current(&http).unwrap(), None);
        assert!(cache.fetched.lock().unwrap().no_instance_role);
        assert_eq!(cache.current(&http).unwrap(), None);

        // Once it gave credentials, failing to renew them is an error, not a
        // silent switch to unsigned requests.
        let fresh = CredentialCache::new(cache.access.clone());
        fresh.fetched.lock().unwrap().credentials = Some(Expiring { value: keys, expires_at: Some(60) });
        assert!(fresh.current(&http).unwrap_err().contains("cannot renew"));
    }
}
