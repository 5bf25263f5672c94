//! The Triton model repository layout on disk: one directory per model
//! holding an optional `config.pbtxt` and numbered version directories.
//!
//! ```text
//! <repository>/<model>/config.pbtxt
//! <repository>/<model>/<version>/model.onnx
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::proto::inference::ModelVersionPolicy;
use crate::proto::inference::model_version_policy::PolicyChoice;

/// File name of a model's configuration inside its directory.
pub const CONFIG_FILENAME: &str = "config.pbtxt";

/// Directory of a model's custom configurations (`--model-config-name`).
pub const CUSTOM_CONFIGS_DIRECTORY: &str = "configs";

/// The configuration file of the model in `model_dir`, as Triton picks it:
/// with a custom configuration name (`--model-config-name=h100`),
/// `configs/h100.pbtxt` when it exists; otherwise `config.pbtxt` (which may
/// be missing: the configuration is then completed from the model file).
pub fn config_file(model_dir: &Path, custom_name: Option<&str>) -> PathBuf {
    custom_name
        .map(|name| model_dir.join(CUSTOM_CONFIGS_DIRECTORY).join(format!("{name}.pbtxt")))
        .filter(|custom| custom.is_file())
        .unwrap_or_else(|| model_dir.join(CONFIG_FILENAME))
}

/// A model repository: a directory of model folders, each serving under
/// its folder's name unless the repository was registered with other names
/// for some of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRepository {
    /// The directory.
    pub path: PathBuf,
    /// Folder name -> the model name it serves under, for the folders of a
    /// repository registered while the server runs with a name mapping (as
    /// SageMaker's multi-model endpoint registers each model archive).
    pub renamed: BTreeMap<String, String>,
}

impl From<PathBuf> for ModelRepository {
    fn from(path: PathBuf) -> Self {
        Self { path, renamed: BTreeMap::new() }
    }
}

/// A model directory found in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDirectory {
    /// The name it serves under: the directory's name, or the name its
    /// repository maps the directory to; with model namespacing, a model
    /// whose name other repositories use too serves under its directory's
    /// path, which only its own repository's ensembles name.
    pub name: String,
    /// The directory.
    pub path: PathBuf,
    /// The names its repository maps folders to (folder -> model name);
    /// empty for a repository without a mapping.
    pub folder_names: BTreeMap<String, String>,
    /// With model namespacing, its repository: the namespace it loads in.
    pub namespace: Option<PathBuf>,
    /// With model namespacing, the name of a model kept under its
    /// directory's path because other repositories have models of that
    /// name too.
    pub shared_name: Option<String>,
}

impl ModelDirectory {
    /// A directory of a repository that maps no folder.
    pub fn unmapped(name: impl Into<String>, path: PathBuf) -> Self {
        Self { name: name.into(), path, folder_names: BTreeMap::new(), namespace: None, shared_name: None }
    }

    /// Whether the model serves under a mapped name rather than its
    /// folder's; its configuration then takes [`Self::model_name`], as in
    /// Triton.
    pub fn renamed(&self) -> bool {
        self.folder().is_some_and(|folder| self.folder_names.contains_key(folder))
    }

    /// The model's name as clients and its configuration know it: the name
    /// it serves under, or the name it shares with other repositories'
    /// models.
    pub fn model_name(&self) -> &str {
        self.shared_name.as_deref().unwrap_or(&self.name)
    }

    fn folder(&self) -> Option<&str> {
        self.path.file_name().and_then(|folder| folder.to_str())
    }

    /// The model that a name in this model's configuration (an ensemble
    /// step's `model_name`) means: the mapped name when it is a folder of
    /// the same repository that serves under another name, so that an
    /// archive's ensemble runs the archive's own models; else the name.
    pub fn model_named(&self, name: &str) -> String {
        self.folder_names.get(name).cloned().unwrap_or_else(|| name.to_string())
    }
}

/// What scanning the repositories found.
#[derive(Debug, Default)]
pub struct RepositoryScan {
    /// Models found exactly once, ordered by name.
    pub models: Vec<ModelDirectory>,
    /// Names found in more than one repository, with every place they were
    /// found; Triton refuses to guess which one is meant, and so do we.
    pub duplicates: BTreeMap<String, Vec<PathBuf>>,
}

