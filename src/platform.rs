//! The conventions of the platforms that run model servers as containers:
//! where they mount the model repository and which port and routes they
//! expect, so the same image runs unchanged on each.
//!
//! | Platform | Model repository | Port and routes |
//! | --- | --- | --- |
//! | any | `MODEL_REPOSITORY` | flags, `TRITONRS_*` variables |
//! | Oracle Cloud model deployment | `/opt/ds/model/deployed_model` | `/health`, `/predict`; `/v2/...` with `CONTAINER_TYPE=TRITON` |
//! | Azure Machine Learning | `$AZUREML_MODEL_DIR` | set in the deployment's `inference_config` |
//! | KServe | `/mnt/models` | flags in the ServingRuntime |
//! | Vertex AI | `$AIP_STORAGE_URI` when it is a local path | `AIP_HEALTH_ROUTE`, `AIP_PREDICT_ROUTE` on `AIP_HTTP_PORT` (`--allow-vertex-ai`, on under `AIP_MODE=PREDICTION`) |
//! | Amazon SageMaker | `/opt/ml/model`; `/opt/ml/models/<hash>/model` per archive (`SAGEMAKER_MULTI_MODEL=true`) | `/ping`, `/invocations`, `/models` on 8080 (`--allow-sagemaker`, or `serve`); `SAGEMAKER_TRITON_*` |

use std::fs;
use std::path::{Path, PathBuf};

/// Where SageMaker puts the model artifact.
pub const SAGEMAKER_MODEL_DIRECTORY: &str = "/opt/ml/model";

/// Where SageMaker unpacks the archives of a multi-model endpoint, one
/// `<hash>/model` folder each.
pub const SAGEMAKER_MULTI_MODEL_DIRECTORY: &str = "/opt/ml/models";

/// The environment variable that names the model repository directly.
pub const MODEL_REPOSITORY_ENV: &str = "MODEL_REPOSITORY";

/// Where platforms mount model artifacts at fixed paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformMounts {
    /// Oracle Cloud model deployment: the unzipped model artifact (read-only).
    pub oci: PathBuf,
    /// KServe: what the storage initializer downloaded.
    pub kserve: PathBuf,
    /// Amazon SageMaker: the unpacked model artifact.
    pub sagemaker: PathBuf,
}

impl Default for PlatformMounts {
    fn default() -> Self {
        Self {
            oci: PathBuf::from("/opt/ds/model/deployed_model"),
            kserve: PathBuf::from("/mnt/models"),
            sagemaker: PathBuf::from(SAGEMAKER_MODEL_DIRECTORY),
        }
    }
}

/// A model repository found without `--model-repository`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredRepository {
    /// The repository directory.
    pub path: PathBuf,
    /// Which convention pointed to it, for the log.
    pub reason: String,
}

/// An environment variable's value, trimmed; `None` when it is unset or
/// blank, as the platforms' scripts test variables with `-n`.
pub fn nonblank(value: Option<String>) -> Option<String> {
    value.map(|value| value.trim().to_string()).filter(|value| !value.is_empty())
}

