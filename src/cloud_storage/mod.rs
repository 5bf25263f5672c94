//! Model repositories in cloud object storage, served from a local copy as
//! Triton serves them: `--model-repository=s3://bucket/path` (Amazon S3, or
//! any S3-compatible service named as `s3://host:port/bucket/path`).
//!
//! `repository_copy.rs` keeps the copy current; `s3_client.rs` lists and
//! downloads objects, signed by `sigv4.rs` with the credentials of the
//! source `aws_credentials.rs` chooses, fetched and kept by
//! `temporary_credentials.rs`; `s3_path.rs` reads the repository path and
//! `xml_text.rs` AWS's XML answers.

mod aws_credentials;
mod repository_copy;
mod s3_client;
mod s3_path;
mod sigv4;
mod temporary_credentials;
mod xml_text;

pub use repository_copy::{Refreshed, RepositoryCopy};
pub use s3_path::is_s3_path;

/// Why a repository path of another cloud storage (Triton's `gs://` and
/// `as://`) cannot be served, rather than a confusing missing folder.
pub fn unsupported_storage(path: &str) -> Option<String> {
    let storage = [("gs://", "Google Cloud Storage"), ("as://", "Azure Storage")]
        .into_iter()
        .find_map(|(scheme, storage)| path.starts_with(scheme).then_some(storage))?;
    Some(format!(
        "model repository '{path}': repositories in {storage} are not supported; \
         copy it to a folder (a volume) or to an S3 bucket (s3://)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_cloud_storages_are_named_in_the_refusal() {
        assert!(unsupported_storage("gs://bucket/models").unwrap().contains("Google Cloud Storage"));
        assert!(unsupported_storage("as://account/container/models").unwrap().contains("Azure Storage"));
        assert_eq!(unsupported_storage("/models"), None);
        assert_eq!(unsupported_storage("s3://bucket"), None);
    }
}
