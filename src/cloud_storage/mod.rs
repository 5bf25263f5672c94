//! Model repositories in cloud object storage, served from a local copy as
//! Triton serves them: `--model-repository=s3://bucket/path` (Amazon S3, or
//! any S3-compatible service named as `s3://host:port/bucket/path`) and
//! `gs://bucket/path` (Google Cloud Storage).
//!
//! `repository_copy.rs` keeps the copy current from a `cloud_bucket.rs`,
//! read through `object_store.rs`'s two calls. For S3: `s3_client.rs`
//! lists and downloads objects, signed by `sigv4.rs` with the credentials
//! of the source `aws_credentials.rs` chooses, fetched and kept by
//! `temporary_credentials.rs`; `s3_path.rs` reads the path and
//! `xml_text.rs` AWS's XML answers. For Google Cloud Storage:
//! `gcs_client.rs` with the tokens of `gcp_credentials.rs`, and
//! `gcs_path.rs`.

mod aws_credentials;
mod cloud_bucket;
mod gcp_credentials;
mod gcs_client;
mod gcs_path;
mod object_store;
mod repository_copy;
mod s3_client;
mod s3_path;
mod sigv4;
mod temporary_credentials;
mod xml_text;

pub use cloud_bucket::is_cloud_path;
pub use repository_copy::{Refreshed, RepositoryCopy};

/// Why a repository path in Azure Storage (Triton's `as://`) cannot be
/// served, rather than a confusing missing folder.
pub fn unsupported_storage(path: &str) -> Option<String> {
    path.starts_with("as://").then(|| {
        format!(
            "model repository '{path}': repositories in Azure Storage are not supported; \
             copy it to a folder (a volume), an S3 bucket (s3://) or a Google Cloud Storage bucket (gs://)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_storage_is_named_in_the_refusal() {
        assert!(unsupported_storage("as://account/container/models").unwrap().contains("Azure Storage"));
        assert_eq!(unsupported_storage("/models"), None);
        assert_eq!(unsupported_storage("gs://bucket"), None);
    }
}
