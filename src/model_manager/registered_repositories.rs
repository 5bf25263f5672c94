//! Repositories added while the server runs, each with the names some of
//! its folders serve under, as Triton's repository registration adds them:
//! SageMaker's multi-model endpoint registers each model archive this way
//! and loads its model under the name SageMaker gives it.

use super::*;
use crate::error::ErrorKind;

impl ModelManager {
    /// Adds the repository at `path`, its folders named in `renamed` serving
    /// under the names given (folder -> model name); the models load on
    /// request, as any model in mode `explicit`. Refused with
    /// ALREADY_EXISTS when `path` is a repository already, or one of the
    /// names is mapped already; with INVALID_ARGUMENT when `path` or a
    /// named folder is not a directory.
    pub fn register_repository(&self, path: &Path, renamed: BTreeMap<String, String>) -> Result<()> {
        self.check_control()?;
        let _one_at_a_time = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let shown = path.display();
        if !path.is_dir() {
            return Err(Error::invalid_argument(format!("failed to register '{shown}', repository not found")));
        }
        if let Some(folder) = renamed.keys().find(|folder| !path.join(folder).is_dir()) {
            return Err(Error::invalid_argument(format!(
                "failed to register '{shown}': it has no model folder '{folder}'"
            )));
        }
        let mut repositories = self.repositories.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if repositories.iter().any(|repository| repository.path == path) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("model repository '{shown}' has already been registered"),
            ));
        }
        let mapped =
            |name: &String| repositories.iter().any(|repository| repository.renamed.values().any(|n| n == name));
        if let Some(name) = renamed.values().find(|name| mapped(name)) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("failed to register '{name}', there is a conflicting mapping for '{name}'"),
            ));
        }
        repositories.push(ModelRepository { path: path.to_path_buf(), renamed });
        tracing::info!("Model repository registered: {shown}");
        Ok(())
    }

    /// Removes the repository registered at `path`; models loaded from it
    /// keep serving until they are unloaded, as in Triton. INVALID_ARGUMENT
    /// when no repository is registered there.
    pub fn unregister_repository(&self, path: &Path) -> Result<()> {
        self.check_control()?;
        let _one_at_a_time = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut repositories = self.repositories.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = repositories.len();
        repositories.retain(|repository| repository.path != path);
        if repositories.len() == count {
            return Err(Error::invalid_argument(format!(
                "failed to unregister '{}', repository not found",
                path.display()
            )));
        }
        tracing::info!("Model repository unregistered: {}", path.display());
        Ok(())
    }
}