/// Lists the model directories of every repository, under the names their
/// repositories give them. A repository that cannot be read is an error;
/// hidden entries and plain files are skipped. With `namespacing`, a name
/// found in several repositories is no duplicate: each of its models
/// serves under its directory's path, and the ensembles of its repository
/// name it so.
pub fn scan_repositories(repositories: &[ModelRepository], namespacing: bool) -> Result<RepositoryScan, String> {
    // Each name's places, with the repository of each.
    let mut found: BTreeMap<String, Vec<(PathBuf, &ModelRepository)>> = BTreeMap::new();
    for repository in repositories {
        let shown = repository.path.display();
        let entries = fs::read_dir(&repository.path)
            .map_err(|error| format!("cannot read model repository '{shown}': {error}"))?;
        for entry in entries {
            let entry = entry.map_err(|error| format!("cannot read model repository '{shown}': {error}"))?;
            let Ok(folder) = entry.file_name().into_string() else {
                tracing::warn!(path = %entry.path().display(), "skipping a model directory whose name is not UTF-8");
                continue;
            };
            if folder.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let name = repository.renamed.get(&folder).cloned().unwrap_or(folder);
            found.entry(name).or_default().push((entry.path(), repository));
        }
    }
    let mut scan = RepositoryScan::default();
    if namespacing {
        // Per repository, its folders whose names other repositories use
        // too, and the names they serve under.
        let mut shared: BTreeMap<&Path, BTreeMap<String, String>> = BTreeMap::new();
        for places in found.values().filter(|places| places.len() > 1) {
            for (path, repository) in places {
                if let Some(folder) = path.file_name().and_then(|folder| folder.to_str()) {
                    let serving = path.display().to_string();
                    shared.entry(repository.path.as_path()).or_default().insert(folder.to_string(), serving);
                }
            }
        }
        for (name, places) in found {
            let several = places.len() > 1;
            for (path, repository) in places {
                let mut folder_names = repository.renamed.clone();
                folder_names.extend(shared.get(repository.path.as_path()).cloned().unwrap_or_default());
                let (serving_name, shared_name) =
                    if several { (path.display().to_string(), Some(name.clone())) } else { (name.clone(), None) };
                scan.models.push(ModelDirectory {
                    name: serving_name,
                    path,
                    folder_names,
                    namespace: Some(repository.path.clone()),
                    shared_name,
                });
            }
        }
        scan.models.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(scan);
    }
    for (name, mut places) in found {
        if places.len() == 1 {
            let (path, repository) = places.remove(0);
            let folder_names = repository.renamed.clone();
            scan.models.push(ModelDirectory { name, path, folder_names, namespace: None, shared_name: None });
        } else {
            let paths = places.into_iter().map(|(path, _)| path).collect();
            scan.duplicates.insert(name, paths);
        }
    }
    Ok(scan)
}

