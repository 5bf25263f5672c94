//! Where a `gs://bucket/path/to/repository` model repository is, as
//! Triton reads it. Slashes repeated inside the path and at its ends do
//! not matter.

use super::object_store::key_prefix;

/// A parsed `gs://` repository path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsPath {
    /// The bucket.
    pub bucket: String,
    /// The object name prefix of the repository, without a trailing slash;
    /// empty for the bucket's root.
    pub prefix: String,
}

/// The scheme of Google Cloud Storage paths.
pub const GCS_SCHEME: &str = "gs://";

impl GcsPath {
    /// Parses a `gs://` repository path.
    pub fn parse(path: &str) -> Result<Self, String> {
        let malformed = |why: &str| format!("malformed Google Cloud Storage model repository '{path}': {why}");
        let rest = path.strip_prefix(GCS_SCHEME).ok_or_else(|| malformed("it does not start with gs://"))?;
        let mut segments = rest.split('/').filter(|segment| !segment.is_empty());
        let bucket = segments.next().ok_or_else(|| malformed("no bucket is named"))?;
        if !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
            return Err(malformed(&format!("'{bucket}' is not a bucket name")));
        }
        let prefix = key_prefix(segments).ok_or_else(|| malformed("'.' and '..' are not folders of a bucket"))?;
        Ok(Self { bucket: bucket.to_string(), prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_prefixes() {
        let path = GcsPath::parse("gs://vertex-models//team/repository/").unwrap();
        assert_eq!(path, GcsPath { bucket: "vertex-models".into(), prefix: "team/repository".into() });
        assert_eq!(GcsPath::parse("gs://bucket").unwrap().prefix, "");
        for (path, why) in [("gs://", "no bucket"), ("gs://b/../x", "'..'"), ("gs://b c/x", "not a bucket name")] {
            let error = GcsPath::parse(path).unwrap_err();
            assert!(error.contains(why), "{path}: {error}");
        }
    }
}