/// Whether `SAGEMAKER_MULTI_MODEL` (read through `var`) asks for a
/// SageMaker multi-model endpoint, as Triton's serve script tests it.
pub fn sagemaker_multi_model(var: impl Fn(&str) -> Option<String>) -> bool {
    nonblank(var("SAGEMAKER_MULTI_MODEL")).is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// Finds the model repository from the environment and the platforms'
/// mounts, in this order: `MODEL_REPOSITORY` (a folder or a cloud
/// storage path), Oracle's mount, Azure ML's `AZUREML_MODEL_DIR`, KServe's
/// mount, Vertex AI's `AIP_STORAGE_URI` (a local path or a cloud storage
/// path), and SageMaker's mount. `var` reads environment
/// variables.
pub fn discover_model_repository(
    var: impl Fn(&str) -> Option<String>,
    mounts: &PlatformMounts,
) -> Result<DiscoveredRepository, String> {
    let var = |name: &str| nonblank(var(name));
    if let Some(path) = var(MODEL_REPOSITORY_ENV) {
        let path = PathBuf::from(path);
        if !path.is_dir() && !is_cloud(&path) {
            return Err(format!("{MODEL_REPOSITORY_ENV} names '{}', which is not a directory", path.display()));
        }
        return Ok(DiscoveredRepository { path, reason: format!("from {MODEL_REPOSITORY_ENV}") });
    }
    let candidates = [
        (Some(mounts.oci.clone()), "the Oracle Cloud model deployment mount"),
        (var("AZUREML_MODEL_DIR").map(PathBuf::from), "AZUREML_MODEL_DIR (Azure Machine Learning)"),
        (Some(mounts.kserve.clone()), "the KServe model mount"),
        (var("AIP_STORAGE_URI").and_then(|uri| storage_path(&uri)), "AIP_STORAGE_URI (Vertex AI)"),
        (Some(mounts.sagemaker.clone()), "the SageMaker model mount"),
    ];
    for (path, source) in candidates {
        let Some(path) = path.filter(|path| path.is_dir() || is_cloud(path)) else { continue };
        if is_cloud(&path) {
            return Ok(DiscoveredRepository { path, reason: format!("from {source}") });
        }
        let repository = repository_within(&path);
        let reason =
            if repository == path { format!("from {source}") } else { format!("from {source} ({})", path.display()) };
        return Ok(DiscoveredRepository { path: repository, reason });
    }
    Err(format!(
        "no model repository: pass --model-repository=PATH or set {MODEL_REPOSITORY_ENV}; nothing was found at {}, \
         in AZUREML_MODEL_DIR, at {}, in AIP_STORAGE_URI or at {}",
        mounts.oci.display(),
        mounts.kserve.display(),
        mounts.sagemaker.display()
    ))
}

/// A `file://` URI or absolute path as a path, and a cloud storage path
/// (`s3://`, `gs://`, `as://`) as it is; None for anything else.
fn storage_path(uri: &str) -> Option<PathBuf> {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    (path.starts_with('/') || crate::cloud_storage::is_cloud_path(uri)).then(|| PathBuf::from(path))
}

/// Whether `path` names a repository in cloud storage, which the server
/// copies rather than finds on disk.
fn is_cloud(path: &Path) -> bool {
    path.to_str().is_some_and(crate::cloud_storage::is_cloud_path)
}

/// The repository inside a platform's model directory: its
/// `model_repository/` folder (how Oracle's Triton walkthrough zips the
/// artifact), the directory itself when it holds models, or its only
/// subdirectory when that does (how Azure ML mounts a registered folder).
pub fn repository_within(directory: &Path) -> PathBuf {
    let nested = directory.join("model_repository");
    if nested.is_dir() {
        return nested;
    }
    if holds_models(directory) {
        return directory.to_path_buf();
    }
    let subdirectories: Vec<PathBuf> = fs::read_dir(directory)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|path| path.is_dir()).collect())
        .unwrap_or_default();
    match subdirectories.as_slice() {
        [only] if holds_models(only) => only.clone(),
        [only] if only.join("model_repository").is_dir() => only.join("model_repository"),
        _ => directory.to_path_buf(),
    }
}

/// Whether a directory looks like a model repository: some subdirectory is
/// a model (a config.pbtxt or a numbered version directory).
fn holds_models(directory: &Path) -> bool {
    let Ok(entries) = fs::read_dir(directory) else { return false };
    entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|path| path.is_dir()).any(|model| {
        model.join(crate::repository::CONFIG_FILENAME).is_file()
            || crate::repository::available_versions(&model).is_ok_and(|versions| !versions.is_empty())
    })
}

/// Ports and routes that Vertex AI sets for a custom container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VertexSettings {
    /// `AIP_MODE=PREDICTION`: the container serves a Vertex AI endpoint.
    pub prediction: bool,
    /// `AIP_HTTP_PORT`.
    pub http_port: Option<u16>,
    /// `AIP_HEALTH_ROUTE`.
    pub health_route: Option<String>,
    /// `AIP_PREDICT_ROUTE`.
    pub predict_route: Option<String>,
}

impl VertexSettings {
    /// Reads the `AIP_*` variables.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let http_port = var("AIP_HTTP_PORT")
            .map(|port| port.trim().parse::<u16>().map_err(|_| format!("AIP_HTTP_PORT '{port}' is not a port number")))
            .transpose()?;
        Ok(Self {
            prediction: var("AIP_MODE").is_some_and(|mode| mode.trim() == "PREDICTION"),
            http_port,
            health_route: var("AIP_HEALTH_ROUTE"),
            predict_route: var("AIP_PREDICT_ROUTE"),
        })
    }
}

/// How SageMaker's `/ping` judges health (`SAGEMAKER_TRITON_PING_MODE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PingMode {
    /// Healthy when the server is ready (every model loaded).
    #[default]
    Ready,
    /// Healthy while the server runs.
    Live,
}

/// What SageMaker's `/invocations` runs (`SAGEMAKER_TRITON_INFERENCE_TYPE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InvocationKind {
    /// A KServe v2 inference request (JSON, or JSON and binary data).
    #[default]
    Infer,
    /// A request of Triton's generate extension.
    Generate,
    /// The same, answered as a server-sent event.
    GenerateStream,
}

