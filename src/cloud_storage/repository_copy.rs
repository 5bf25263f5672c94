//! A model repository in cloud storage, served from a local copy as Triton
//! serves one: the copy lives in a temporary folder (inside
//! `TRITON_AWS_MOUNT_DIRECTORY` or `TRITON_GCS_MOUNT_DIRECTORY` when set)
//! that is deleted when the server stops, and it is brought up to date
//! before the repository is read for a change (a load request, a poll).
//! Objects whose version (entity tag, generation) and size have not
//! changed are not downloaded again, so an unchanged model's files keep
//! their modification times and it does not reload.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::TempDir;

use super::cloud_bucket::CloudBucket;
use super::credential_file::credential_variables;
use super::object_store::{ObjectStore, StoredObject, download_to, http_client, is_path_segment};

/// What one refresh changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// Files downloaded (new or changed).
    pub downloaded: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files deleted because their objects are gone.
    pub removed: usize,
}

/// A cloud model repository and its local copy.
pub struct RepositoryCopy {
    uri: String,
    bucket: CloudBucket,
    local: PathBuf,
    /// The temporary folder, until [`RepositoryCopy::remove`].
    folder: Mutex<Option<TempDir>>,
    /// The version of each copied file (by path inside the copy); held
    /// for the whole of a refresh, so refreshes take turns.
    copied: Mutex<BTreeMap<String, String>>,
}

impl RepositoryCopy {
    /// Makes an empty copy folder for the repository at `uri`; nothing is
    /// downloaded before [`RepositoryCopy::refresh`].
    /// Credentials come from Triton's cloud credential file where it has
    /// an entry for `uri`, else from the environment (`var`).
    pub fn create(uri: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let from_file = credential_variables(uri, &var)?;
        let var = |name: &str| match from_file.get(name) {
            Some(value) => Some(value.clone()),
            None => var(name),
        };
        let bucket = CloudBucket::parse(uri, var)?;
        let mount_variable = bucket.mount_directory_variable();
        let mut builder = tempfile::Builder::new();
        builder.prefix("tritonrs-repository-");
        let folder = match var(mount_variable).filter(|path| !path.is_empty()) {
            Some(mount) => builder
                .tempdir_in(&mount)
                .map_err(|error| format!("cannot copy '{uri}' into {mount_variable}={mount}: {error}"))?,
            None => builder.tempdir().map_err(|error| format!("cannot make a folder to copy '{uri}' into: {error}"))?,
        };
        tracing::info!(repository = uri, "reading a model repository in cloud storage ({})", bucket.describe());
        Ok(Self {
            uri: uri.to_string(),
            bucket,
            local: folder.path().to_path_buf(),
            folder: Mutex::new(Some(folder)),
            copied: Mutex::new(BTreeMap::new()),
        })
    }

    /// The repository's path (`s3://...`, `gs://...`).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The local copy, a model repository folder.
    pub fn local_path(&self) -> &Path {
        &self.local
    }

    /// Brings the copy up to date with the bucket. On an error the copy
    /// may hold some of the new files and none is half written.
    pub fn refresh(&self) -> Result<Refreshed, String> {
        // The HTTP client is blocking and must not be made or dropped on
        // the async runtime's threads, so it lives on a thread of its own.
        let refreshed = std::thread::scope(|scope| {
            scope.spawn(|| self.refresh_here()).join().unwrap_or_else(|_| Err("the copy panicked".to_string()))
        })
        .map_err(|error| format!("cannot copy model repository '{}': {error}", self.uri))?;
        if refreshed != Refreshed::default() {
            tracing::info!(
                repository = %self.uri,
                copy = %self.local.display(),
                downloaded = refreshed.downloaded,
                bytes = refreshed.bytes,
                removed = refreshed.removed,
                "copied the S3 model repository"
            );
        }
        Ok(refreshed)
    }

    fn refresh_here(&self) -> Result<Refreshed, String> {
        let mut copied = self.copied.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let http = http_client()?;
        let client = self.bucket.connect(&http)?;
        self.copy_from(client.as_ref(), &mut copied)
    }

    fn copy_from(&self, client: &dyn ObjectStore, copied: &mut BTreeMap<String, String>) -> Result<Refreshed, String> {
        let prefix = match self.bucket.prefix() {
            "" => String::new(),
            prefix => format!("{prefix}/"),
        };
        let listed = client.list(&prefix)?;
        let (files, folders) = self.inside_copy(&prefix, listed);
        let mut refreshed = Refreshed::default();
        for (relative, object) in &files {
            let path = self.local.join(relative);
            let unchanged = copied.get(relative) == Some(&object.version)
                && fs::metadata(&path).is_ok_and(|metadata| metadata.len() == object.size);
            if unchanged {
                continue;
            }
            refreshed.bytes += download_to(client, &object.key, &path)?;
            refreshed.downloaded += 1;
            copied.insert(relative.clone(), object.version.clone());
        }
        for folder in &folders {
            let path = self.local.join(folder);
            fs::create_dir_all(&path).map_err(|error| format!("cannot create '{}': {error}", path.display()))?;
        }
        refreshed.removed = remove_stale(&self.local, Path::new(""), &files, &folders)?;
        copied.retain(|relative, _| files.contains_key(relative));
        Ok(refreshed)
    }

