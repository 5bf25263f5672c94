//! Triton's cloud credential file (`TRITON_CLOUD_CREDENTIAL_PATH`, beta in
//! Triton): per provider (`s3`, `gs`, `as`), credentials keyed by path
//! prefix, the longest prefix of a repository's path choosing its entry
//! (`""` matches every path):
//!
//! ```json
//! { "s3": { "": { "key_id": "...", "secret_key": "...", "region": "...",
//!                 "session_token": "", "profile": "" } },
//!   "gs": { "gs://bucket-2": "/path/to/service-account.json" },
//!   "as": { "": { "account_str": "...", "account_key": "...",
//!                 "auth_type": "managed_identity", "client_id": "" } } }
//! ```
//!
//! The chosen entry stands in for the provider's credential variables
//! (`AWS_ACCESS_KEY_ID`, `GOOGLE_APPLICATION_CREDENTIALS`,
//! `AZURE_STORAGE_KEY`, ...); a path no entry matches uses the environment.

use std::collections::HashMap;

/// The variable that names the file.
pub const CREDENTIAL_FILE_VARIABLE: &str = "TRITON_CLOUD_CREDENTIAL_PATH";

/// A provider's part of the file.
struct Provider {
    /// The scheme of its paths.
    scheme: &'static str,
    /// Its section of the file.
    section: &'static str,
    /// Entry field -> the variable it stands for ("" for an entry that is
    /// a string itself). Variables the entry leaves out read as unset, so
    /// that nothing of the environment mixes in.
    fields: &'static [(&'static str, &'static str)],
}

const PROVIDERS: [Provider; 3] = [
    Provider {
        scheme: "s3://",
        section: "s3",
        fields: &[
            ("key_id", "AWS_ACCESS_KEY_ID"),
            ("secret_key", "AWS_SECRET_ACCESS_KEY"),
            ("session_token", "AWS_SESSION_TOKEN"),
            ("region", "AWS_DEFAULT_REGION"),
            ("profile", "AWS_PROFILE"),
        ],
    },
    Provider { scheme: "gs://", section: "gs", fields: &[("", "GOOGLE_APPLICATION_CREDENTIALS")] },
    Provider {
        scheme: "as://",
        section: "as",
        fields: &[
            ("account_str", "AZURE_STORAGE_ACCOUNT"),
            ("account_key", "AZURE_STORAGE_KEY"),
            ("auth_type", "AZURE_STORAGE_AUTH_TYPE"),
            ("client_id", "AZURE_STORAGE_CLIENT_ID"),
        ],
    },
];

/// The variables the credential file sets for the repository at `path`
/// (empty when the file is not set or no entry matches); `var` reads the
/// environment.
pub fn credential_variables(
    path: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<&'static str, String>, String> {
    let Some(file) = var(CREDENTIAL_FILE_VARIABLE).filter(|file| !file.trim().is_empty()) else {
        return Ok(HashMap::new());
    };
    let unreadable = |why: String| format!("{CREDENTIAL_FILE_VARIABLE}={file}: {why}");
    let text = std::fs::read_to_string(&file).map_err(|error| unreadable(error.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|error| unreadable(error.to_string()))?;
    let Some(Provider { section, fields, .. }) = PROVIDERS.iter().find(|provider| path.starts_with(provider.scheme))
    else {
        return Ok(HashMap::new());
    };
    let Some(entries) = json.get(section).and_then(|entries| entries.as_object()) else {
        return Ok(HashMap::new());
    };
    let Some((_, entry)) =
        entries.iter().filter(|(prefix, _)| path.starts_with(prefix.as_str())).max_by_key(|(prefix, _)| prefix.len())
    else {
        return Ok(HashMap::new());
    };
    let mut variables = HashMap::new();
    for (field, variable) in fields.iter() {
        // An entry of `gs` is the credential file's path itself.
        let value = match field.is_empty() {
            true => Some(entry),
            false => entry.get(field),
        };
        let value = match value {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(other) => {
                return Err(unreadable(format!("\"{section}\" entry field {field} is not a string: {other}")));
            }
        };
        variables.insert(*variable, value);
    }
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(path: &str, json: &str) -> HashMap<&'static str, String> {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("credentials.json");
        std::fs::write(&file, json).unwrap();
        let file = file.to_str().unwrap().to_string();
        credential_variables(path, |name| (name == CREDENTIAL_FILE_VARIABLE).then(|| file.clone())).unwrap()
    }

    const FILE: &str = r#"{
        "gs": { "": "/keys/default.json", "gs://gcs-bucket-002": "/keys/second.json" },
        "s3": { "": { "key_id": "AKID1", "secret_key": "s1", "region": "eu-west-1" },
                "s3://s3-bucket-002": { "key_id": "AKID2", "secret_key": "s2", "session_token": "t2" } },
        "as": { "as://Account-MI/Container": { "auth_type": "managed_identity", "client_id": "" } } }"#;

    #[test]
    fn the_longest_matching_prefix_chooses_the_entry() {
        assert_eq!(
            variables("gs://gcs-bucket-002/models", FILE)["GOOGLE_APPLICATION_CREDENTIALS"],
            "/keys/second.json"
        );
        assert_eq!(variables("gs://any-other/models", FILE)["GOOGLE_APPLICATION_CREDENTIALS"], "/keys/default.json");
        let second = variables("s3://s3-bucket-002/models", FILE);
        assert_eq!((second["AWS_ACCESS_KEY_ID"].as_str(), second["AWS_SESSION_TOKEN"].as_str()), ("AKID2", "t2"));
        // Left out: unset, not the environment's.
        assert_eq!(second["AWS_DEFAULT_REGION"], "");
        assert_eq!(variables("s3://other/models", FILE)["AWS_DEFAULT_REGION"], "eu-west-1");
        assert_eq!(variables("as://Account-MI/Container/m", FILE)["AZURE_STORAGE_AUTH_TYPE"], "managed_identity");
        assert!(variables("as://other/c/m", FILE).is_empty());
        assert!(credential_variables("s3://b", |_| None).unwrap().is_empty());
    }
}