/// The settings Triton's SageMaker endpoint reads from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SageMakerSettings {
    /// `SAGEMAKER_TRITON_DEFAULT_MODEL_NAME`: the model `/invocations`
    /// runs; without it, the repository's only model.
    pub model: Option<String>,
    /// `SAGEMAKER_TRITON_OVERRIDE_PING_MODE` or `SAGEMAKER_TRITON_PING_MODE`,
    /// else `live` on a multi-model endpoint
    /// (`SAGEMAKER_MULTI_MODEL=true`), which starts with no model, and
    /// `ready` otherwise.
    pub ping_mode: PingMode,
    /// `SAGEMAKER_TRITON_INFERENCE_TYPE`.
    pub invocation: InvocationKind,
}

impl SageMakerSettings {
    /// Reads the `SAGEMAKER_TRITON_*` variables; a value Triton refuses is
    /// an error.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| nonblank(var(name));
        let multi_model = sagemaker_multi_model(var);
        // Triton's serve script lets SAGEMAKER_TRITON_OVERRIDE_PING_MODE
        // replace the mode it would choose.
        let ping_variable = ["SAGEMAKER_TRITON_OVERRIDE_PING_MODE", "SAGEMAKER_TRITON_PING_MODE"]
            .into_iter()
            .find(|name| var(name).is_some())
            .unwrap_or("SAGEMAKER_TRITON_PING_MODE");
        let ping_mode = match var(ping_variable).as_deref() {
            None if multi_model => PingMode::Live,
            None | Some("ready") => PingMode::Ready,
            Some("live") => PingMode::Live,
            Some(other) => return Err(format!("{ping_variable} '{other}': must be ready or live")),
        };
        let invocation = match var("SAGEMAKER_TRITON_INFERENCE_TYPE").as_deref() {
            None | Some("infer") => InvocationKind::Infer,
            Some("generate") => InvocationKind::Generate,
            Some("generate_stream") => InvocationKind::GenerateStream,
            Some(other) => {
                return Err(format!(
                    "SAGEMAKER_TRITON_INFERENCE_TYPE '{other}': must be one of infer, generate, generate_stream"
                ));
            }
        };
        Ok(Self { model: var("SAGEMAKER_TRITON_DEFAULT_MODEL_NAME"), ping_mode, invocation })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn model(repository: &Path, name: &str) {
        fs::create_dir_all(repository.join(name).join("1")).unwrap();
    }

    fn env(pairs: &[(&str, &Path)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(key, value)| (key.to_string(), value.display().to_string())).collect();
        move |key| map.get(key).cloned()
    }

    fn mounts(root: &Path) -> PlatformMounts {
        PlatformMounts {
            oci: root.join("opt/ds/model/deployed_model"),
            kserve: root.join("mnt/models"),
            sagemaker: root.join("opt/ml/model"),
        }
    }

    #[test]
    fn model_repository_variable_comes_first() {
        let root = tempfile::tempdir().unwrap();
        let explicit = root.path().join("explicit");
        model(&explicit, "a");
        model(&mounts(root.path()).kserve, "b");
        let found = discover_model_repository(env(&[("MODEL_REPOSITORY", &explicit)]), &mounts(root.path())).unwrap();
        assert_eq!(found, DiscoveredRepository { path: explicit, reason: "from MODEL_REPOSITORY".into() });

        let missing = root.path().join("missing");
        let error =
            discover_model_repository(env(&[("MODEL_REPOSITORY", &missing)]), &mounts(root.path())).unwrap_err();
        assert!(error.contains("not a directory"), "{error}");

        let bucket = PathBuf::from("s3://bucket/repository");
        let found = discover_model_repository(env(&[("MODEL_REPOSITORY", &bucket)]), &mounts(root.path())).unwrap();
        assert_eq!(found.path, bucket);
    }

    #[test]
    fn platform_mounts_in_order() {
        let root = tempfile::tempdir().unwrap();
        let mounts = mounts(root.path());
        let azure = root.path().join("azureml/models");
        // Azure ML mounts a registered folder inside AZUREML_MODEL_DIR.
        model(&azure.join("wine_repository"), "wine");
        model(&mounts.kserve, "kserve_model");
        let found = discover_model_repository(env(&[("AZUREML_MODEL_DIR", &azure)]), &mounts).unwrap();
        assert_eq!(found.path, azure.join("wine_repository"));
        assert!(found.reason.contains("AZUREML_MODEL_DIR"), "{}", found.reason);

        // Oracle's mount wins over both, and its model_repository/ folder is used.
        model(&mounts.oci.join("model_repository"), "simple");
        let found = discover_model_repository(env(&[("AZUREML_MODEL_DIR", &azure)]), &mounts).unwrap();
        assert_eq!(found.path, mounts.oci.join("model_repository"));
        assert!(found.reason.contains("Oracle"), "{}", found.reason);
    }

