//! Telling whether a model directory changed: model control mode `poll`
//! reloads a model when what its directory holds is no longer what it was
//! loaded from.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::UNIX_EPOCH;

/// How deep a model directory is walked: version directories and their
/// files sit two levels down; a symlink loop stops here.
const MAX_DEPTH: usize = 8;

/// A digest of every file and directory under a model directory: its path
/// there, kind, size and modification time. Editing, adding, removing or
/// replacing a file changes it; so does a file that cannot be read, until it
/// can. Symbolic links are followed (Kubernetes mounts ConfigMaps through
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryFingerprint(u64);

impl DirectoryFingerprint {
    /// The fingerprint of `directory` as it is now.
    pub fn of(directory: &Path) -> Self {
        let mut hasher = DefaultHasher::new();
        walk(directory, Path::new(""), 0, &mut hasher);
        Self(hasher.finish())
    }
}

fn walk(directory: &Path, relative: &Path, depth: usize, hasher: &mut DefaultHasher) {
    let mut entries: Vec<_> = match fs::read_dir(directory) {
        Ok(entries) => entries.filter_map(|entry| entry.ok()).map(|entry| entry.file_name()).collect(),
        Err(error) => {
            (relative, "unreadable", error.kind().to_string()).hash(hasher);
            return;
        }
    };
    // The order read_dir gives is the file system's, not a stable one.
    entries.sort();
    for name in entries {
        let path = directory.join(&name);
        let relative = relative.join(&name);
        match fs::metadata(&path) {
            Ok(metadata) => {
                let modified =
                    metadata.modified().ok().and_then(|time| time.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
                (&relative, metadata.is_dir(), metadata.len(), modified).hash(hasher);
                if metadata.is_dir() && depth < MAX_DEPTH {
                    walk(&path, &relative, depth + 1, hasher);
                }
            }
            Err(error) => (&relative, "unreadable", error.kind().to_string()).hash(hasher),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn changes_to_files_and_versions_change_the_fingerprint() {
        let model = tempfile::tempdir().unwrap();
        fs::create_dir(model.path().join("1")).unwrap();
        fs::write(model.path().join("1/model.onnx"), b"onnx").unwrap();
        fs::write(model.path().join("config.pbtxt"), b"max_batch_size: 8").unwrap();
        let loaded = DirectoryFingerprint::of(model.path());
        assert_eq!(DirectoryFingerprint::of(model.path()), loaded, "nothing changed");

        // Same size, later modification time: an edit in place.
        let config = fs::File::options().write(true).open(model.path().join("config.pbtxt")).unwrap();
        config.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
        let edited = DirectoryFingerprint::of(model.path());
        assert_ne!(edited, loaded);

        fs::create_dir(model.path().join("2")).unwrap();
        let versioned = DirectoryFingerprint::of(model.path());
        assert_ne!(versioned, edited);
        fs::remove_dir(model.path().join("2")).unwrap();
        assert_eq!(DirectoryFingerprint::of(model.path()), edited, "back as it was");
    }
}