/// The version numbers present in a model directory: subdirectories named by
/// a positive decimal number without leading zeros, ascending. Other entries
/// are ignored, as Triton ignores them.
pub fn available_versions(model_dir: &Path) -> Result<Vec<i64>, String> {
    let entries = fs::read_dir(model_dir)
        .map_err(|error| format!("cannot read model directory '{}': {error}", model_dir.display()))?;
    let mut versions: Vec<i64> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('0') && name.bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|name| name.parse::<i64>().ok())
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// Versions a policy selects from those available, ascending, and the
/// versions it names that do not exist (only a `specific` policy names
/// versions).
pub fn select_versions(policy: Option<&ModelVersionPolicy>, available: &[i64]) -> (Vec<i64>, Vec<i64>) {
    match policy.and_then(|policy| policy.policy_choice.as_ref()) {
        Some(PolicyChoice::All(_)) => (available.to_vec(), Vec::new()),
        Some(PolicyChoice::Specific(specific)) => {
            let mut wanted = specific.versions.clone();
            wanted.sort_unstable();
            wanted.dedup();
            wanted.into_iter().partition(|version| available.contains(version))
        }
        Some(PolicyChoice::Latest(latest)) => {
            let keep = (latest.num_versions as usize).min(available.len());
            (available[available.len() - keep..].to_vec(), Vec::new())
        }
        None => (available.last().copied().into_iter().collect(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inference::model_version_policy::{All, Latest, Specific};

    fn policy(choice: PolicyChoice) -> ModelVersionPolicy {
        ModelVersionPolicy { policy_choice: Some(choice) }
    }

    #[test]
    fn a_custom_configuration_is_used_where_it_exists() {
        let model = tempfile::tempdir().unwrap();
        fs::create_dir(model.path().join("configs")).unwrap();
        fs::write(model.path().join("configs/h100.pbtxt"), "max_batch_size: 4").unwrap();
        assert_eq!(config_file(model.path(), Some("h100")), model.path().join("configs/h100.pbtxt"));
        assert_eq!(config_file(model.path(), Some("v100")), model.path().join("config.pbtxt"));
        assert_eq!(config_file(model.path(), None), model.path().join("config.pbtxt"));
    }

    #[test]
    fn version_policies_select_like_triton() {
        let available = [1, 2, 5];
        assert_eq!(select_versions(None, &available), (vec![5], vec![]));
        assert_eq!(
            select_versions(Some(&policy(PolicyChoice::Latest(Latest { num_versions: 2 }))), &available),
            (vec![2, 5], vec![])
        );
        assert_eq!(
            select_versions(Some(&policy(PolicyChoice::Latest(Latest { num_versions: 9 }))), &available),
            (vec![1, 2, 5], vec![])
        );
        assert_eq!(select_versions(Some(&policy(PolicyChoice::All(All {}))), &available), (vec![1, 2, 5], vec![]));
        let specific = policy(PolicyChoice::Specific(Specific { versions: vec![5, 3, 1] }));
        assert_eq!(select_versions(Some(&specific), &available), (vec![1, 5], vec![3]));
        assert_eq!(select_versions(None, &[]), (vec![], vec![]));
    }

    #[test]
    fn scans_models_versions_and_duplicates() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        for dir in ["a/1", "a/3", "a/03", "a/x", "a/12", "b/1", ".hidden/1"] {
            fs::create_dir_all(first.path().join(dir)).unwrap();
        }
        fs::write(first.path().join("README.md"), "not a model").unwrap();
        fs::create_dir_all(second.path().join("b/2")).unwrap();
        fs::create_dir_all(second.path().join("c")).unwrap();

        let scan =
            scan_repositories(&[first.path().to_path_buf().into(), second.path().to_path_buf().into()], false).unwrap();
        let names: Vec<&str> = scan.models.iter().map(|model| model.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(scan.duplicates["b"].len(), 2);
        assert!(scan.models.iter().all(|model| !model.renamed()));
        assert_eq!(available_versions(&first.path().join("a")).unwrap(), vec![1, 3, 12]);
        assert_eq!(available_versions(&second.path().join("c")).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn with_namespacing_each_repository_keeps_its_models_of_a_shared_name() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        for dir in ["shared/1", "pipeline/1", "only_first/1"] {
            fs::create_dir_all(first.path().join(dir)).unwrap();
        }
        fs::create_dir_all(second.path().join("shared/1")).unwrap();
        let repositories = [first.path().to_path_buf().into(), second.path().to_path_buf().into()];
        let scan = scan_repositories(&repositories, true).unwrap();
        assert!(scan.duplicates.is_empty());
        let shared_first = first.path().join("shared").display().to_string();
        let shared_second = second.path().join("shared").display().to_string();
        let found = |name: &str| scan.models.iter().find(|model| model.name == name).unwrap();
        // Both `shared` models load, each under its directory's path, with
        // its repository as its namespace and `shared` as its model name.
        for (serving, repository) in [(&shared_first, first.path()), (&shared_second, second.path())] {
            let model = found(serving);
            assert_eq!((model.model_name(), model.namespace.as_deref()), ("shared", Some(repository)));
        }
        // The first repository's ensembles run its own `shared`.
        let pipeline = found("pipeline");
        assert_eq!(pipeline.model_name(), "pipeline");
        assert_eq!(pipeline.model_named("shared"), shared_first);
        assert_eq!(pipeline.model_named("only_first"), "only_first");
        assert_eq!(scan.models.len(), 4);
    }

    #[test]
    fn with_namespacing_a_registered_mapping_still_names_its_folders() {
        let archive = tempfile::tempdir().unwrap();
        fs::create_dir_all(archive.path().join("model/1")).unwrap();
        let renamed = BTreeMap::from([("model".to_string(), "resnet.tar.gz".to_string())]);
        let registered = ModelRepository { path: archive.path().to_path_buf(), renamed };
        let scan = scan_repositories(&[registered], true).unwrap();
        let model = &scan.models[0];
        assert_eq!(
            (model.name.as_str(), model.model_name(), model.renamed()),
            ("resnet.tar.gz", "resnet.tar.gz", true)
        );
    }

    #[test]
    fn a_registered_mapping_renames_its_folders_only() {
        let plain = tempfile::tempdir().unwrap();
        let archive = tempfile::tempdir().unwrap();
        fs::create_dir_all(plain.path().join("model/1")).unwrap();
        for dir in ["model/1", "helper/1"] {
            fs::create_dir_all(archive.path().join(dir)).unwrap();
        }
        let renamed = BTreeMap::from([("model".to_string(), "resnet.tar.gz".to_string())]);
        let registered = ModelRepository { path: archive.path().to_path_buf(), renamed };
        let scan = scan_repositories(&[plain.path().to_path_buf().into(), registered], false).unwrap();
        let found: Vec<(&str, &Path, bool)> =
            scan.models.iter().map(|model| (model.name.as_str(), model.path.as_path(), model.renamed())).collect();
        let (model, helper) = (archive.path().join("model"), archive.path().join("helper"));
        let plain_model = plain.path().join("model");
        assert_eq!(
            found,
            [
                ("helper", helper.as_path(), false),
                ("model", plain_model.as_path(), false),
                ("resnet.tar.gz", model.as_path(), true)
            ]
        );
        assert!(scan.duplicates.is_empty());
        let archive_model = &scan.models[2];
        assert_eq!(
            (archive_model.model_named("model"), archive_model.model_named("helper")),
            ("resnet.tar.gz".to_string(), "helper".to_string())
        );
    }

    #[test]
    fn missing_repository_is_an_error() {
        let error = scan_repositories(&[PathBuf::from("/definitely/not/here").into()], false).unwrap_err();
        assert!(error.contains("/definitely/not/here"), "{error}");
    }
}
