//! A model directory written from the files a load request sent (Triton's
//! `file:<version>/<file name>` parameters): the model loads from it in
//! place of its directory in the repositories, and it is removed once the
//! model no longer loads from it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::repository::ModelDirectory;

/// A temporary model directory holding a load request's files. Dropping it
/// removes the directory; the model's instances have read what they need
/// by then, as they do from a repository's directory at load.
#[derive(Debug)]
pub(super) struct UploadedModel {
    directory: tempfile::TempDir,
}

impl UploadedModel {
    /// Writes `files` (paths inside the model directory, checked to stay in
    /// it) into a new directory under the system's temporary directory
    /// (`TMPDIR`). A file whose path another file's path passes through is
    /// refused, naming both.
    pub(super) fn write(model: &str, files: &BTreeMap<PathBuf, Bytes>) -> Result<Self> {
        for path in files.keys() {
            if let Some(parent) = path.ancestors().skip(1).find(|ancestor| files.contains_key(*ancestor)) {
                return Err(Error::invalid_argument(format!(
                    "load of model '{model}': the file '{}' is sent, and so is '{}' inside it as a directory",
                    parent.display(),
                    path.display()
                )));
            }
        }
        let cannot = |what: &str, path: &Path, error: std::io::Error| {
            Error::internal(format!("load of model '{model}': cannot {what} '{}': {error}", path.display()))
        };
        let temporary = std::env::temp_dir();
        let directory = tempfile::Builder::new()
            .prefix("tritonrs-model-")
            .tempdir_in(&temporary)
            .map_err(|error| cannot("create a model directory in", &temporary, error))?;
        for (path, contents) in files {
            let target = directory.path().join(path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|error| cannot("create the directory", parent, error))?;
            }
            fs::write(&target, contents).map_err(|error| cannot("write the model file", &target, error))?;
        }
        Ok(Self { directory })
    }

    /// The model directory.
    pub(super) fn path(&self) -> &Path {
        self.directory.path()
    }

    /// The directory as model `name`'s, to load it from.
    pub(super) fn directory(&self, name: &str) -> ModelDirectory {
        ModelDirectory::unmapped(name, self.path().to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &'static [u8])]) -> BTreeMap<PathBuf, Bytes> {
        entries.iter().map(|(path, contents)| (PathBuf::from(path), Bytes::from_static(contents))).collect()
    }

    #[test]
    fn writes_the_files_and_removes_them_when_dropped() {
        let uploaded =
            UploadedModel::write("m", &files(&[("1/model.onnx", b"onnx"), ("labels.txt", b"a\nb")])).unwrap();
        let path = uploaded.path().to_path_buf();
        assert_eq!(fs::read(path.join("1/model.onnx")).unwrap(), b"onnx");
        assert_eq!(fs::read_to_string(path.join("labels.txt")).unwrap(), "a\nb");
        drop(uploaded);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_used_as_a_directory_is_refused() {
        let error = UploadedModel::write("m", &files(&[("1", b"x"), ("1/model.onnx", b"onnx")])).unwrap_err();
        assert!(error.message().contains("the file '1' is sent, and so is '1/model.onnx' inside it"), "{error}");
    }
}
