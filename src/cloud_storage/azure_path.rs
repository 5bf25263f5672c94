//! Where an `as://account/container/path/to/repository` model repository
//! is, as Triton reads it. Slashes repeated inside the path and at its
//! ends do not matter.

use super::object_store::key_prefix;

/// The scheme of Azure Storage paths.
pub const AZURE_SCHEME: &str = "as://";

/// A parsed `as://` repository path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzurePath {
    /// The storage account.
    pub account: String,
    /// The blob container.
    pub container: String,
    /// The blob name prefix of the repository, without a trailing slash;
    /// empty for the container's root.
    pub prefix: String,
}

impl AzurePath {
    /// Parses an `as://` repository path.
    pub fn parse(path: &str) -> Result<Self, String> {
        let malformed = |why: &str| format!("malformed Azure Storage model repository '{path}': {why}");
        let rest = path.strip_prefix(AZURE_SCHEME).ok_or_else(|| malformed("it does not start with as://"))?;
        let mut segments = rest.split('/').filter(|segment| !segment.is_empty());
        let account = segments.next().ok_or_else(|| malformed("no storage account is named"))?;
        let container = segments.next().ok_or_else(|| malformed("no container follows the account"))?;
        let valid = |name: &str| name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid(account) || !valid(container) {
            return Err(malformed("account and container names are letters, digits and '-'"));
        }
        let prefix = key_prefix(segments).ok_or_else(|| malformed("'.' and '..' are not folders of a container"))?;
        Ok(Self { account: account.to_string(), container: container.to_string(), prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_containers_and_prefixes() {
        let path = AzurePath::parse("as://mlstore/models//team/repository/").unwrap();
        assert_eq!(
            path,
            AzurePath { account: "mlstore".into(), container: "models".into(), prefix: "team/repository".into() }
        );
        assert_eq!(AzurePath::parse("as://a/c").unwrap().prefix, "");
        for (path, why) in [("as://", "no storage account"), ("as://a", "no container"), ("as://a/c/../x", "'..'")] {
            let error = AzurePath::parse(path).unwrap_err();
            assert!(error.contains(why), "{path}: {error}");
        }
    }
}
