//! Telling whether a model directory changed: model control mode `poll`
//! reloads a model when what its directory holds is no longer what it was
//! loaded from, and a reload keeps a version whose own files did not
//! change.

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsStr;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::repository::{CONFIG_FILENAME, CUSTOM_CONFIGS_DIRECTORY};

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
        walk(directory, Path::new(""), 0, &mut hasher, &|_| true);
        Self(hasher.finish())
    }

    /// The fingerprint of what version `version` of the model in
    /// `model_dir` loads from, as it is now: the directory's place, its
    /// version directory, and the model's files outside any version
    /// directory (label files, warm-up data, initial states), but not its
    /// configuration files, which a reload compares parsed instead. Another
    /// version coming or going leaves it as it was.
    pub fn of_version(model_dir: &Path, version: i64) -> Self {
        let own = version.to_string();
        let belongs = |name: &OsStr| {
            let name = name.to_string_lossy();
            let other_version =
                !name.starts_with('0') && name.bytes().all(|byte| byte.is_ascii_digit()) && name != own.as_str();
            !other_version && name != CONFIG_FILENAME && name != CUSTOM_CONFIGS_DIRECTORY
        };
        let mut hasher = DefaultHasher::new();
        model_dir.hash(&mut hasher);
        walk(model_dir, Path::new(""), 0, &mut hasher, &belongs);
        Self(hasher.finish())
    }
}

/// Hashes every entry under `directory`; at the top level, only those
/// whose name `top_level` accepts.
fn walk(
    directory: &Path,
    relative: &Path,
    depth: usize,
    hasher: &mut DefaultHasher,
    top_level: &dyn Fn(&OsStr) -> bool,
) {
    let mut entries: Vec<_> = match fs::read_dir(directory) {
        Ok(entries) => entries.filter_map(|entry| entry.ok()).map(|entry| entry.file_name()).collect(),
        Err(error) => {
            (relative, "unreadable", error.kind().to_string()).hash(hasher);
            return;
        }
    };
    // The order read_dir gives is the file system's, not a stable one.
    entries.sort();
    entries.retain(|name| depth > 0 || top_level(name));
    for name in entries {
        let path = directory.join(&name);
        let relative = relative.join(&name);
        match fs::metadata(&path) {
            Ok(metadata) => {
                let modified =
                    metadata.modified().ok().and_then(|time| time.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
                (&relative, metadata.is_dir(), metadata.len(), modified).hash(hasher);
                if metadata.is_dir() && depth < MAX_DEPTH {
                    walk(&path, &relative, depth + 1, hasher, top_level);
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

    #[test]
    fn a_version_changes_with_its_own_files_only() {
        let model = tempfile::tempdir().unwrap();
        for version in ["1", "2"] {
            fs::create_dir(model.path().join(version)).unwrap();
            fs::write(model.path().join(version).join("model.onnx"), b"onnx").unwrap();
        }
        fs::write(model.path().join("config.pbtxt"), b"max_batch_size: 8").unwrap();
        let first = DirectoryFingerprint::of_version(model.path(), 1);
        assert_ne!(first, DirectoryFingerprint::of_version(model.path(), 2));

        fs::create_dir(model.path().join("3")).unwrap();
        fs::write(model.path().join("2/model.onnx"), b"changed").unwrap();
        fs::write(model.path().join("config.pbtxt"), b"max_batch_size: 16").unwrap();
        fs::create_dir(model.path().join("configs")).unwrap();
        assert_eq!(DirectoryFingerprint::of_version(model.path(), 1), first, "others' files and configurations");

        fs::write(model.path().join("labels.txt"), b"cat").unwrap();
        let labelled = DirectoryFingerprint::of_version(model.path(), 1);
        assert_ne!(labelled, first, "a file of the whole model");
        fs::write(model.path().join("1/model.onnx"), b"new weights").unwrap();
        assert_ne!(DirectoryFingerprint::of_version(model.path(), 1), labelled, "its own file");

        // The same entries with the same times in another directory: a
        // model that moved to another repository.
        let (one, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for directory in [one.path(), other.path()] {
            fs::create_dir(directory.join("1")).unwrap();
            fs::write(directory.join("1/model.onnx"), b"onnx").unwrap();
            for entry in ["1/model.onnx", "1"] {
                fs::File::open(directory.join(entry)).unwrap().set_modified(when).unwrap();
            }
        }
        assert_eq!(DirectoryFingerprint::of(one.path()), DirectoryFingerprint::of(other.path()), "the same contents");
        assert_ne!(DirectoryFingerprint::of_version(one.path(), 1), DirectoryFingerprint::of_version(other.path(), 1));
    }
}
