//! Which cloud storage a repository path names (`s3://`, `gs://`,
//! `as://`), how its
//! requests are authorized, and a client of its bucket for one refresh.

use std::sync::Mutex;

use blocking_reqwest::blocking::Client;

use super::aws_credentials::AwsAccess;
use super::azure_client::{AzureClient, BlobAuthorization};
use super::azure_credentials::{AzureAccess, AzureAuthorization, AzureTokenCache};
use super::azure_path::{AZURE_SCHEME, AzurePath};
use super::gcp_credentials::{GcpCredentialCache, GcpCredentialSource};
use super::gcs_client::{GCS_ORIGIN, GcsClient};
use super::gcs_path::{GCS_SCHEME, GcsPath};
use super::object_store::ObjectStore;
use super::s3_client::S3Client;
use super::s3_path::{S3Path, is_s3_path};
use super::temporary_credentials::CredentialCache;

/// A repository's bucket.
pub enum CloudBucket {
    /// Amazon S3 or an S3-compatible service.
    S3 {
        /// Where the repository is.
        location: S3Path,
        /// What signs the requests.
        credentials: CredentialCache,
        /// The region requests are signed for, once S3 has said where the
        /// bucket lives.
        region: Mutex<String>,
    },
    /// Google Cloud Storage.
    Gcs {
        /// Where the repository is.
        location: GcsPath,
        /// The storage endpoint: Google's, or an emulator's
        /// (`STORAGE_EMULATOR_HOST`, `CLOUD_STORAGE_EMULATOR_ENDPOINT`).
        origin: String,
        /// The tokens requests carry.
        credentials: GcpCredentialCache,
    },
    /// Azure Blob Storage.
    Azure {
        /// Where the repository is.
        location: AzurePath,
        /// The blob endpoint and how requests are authorized.
        access: AzureAccess,
        /// A managed identity's tokens.
        tokens: AzureTokenCache,
    },
}

/// Whether `path` names a repository in cloud storage this server reads.
pub fn is_cloud_path(path: &str) -> bool {
    is_s3_path(path) || path.starts_with(GCS_SCHEME) || path.starts_with(AZURE_SCHEME)
}

impl CloudBucket {
    /// The bucket of a cloud repository path, its credentials found with
    /// `var` reading the environment.
    pub fn parse(path: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        if is_s3_path(path) {
            let access = AwsAccess::from_environment(&var);
            return Ok(Self::S3 {
                location: S3Path::parse(path)?,
                region: Mutex::new(access.region.clone()),
                credentials: CredentialCache::new(access),
            });
        }
        if path.starts_with(AZURE_SCHEME) {
            let location = AzurePath::parse(path)?;
            let access = AzureAccess::from_environment(&location.account, &var)?;
            return Ok(Self::Azure { location, access, tokens: AzureTokenCache::new() });
        }
        let location = GcsPath::parse(path)?;
        let nonblank = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let origin = match nonblank("STORAGE_EMULATOR_HOST").or_else(|| nonblank("CLOUD_STORAGE_EMULATOR_ENDPOINT")) {
            Some(host) if host.contains("://") => host,
            Some(host) => format!("http://{host}"),
            None => GCS_ORIGIN.to_string(),
        };
        let source = GcpCredentialSource::from_environment(&var)?;
        Ok(Self::Gcs { location, origin, credentials: GcpCredentialCache::new(source) })
    }

    /// The repository's object key prefix, without a trailing slash.
    pub fn prefix(&self) -> &str {
        match self {
            Self::S3 { location, .. } => &location.prefix,
            Self::Gcs { location, .. } => &location.prefix,
            Self::Azure { location, .. } => &location.prefix,
        }
    }

    /// The variable that names where copies go (Triton's).
    pub fn mount_directory_variable(&self) -> &'static str {
        match self {
            Self::S3 { .. } => "TRITON_AWS_MOUNT_DIRECTORY",
            Self::Gcs { .. } => "TRITON_GCS_MOUNT_DIRECTORY",
            Self::Azure { .. } => "TRITON_AZURE_MOUNT_DIRECTORY",
        }
    }

    /// How requests are authorized, for the log.
    pub fn describe(&self) -> String {
        match self {
            Self::S3 { credentials, .. } => {
                format!("credentials: {}; region {}", credentials.describe(), credentials.region())
            }
            Self::Gcs { origin, credentials, .. } => format!("credentials: {}; at {origin}", credentials.describe()),
            Self::Azure { access, .. } => format!("credentials: {}", access.describe()),
        }
    }

    /// A client of the bucket, with credentials current now.
    pub fn connect<'a>(&'a self, http: &'a Client) -> Result<Box<dyn ObjectStore + 'a>, String> {
        Ok(match self {
            Self::S3 { location, credentials, region } => {
                Box::new(S3Client::new(http, location, credentials.current(http)?, region))
            }
            Self::Gcs { location, origin, credentials } => {
                Box::new(GcsClient::new(http, origin.clone(), location.bucket.clone(), credentials.access_token(http)?))
            }
            Self::Azure { location, access, tokens } => {
                let authorization = match &access.authorization {
                    AzureAuthorization::SharedKey(key) => BlobAuthorization::SharedKey(key.clone()),
                    AzureAuthorization::ManagedIdentity { client_id, endpoint } => {
                        BlobAuthorization::Bearer(tokens.token(http, client_id.as_deref(), endpoint)?)
                    }
                    AzureAuthorization::Anonymous => BlobAuthorization::Anonymous,
                };
                let (account, container) = (location.account.clone(), location.container.clone());
                Box::new(AzureClient::new(http, access.blob_endpoint.clone(), account, container, authorization))
            }
        })
    }
}
