//! Where the AWS credentials an S3 repository is read with come from, in
//! the order of the AWS SDK's default chain that Triton relies on:
//!
//! 1. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with
//!    `AWS_SESSION_TOKEN`);
//! 2. the profile `AWS_PROFILE` (or `default`) of the shared credentials
//!    and config files that `aws configure` writes;
//! 3. a web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`:
//!    EKS's IAM roles for service accounts), exchanged with STS;
//! 4. the container credentials endpoint
//!    (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on ECS,
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` with EKS Pod Identity);
//! 5. the EC2 instance metadata service, unless
//!    `AWS_EC2_METADATA_DISABLED=true`;
//!
//! and with none of them, unsigned requests, which public buckets allow.
//! The region comes from `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile,
//! else `us-east-1`. Fetching temporary credentials is
//! `temporary_credentials.rs`'s.

use std::fmt;
use std::path::PathBuf;

/// The region when nothing names one, as in the AWS SDKs.
const DEFAULT_REGION: &str = "us-east-1";

/// Where ECS serves a task's credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
/// is a path on it).
const ECS_CREDENTIALS_ORIGIN: &str = "http://169.254.170.2";

/// The EC2 instance metadata service.
const INSTANCE_METADATA_ORIGIN: &str = "http://169.254.169.254";

/// An access key, and the session token of temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// The access key id (`AKIA...`, `ASIA...`).
    pub access_key_id: String,
    /// The secret that signs requests.
    pub secret_access_key: String,
    /// The session token that goes with temporary credentials.
    pub session_token: Option<String>,
}

// The secret never reaches a log.
impl fmt::Debug for AwsCredentials {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        out.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("session_token", &self.session_token.as_ref().map(|_| "..."))
            .finish_non_exhaustive()
    }
}

/// How the container credentials endpoint wants to be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerAuthorization {
    /// Nothing (ECS).
    None,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Token(String),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read at each fetch (EKS
    /// Pod Identity rotates it).
    TokenFile(PathBuf),
}

/// Where credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Keys given in the environment or a profile.
    Keys(AwsCredentials),
    /// A web identity token exchanged for a role's credentials.
    WebIdentity {
        /// The role to assume.
        role_arn: String,
        /// The token's file, read at each exchange (it is rotated).
        token_file: PathBuf,
        /// The name of the role session.
        session_name: String,
        /// STS's address.
        sts_origin: String,
    },
    /// The container credentials endpoint.
    Container {
        /// Its full URL.
        url: String,
        /// What goes in its Authorization header.
        authorization: ContainerAuthorization,
    },
    /// The EC2 instance metadata service (IMDSv2), at this origin; when it
    /// does not answer, requests go unsigned.
    InstanceMetadata {
        /// `http://169.254.169.254`, or `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
        origin: String,
    },
    /// None: requests go unsigned.
    Unsigned,
}

/// What requests to S3 are signed with, and for which region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsAccess {
    /// Where the credentials come from.
    pub source: CredentialSource,
    /// The region requests are signed for.
    pub region: String,
}

impl AwsAccess {
    /// Chooses the source and region with `var` reading the environment.
    pub fn from_environment(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).map(|value| value.trim().to_string()).filter(|value| !value.is_empty());
        let profile_name = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        let home = var("HOME").map(PathBuf::from);
        let file = |variable: &str, default: &str| {
            var(variable).map(PathBuf::from).or_else(|| home.as_ref().map(|home| home.join(".aws").join(default)))
        };
        // The credentials file names a profile plainly, the config file as
        // `profile <name>` (except `default`).
        let config_section =
            if profile_name == "default" { profile_name.clone() } else { format!("profile {profile_name}") };
        let profiles = [
            file("AWS_SHARED_CREDENTIALS_FILE", "credentials").map(|path| read_profile(&path, &profile_name)),
            file("AWS_CONFIG_FILE", "config").map(|path| read_profile(&path, &config_section)),
        ];
        let in_profile =
            |key: &str| profiles.iter().flatten().find_map(|profile| profile.value(key).map(str::to_string));
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| in_profile("region"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());

        let keys = |id: Option<String>, secret: Option<String>, token: Option<String>| {
            Some(CredentialSource::Keys(AwsCredentials {
                access_key_id: id?,
                secret_access_key: secret?,
                session_token: token,
            }))
        };
        let source = keys(var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"), var("AWS_SESSION_TOKEN"))
            .or_else(|| {
                keys(
                    in_profile("aws_access_key_id"),
                    in_profile("aws_secret_access_key"),
                    in_profile("aws_session_token"),
                )
            })
            .or_else(|| {
                Some(CredentialSource::WebIdentity {
                    role_arn: var("AWS_ROLE_ARN")?,
                    token_file: PathBuf::from(var("AWS_WEB_IDENTITY_TOKEN_FILE")?),
                    session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "tritonrs".to_string()),
                    sts_origin: var("AWS_ENDPOINT_URL_STS")
                        .or_else(|| var("AWS_ENDPOINT_URL"))
                        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com")),
                })
            })
            .or_else(|| {
                let url = var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                    .map(|path| format!("{ECS_CREDENTIALS_ORIGIN}{path}"))
                    .or_else(|| var("AWS_CONTAINER_CREDENTIALS_FULL_URI"))?;
                let authorization =
                    match (var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), var("AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
                        (Some(file), _) => ContainerAuthorization::TokenFile(PathBuf::from(file)),
                        (None, Some(token)) => ContainerAuthorization::Token(token),
                        (None, None) => ContainerAuthorization::None,
                    };
                Some(CredentialSource::Container { url, authorization })
            })
            .unwrap_or_else(|| match var("AWS_EC2_METADATA_DISABLED") {
                Some(disabled) if disabled.eq_ignore_ascii_case("true") => CredentialSource::Unsigned,
                _ => CredentialSource::InstanceMetadata {
                    origin: var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                        .map(|origin| origin.trim_end_matches('/').to_string())
                        .unwrap_or_else(|| INSTANCE_METADATA_ORIGIN.to_string()),
                },
            });
        Self { source, region }
    }

    /// Where the credentials come from, for the log.
    pub fn describe(&self) -> String {
        match &self.source {
            CredentialSource::Keys(credentials) => {
                // Enough of the key id to tell keys apart, as the AWS CLI shows it.
                let id = &credentials.access_key_id;
                let tail = id.char_indices().rev().nth(3).map_or(id.as_str(), |(start, _)| &id[start..]);
                format!("the access key ending in {tail}")
            }
            CredentialSource::WebIdentity { role_arn, .. } => format!("the web identity of role {role_arn}"),
            CredentialSource::Container { url, .. } => format!("the container credentials at {url}"),
            CredentialSource::InstanceMetadata { origin } => {
                format!("the EC2 instance's role (metadata at {origin}), else unsigned requests")
            }
            CredentialSource::Unsigned => "none: requests go unsigned, as to a public bucket".to_string(),
        }
    }
}

