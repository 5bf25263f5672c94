//! The AWS credentials and region an S3 repository is read with, found
//! where Triton's AWS SDK looks first: `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`), else the profile
//! `AWS_PROFILE` (or `default`) of the shared credentials and config files
//! that `aws configure` writes; with neither, requests go unsigned, which
//! public buckets allow. The region comes from `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, the profile, else `us-east-1`.

use std::fmt;
use std::path::PathBuf;

/// The region when nothing names one, as in the AWS SDKs.
const DEFAULT_REGION: &str = "us-east-1";

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

/// What requests to S3 are signed with, and where that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsAccess {
    /// None: requests go unsigned (public buckets).
    pub credentials: Option<AwsCredentials>,
    /// The region requests are signed for.
    pub region: String,
    /// Where the credentials came from, for the log.
    pub source: String,
}

impl AwsAccess {
    /// Looks up credentials and region with `var` reading the environment.
    pub fn from_environment(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let profile_name = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        let home = var("HOME").map(PathBuf::from);
        let file = |variable: &str, default: &str| {
            var(variable).map(PathBuf::from).or_else(|| home.as_ref().map(|home| home.join(".aws").join(default)))
        };
        let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config_file = file("AWS_CONFIG_FILE", "config");
        // The credentials file names a profile plainly, the config file as
        // `profile <name>` (except `default`).
        let config_section =
            if profile_name == "default" { profile_name.clone() } else { format!("profile {profile_name}") };
        let from_credentials_file = credentials_file.as_ref().map(|path| read_profile(path, &profile_name));
        let from_config_file = config_file.as_ref().map(|path| read_profile(path, &config_section));
        let profiles = [from_credentials_file.unwrap_or_default(), from_config_file.unwrap_or_default()];
        let in_profile = |key: &str| profiles.iter().find_map(|profile| profile.value(key).map(str::to_string));

        let (credentials, source) = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => (
                Some(AwsCredentials { access_key_id, secret_access_key, session_token: var("AWS_SESSION_TOKEN") }),
                "the environment (AWS_ACCESS_KEY_ID)".to_string(),
            ),
            _ => match (in_profile("aws_access_key_id"), in_profile("aws_secret_access_key")) {
                (Some(access_key_id), Some(secret_access_key)) => (
                    Some(AwsCredentials {
                        access_key_id,
                        secret_access_key,
                        session_token: in_profile("aws_session_token"),
                    }),
                    format!("profile '{profile_name}' of the AWS shared files"),
                ),
                _ => (None, "none found: requests go unsigned, as to a public bucket".to_string()),
            },
        };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| in_profile("region"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        Self { credentials, region, source }
    }
}

/// The `key = value` lines of one `[section]` of an INI file as the AWS
/// CLI writes them; empty when the file or the section is missing.
#[derive(Debug, Default)]
struct Profile(Vec<(String, String)>);

impl Profile {
    fn value(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}

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

    #[test]
    fn the_environment_comes_first() {
        let found = access(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]);
        let credentials = found.credentials.unwrap();
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
        assert_eq!(default.credentials.unwrap().access_key_id, "AKIDDEFAULT");
        assert_eq!(default.region, "us-west-2");
        let ci = access(&[("HOME", home_var), ("AWS_PROFILE", "ci")]);
        assert_eq!(ci.credentials.as_ref().unwrap().session_token.as_deref(), Some("t2"));
        assert_eq!(ci.region, "eu-central-1");
        assert!(ci.source.contains("'ci'"), "{}", ci.source);
    }

    #[test]
    fn nothing_found_means_unsigned_requests_in_the_default_region() {
        let found = access(&[("HOME", "/definitely/not/a/home"), ("AWS_ACCESS_KEY_ID", "only-half")]);
        assert_eq!(found.credentials, None);
        assert_eq!(found.region, "us-east-1");
        assert!(found.source.contains("unsigned"));
    }
}
