//! What a repository copy needs of a cloud bucket, whichever the cloud:
//! the objects under a prefix, and one object's bytes.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use blocking_reqwest::blocking::Client;

/// How long a connect, or a read of an answer, may stall before the call
/// fails (a download as a whole may take as long as it takes).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its key (its name in the bucket).
    pub key: String,
    /// What changes when its content does (S3's entity tag, GCS's
    /// generation).
    pub version: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Whether a segment of a key or repository path names a folder or file
/// the copy can hold: not empty, `.` or `..` (which would lead out of it).
pub fn is_path_segment(segment: &str) -> bool {
    !segment.is_empty() && segment != "." && segment != ".."
}

/// The key prefix the rest of a repository path names (its segments joined
/// by `/`, empty ones dropped); None when a segment is `.` or `..`.
pub fn key_prefix<'a>(segments: impl Iterator<Item = &'a str>) -> Option<String> {
    let segments: Vec<&str> = segments.filter(|segment| !segment.is_empty()).collect();
    segments.iter().all(|segment| is_path_segment(segment)).then(|| segments.join("/"))
}

/// A bucket, as a repository copy reads it. Blocking.
pub trait ObjectStore {
    /// Every object whose key starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, String>;

    /// Writes the object `key` to `destination`; returns its size.
    fn download(&self, key: &str, destination: &mut dyn Write) -> Result<u64, String>;
}

/// The blocking HTTP client the bucket and credential calls share. Make and
/// drop it off the async runtime's threads.
pub fn http_client() -> Result<Client, String> {
    crate::tls_crypto::use_ring();
    Client::builder()
        .timeout(STALL_TIMEOUT)
        .connect_timeout(STALL_TIMEOUT)
        .build()
        .map_err(|error| format!("cannot make an HTTP client for cloud storage: {error}"))
}

/// Writes `key`'s object to `path` through a hidden file beside it, so a
/// scan of the copy never sees half a file.
pub fn download_to(store: &dyn ObjectStore, key: &str, path: &Path) -> Result<u64, String> {
    let folder = path.parent().ok_or_else(|| format!("'{}' has no folder", path.display()))?;
    std::fs::create_dir_all(folder).map_err(|error| format!("cannot create '{}': {error}", folder.display()))?;
    let mut partial = tempfile::Builder::new()
        .prefix(".downloading-")
        .tempfile_in(folder)
        .map_err(|error| format!("cannot write into '{}': {error}", folder.display()))?;
    let size = store.download(key, partial.as_file_mut())?;
    partial.persist(path).map_err(|error| format!("cannot write '{}': {}", path.display(), error.error))?;
    Ok(size)
}
