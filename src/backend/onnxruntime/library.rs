//! Finding the ONNX Runtime shared library, which is loaded at run time
//! rather than linked, so one binary works with the CPU and the GPU builds.

use std::env;
use std::path::{Path, PathBuf};

/// The library file name of the supported ONNX Runtime release.
pub const LIBRARY_FILENAME: &str = "libonnxruntime.so.1.31.1";

/// Environment variable that names the library, as `ort` itself reads it.
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// Where `scripts/fetch-onnxruntime.sh` puts the library in a checkout.
const CHECKOUT_LIBRARY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/onnxruntime/lib");

/// Picks the library: an explicit path (from
/// `--backend-config=onnxruntime,library=PATH`), else `ORT_DYLIB_PATH`, else
/// the first that exists of `<exe dir>/../lib`, `<exe dir>` and the
/// checkout's `.deps/onnxruntime/lib`. The error lists where it looked and
/// how to get the library.
pub fn locate_library(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return existing(path, "--backend-config=onnxruntime,library");
    }
    if let Some(path) = env::var_os(LIBRARY_ENV).filter(|value| !value.is_empty()) {
        return existing(Path::new(&path), LIBRARY_ENV);
    }
    let candidates = default_candidates();
    candidates.iter().find(|path| path.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|path| path.display().to_string()).collect();
        format!(
            "the ONNX Runtime library {LIBRARY_FILENAME} was not found (looked in: {}). Fetch it from the \
             onnxruntime==1.31.1 wheel on PyPI with scripts/fetch-onnxruntime.sh, or point to it with \
             --backend-config=onnxruntime,library=PATH or {LIBRARY_ENV}=PATH",
            looked.join(", ")
        )
    })
}

fn existing(path: &Path, source: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(format!("the ONNX Runtime library '{}' given by {source} does not exist", path.display()))
    }
}

fn default_candidates() -> Vec<PathBuf> {
    let mut directories = Vec::new();
    if let Some(exe_dir) = env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        if let Some(prefix) = exe_dir.parent() {
            directories.push(prefix.join("lib"));
        }
        directories.push(exe_dir);
    }
    directories.push(PathBuf::from(CHECKOUT_LIBRARY_DIR));
    directories.into_iter().map(|directory| directory.join(LIBRARY_FILENAME)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_must_exist() {
        let error = locate_library(Some(Path::new("/nowhere/libonnxruntime.so"))).unwrap_err();
        assert!(error.contains("/nowhere/libonnxruntime.so") && error.contains("--backend-config"), "{error}");

        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(locate_library(Some(file.path())).unwrap(), file.path());
    }

    #[test]
    fn default_locations_include_the_checkout() {
        let candidates = default_candidates();
        assert!(candidates.iter().any(|path| path.starts_with(CHECKOUT_LIBRARY_DIR)));
        assert!(candidates.iter().all(|path| path.ends_with(LIBRARY_FILENAME)));
    }
}