    #[test]
    fn kserve_and_vertex_mounts() {
        let root = tempfile::tempdir().unwrap();
        let mounts = mounts(root.path());
        let vertex = root.path().join("vertex");
        model(&vertex, "m");
        let uri = PathBuf::from(format!("file://{}", vertex.display()));
        let found = discover_model_repository(env(&[("AIP_STORAGE_URI", &uri)]), &mounts).unwrap();
        assert_eq!(found.path, vertex);
        // Vertex AI's usual case: the model in a bucket, copied by the server.
        let remote = PathBuf::from("gs://bucket/models");
        let found = discover_model_repository(env(&[("AIP_STORAGE_URI", &remote)]), &mounts).unwrap();
        assert_eq!(found, DiscoveredRepository { path: remote, reason: "from AIP_STORAGE_URI (Vertex AI)".into() });
        let other = PathBuf::from("https://example.com/models");
        assert!(discover_model_repository(env(&[("AIP_STORAGE_URI", &other)]), &mounts).is_err());

        model(&mounts.kserve, "m");
        let found = discover_model_repository(env(&[]), &mounts).unwrap();
        assert_eq!((found.path, found.reason.contains("KServe")), (mounts.kserve, true));
    }

    #[test]
    fn the_sagemaker_mount_comes_last() {
        let root = tempfile::tempdir().unwrap();
        let mounts = mounts(root.path());
        model(&mounts.sagemaker, "m");
        let found = discover_model_repository(env(&[]), &mounts).unwrap();
        assert_eq!((found.path, found.reason.contains("SageMaker")), (mounts.sagemaker.clone(), true));
        model(&mounts.kserve, "k");
        assert_eq!(discover_model_repository(env(&[]), &mounts).unwrap().path, mounts.kserve);
    }

    #[test]
    fn sagemaker_settings_take_tritons_values_only() {
        let settings = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            SageMakerSettings::from_env(move |key| map.get(key).cloned())
        };
        assert_eq!(settings(&[]).unwrap(), SageMakerSettings::default());
        let chosen = settings(&[
            ("SAGEMAKER_TRITON_DEFAULT_MODEL_NAME", "simple"),
            ("SAGEMAKER_TRITON_PING_MODE", "live"),
            ("SAGEMAKER_TRITON_INFERENCE_TYPE", "generate_stream"),
        ])
        .unwrap();
        let expected = SageMakerSettings {
            model: Some("simple".into()),
            ping_mode: PingMode::Live,
            invocation: InvocationKind::GenerateStream,
        };
        assert_eq!(chosen, expected);
        let error = settings(&[("SAGEMAKER_TRITON_INFERENCE_TYPE", "predict")]).unwrap_err();
        assert!(error.contains("must be one of infer, generate, generate_stream"), "{error}");
        assert!(settings(&[("SAGEMAKER_TRITON_PING_MODE", "sometimes")]).is_err());
        assert_eq!(settings(&[("SAGEMAKER_MULTI_MODEL", "true")]).unwrap().ping_mode, PingMode::Live);
        let asked = settings(&[("SAGEMAKER_MULTI_MODEL", "true"), ("SAGEMAKER_TRITON_PING_MODE", "ready")]);
        assert_eq!(asked.unwrap().ping_mode, PingMode::Ready);
        let overridden = settings(&[
            ("SAGEMAKER_MULTI_MODEL", "true"),
            ("SAGEMAKER_TRITON_PING_MODE", "live"),
            ("SAGEMAKER_TRITON_OVERRIDE_PING_MODE", "ready"),
        ]);
        assert_eq!(overridden.unwrap().ping_mode, PingMode::Ready);
        let error = settings(&[("SAGEMAKER_TRITON_OVERRIDE_PING_MODE", "never")]).unwrap_err();
        assert!(error.contains("SAGEMAKER_TRITON_OVERRIDE_PING_MODE 'never'"), "{error}");
    }

    #[test]
    fn nothing_found_explains_where_it_looked() {
        let root = tempfile::tempdir().unwrap();
        let error = discover_model_repository(env(&[]), &mounts(root.path())).unwrap_err();
        assert!(error.contains("--model-repository") && error.contains("deployed_model"), "{error}");
    }

    #[test]
    fn vertex_port_must_be_a_number() {
        let settings = VertexSettings::from_env(|key| (key == "AIP_HTTP_PORT").then(|| "8080".to_string())).unwrap();
        assert_eq!(settings.http_port, Some(8080));
        assert!(VertexSettings::from_env(|key| (key == "AIP_HTTP_PORT").then(|| "http".to_string())).is_err());
    }
}
