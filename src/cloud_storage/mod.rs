//! Model repositories in cloud object storage, served from a local copy as
//! Triton serves them: `--model-repository=s3://bucket/path` (Amazon S3, or
//! any S3-compatible service named as `s3://host:port/bucket/path`),
//! `gs://bucket/path` (Google Cloud Storage) and
//! `as://account/container/path` (Azure Blob Storage).
//!
//! `repository_copy.rs` keeps the copy current from a `cloud_bucket.rs`,
//! read through `object_store.rs`'s two calls. For S3: `s3_client.rs`
//! lists and downloads objects, signed by `sigv4.rs` with the credentials
//! of the source `aws_credentials.rs` chooses, fetched and kept by
//! `temporary_credentials.rs`; `s3_path.rs` reads the path and
//! `xml_text.rs` AWS's XML answers. For Google Cloud Storage:
//! `gcs_client.rs` with the tokens of `gcp_credentials.rs`, and
//! `gcs_path.rs`. For Azure: `azure_client.rs`, authorized as
//! `azure_credentials.rs` finds, and `azure_path.rs`; `oauth_token.rs`
//! reads Google's and Azure's tokens, and `expiring.rs` says when a
//! credential is renewed. `credential_file.rs` reads Triton's
//! `TRITON_CLOUD_CREDENTIAL_PATH`.

mod aws_credentials;
mod azure_client;
mod azure_credentials;
mod azure_path;
mod cloud_bucket;
mod credential_file;
mod expiring;
mod gcp_credentials;
mod gcs_client;
mod gcs_path;
mod oauth_token;
mod object_store;
mod repository_copy;
mod s3_client;
mod s3_path;
mod sigv4;
mod temporary_credentials;
mod xml_text;

pub use cloud_bucket::is_cloud_path;
pub use repository_copy::{Refreshed, RepositoryCopy};