/// The `key = value` lines of one `[section]` of an INI file as the AWS
/// CLI writes them.
#[derive(Debug, Default)]
struct Profile(Vec<(String, String)>);

impl Profile {
    fn value(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}

/// The section of the file; empty when the file or the section is missing.
fn read_profile(path: &PathBuf, section: &str) -> Profile {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Profile::default();
    };
    let mut inside = false;
    let mut values = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|line| line.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if let (true, Some((key, value))) = (inside, line.split_once('=')) {
            values.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    Profile(values)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn access(vars: &[(&str, &str)]) -> AwsAccess {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AwsAccess::from_environment(|name| vars.get(name).cloned())
    }

    fn keys_of(access: &AwsAccess) -> &AwsCredentials {
        match &access.source {
            CredentialSource::Keys(credentials) => credentials,
            other => panic!("expected keys, found {other:?}"),
        }
    }

    #[test]
    fn the_environment_comes_first() {
        let found = access(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
        ]);
        let credentials = keys_of(&found);
        assert_eq!(
            (credentials.access_key_id.as_str(), credentials.session_token.as_deref()),
            ("AKIDENV", Some("token"))
        );
        assert_eq!(found.region, "eu-west-1");
        assert!(!format!("{credentials:?}").contains("secret"));
        // AWS_REGION wins over AWS_DEFAULT_REGION, as in the SDKs.
        assert_eq!(access(&[("AWS_REGION", "ap-south-1"), ("AWS_DEFAULT_REGION", "eu-west-1")]).region, "ap-south-1");
    }

    #[test]
    fn profiles_of_the_shared_files() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n\
             [ci]\n# a comment\naws_access_key_id=AKIDCI\naws_secret_access_key=s2\naws_session_token = t2\n",
        )
        .unwrap();
        std::fs::write(
            home.path().join(".aws/config"),
            "[default]\nregion = us-west-2\n[profile ci]\nregion = eu-central-1\n",
        )
        .unwrap();
        let home_var = home.path().to_str().unwrap();
        let default = access(&[("HOME", home_var)]);
        assert_eq!(keys_of(&default).access_key_id, "AKIDDEFAULT");
        assert_eq!(default.region, "us-west-2");
        let ci = access(&[("HOME", home_var), ("AWS_PROFILE", "ci")]);
        assert_eq!(keys_of(&ci).session_token.as_deref(), Some("t2"));
        assert_eq!(ci.region, "eu-central-1");
    }

    #[test]
    fn roles_of_eks_ecs_and_ec2() {
        let irsa = access(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/models-reader"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        let CredentialSource::WebIdentity { role_arn, sts_origin, session_name, .. } = &irsa.source else {
            panic!("{irsa:?}")
        };
        assert_eq!(role_arn, "arn:aws:iam::123456789012:role/models-reader");
        assert_eq!((sts_origin.as_str(), session_name.as_str()), ("https://sts.eu-west-1.amazonaws.com", "tritonrs"));

        let ecs = access(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc")]);
        let expected = CredentialSource::Container {
            url: "http://169.254.170.2/v2/credentials/abc".to_string(),
            authorization: ContainerAuthorization::None,
        };
        assert_eq!(ecs.source, expected);
        let pod_identity = access(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/secrets/pods.eks.amazonaws.com/token"),
        ]);
        assert!(matches!(
            pod_identity.source,
            CredentialSource::Container { authorization: ContainerAuthorization::TokenFile(_), .. }
        ));

        let ec2 = access(&[("HOME", "/definitely/not/a/home"), ("AWS_ACCESS_KEY_ID", "only-half")]);
        assert_eq!(ec2.source, CredentialSource::InstanceMetadata { origin: "http://169.254.169.254".to_string() });
        assert_eq!(ec2.region, "us-east-1");
        assert_eq!(access(&[("AWS_EC2_METADATA_DISABLED", "TRUE")]).source, CredentialSource::Unsigned);
        assert!(access(&[("AWS_EC2_METADATA_DISABLED", "true")]).describe().contains("unsigned"));
        let keyed = access(&[("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        assert_eq!(keyed.describe(), "the access key ending in MPLE");
    }
}