    /// The listed objects as files (path inside the copy -> object) and
    /// folder markers (keys ending in `/`, as S3 consoles make them). Keys
    /// that cannot be a path inside the copy are left out, with a warning.
    fn inside_copy(
        &self,
        prefix: &str,
        listed: Vec<StoredObject>,
    ) -> (BTreeMap<String, StoredObject>, BTreeSet<String>) {
        let mut files = BTreeMap::new();
        let mut folders = BTreeSet::new();
        for object in listed {
            let Some(relative) = object.key.strip_prefix(prefix) else { continue };
            let is_folder = relative.ends_with('/');
            let relative = relative.trim_end_matches('/');
            if relative.is_empty() {
                continue;
            }
            if !relative.split('/').all(is_path_segment) {
                tracing::warn!(repository = %self.uri, key = %object.key, "skipping an object whose key is not a file path");
                continue;
            }
            match is_folder {
                true => folders.insert(relative.to_string()),
                false => files.insert(relative.to_string(), object).is_none(),
            };
        }
        (files, folders)
    }

    /// Deletes the copy; the server calls it as it stops.
    pub fn remove(&self) {
        if let Some(folder) = self.folder.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
            && let Err(error) = folder.close()
        {
            tracing::warn!(copy = %self.local.display(), "cannot delete the copy of '{}': {error}", self.uri);
        }
    }
}

/// Deletes the files under `root/relative` that are no longer listed, and
/// the folders left empty that no marker keeps; returns how many files.
fn remove_stale(
    root: &Path,
    relative: &Path,
    files: &BTreeMap<String, StoredObject>,
    folders: &BTreeSet<String>,
) -> Result<usize, String> {
    let folder = root.join(relative);
    let entries = fs::read_dir(&folder).map_err(|error| format!("cannot read '{}': {error}", folder.display()))?;
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let inside = relative.join(entry.file_name());
        let Some(key) = inside.to_str() else { continue };
        let path = entry.path();
        if path.is_dir() {
            removed += remove_stale(root, &inside, files, folders)?;
            let empty = fs::read_dir(&path).is_ok_and(|mut entries| entries.next().is_none());
            if empty && !folders.contains(key) {
                fs::remove_dir(&path).map_err(|error| format!("cannot delete '{}': {error}", path.display()))?;
            }
        } else if !files.contains_key(key) {
            fs::remove_file(&path).map_err(|error| format!("cannot delete '{}': {error}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str) -> StoredObject {
        StoredObject { key: key.to_string(), version: "\"e\"".to_string(), size: 1 }
    }

    #[test]
    fn keys_become_paths_inside_the_copy() {
        let copy = RepositoryCopy::create("s3://bucket/repo", |_| None).unwrap();
        let (files, folders) = copy.inside_copy(
            "repo/",
            vec![
                object("repo/"),
                object("repo/simple/config.pbtxt"),
                object("repo/simple/1/"),
                object("repo/simple/2/model.onnx"),
                object("repo/evil/../../etc/passwd"),
                object("repo/double//slash"),
            ],
        );
        assert_eq!(files.keys().collect::<Vec<_>>(), ["simple/2/model.onnx", "simple/config.pbtxt"]);
        assert_eq!(folders.into_iter().collect::<Vec<_>>(), ["simple/1"]);
        let local = copy.local_path().to_path_buf();
        assert!(local.is_dir());
        copy.remove();
        assert!(!local.exists());
    }

    #[test]
    fn stale_files_and_empty_folders_go() {
        let root = tempfile::tempdir().unwrap();
        for file in ["kept/config.pbtxt", "kept/1/model.onnx", "gone/1/model.onnx", "kept/2/old.onnx"] {
            let path = root.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "x").unwrap();
        }
        fs::create_dir_all(root.path().join("marker/1")).unwrap();
        let files: BTreeMap<String, StoredObject> = ["kept/config.pbtxt", "kept/1/model.onnx"]
            .into_iter()
            .map(|file| (file.to_string(), object(file)))
            .collect();
        let folders: BTreeSet<String> = ["marker/1".to_string()].into();
        assert_eq!(remove_stale(root.path(), Path::new(""), &files, &folders).unwrap(), 2);
        assert!(root.path().join("kept/1/model.onnx").is_file());
        assert!(!root.path().join("gone").exists() && !root.path().join("kept/2").exists());
        assert!(root.path().join("marker/1").is_dir());
    }

    #[test]
    fn a_mount_directory_holds_the_copy() {
        let mount = tempfile::tempdir().unwrap();
        let mount_path = mount.path().to_str().unwrap().to_string();
        let copy = RepositoryCopy::create("s3://bucket", |name| {
            (name == "TRITON_AWS_MOUNT_DIRECTORY").then(|| mount_path.clone())
        })
        .unwrap();
        assert_eq!(copy.local_path().parent(), Some(mount.path()));
        let missing = RepositoryCopy::create("s3://bucket", |name| {
            (name == "TRITON_AWS_MOUNT_DIRECTORY").then(|| "/definitely/not/here".to_string())
        });
        assert!(missing.err().unwrap().contains("TRITON_AWS_MOUNT_DIRECTORY=/definitely/not/here"));
    }
}
