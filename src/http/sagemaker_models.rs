//! Amazon SageMaker's multi-model endpoint routes, as Triton serves them on
//! its SageMaker port: SageMaker unpacks each model archive to
//! `/opt/ml/models/<hash>/model` and asks the container to load it
//! (`POST /models`), lists and describes what is loaded (`GET /models`,
//! `GET /models/<hash>`), runs it (`POST /models/<hash>/invoke`) and unloads
//! it (`DELETE /models/<hash>`). Each archive is registered as a repository
//! whose model serves under the name in SageMaker's
//! `X-Amzn-SageMaker-Target-Model` header (else the hash), and the other
//! models of an ensemble's archive under `<that name>/<folder>`, so two
//! archives may hold folders of the same name.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path as RoutePath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, restricted_routes};
use crate::model_config::parse_text_format;
use crate::model_control::{LoadOptions, UnloadOptions};
use crate::repository::{CONFIG_FILENAME, scan_repositories};
use crate::restricted_api::ApiCategory;

/// The header in which SageMaker names the archive a request is for.
const TARGET_MODEL_HEADER: &str = "x-amzn-sagemaker-target-model";

/// The folder of `/opt/ml/models/<hash>/` that SageMaker unpacks an archive to.
const ARCHIVE_FOLDER: &str = "model";

/// Words of error messages that mean the model did not fit in memory, for
/// which SageMaker wants 507 so that it unloads other models and tries
/// again; Triton's list.
const OUT_OF_MEMORY_WORDS: [&str; 17] = [
    "CUDA out of memory",
    "CUDA_OUT_OF_MEMORY",
    "Out of memory",
    "Out Of Memory",
    "out of memory",
    "MemoryError",
    "OutOfMemory",
    "OOM",
    "Dst tensor is not initialized",
    "Src tensor is not initialized",
    "CNMEM_STATUS_OUT_OF_MEMORY",
    "CUDNN_STATUS_NOT_INITIALIZED",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUBLAS_STATUS_NOT_INITIALIZED",
    "Failed to allocate memory",
    "failed to allocate memory",
    "No space left on device",
];

/// A model archive the endpoint has loaded.
#[derive(Debug, Clone)]
struct LoadedArchive {
    /// The `url` SageMaker gave.
    url: String,
    /// The repository registered for it.
    repository: PathBuf,
    /// The name its model serves under.
    model: String,
}

/// The endpoint's archives by SageMaker's `model_name` (a hash), and where
/// SageMaker unpacks them.
#[derive(Debug)]
struct Archives {
    root: PathBuf,
    loaded: Mutex<BTreeMap<String, LoadedArchive>>,
}

impl Archives {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LoadedArchive>> {
        self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, hash: &str) -> Option<LoadedArchive> {
        self.lock().get(hash).cloned()
    }
}

/// The multi-model routes over archives unpacked under `root`
/// (`/opt/ml/models`); loading, listing and unloading count as
/// `model-repository` and invoking as `inference` for
/// `--http-restricted-api`, as in Triton.
pub fn router(state: &AppState, root: PathBuf) -> Router<AppState> {
    let archives = Arc::new(Archives { root, loaded: Mutex::new(BTreeMap::new()) });
    let repository =
        Router::new().route("/models", get(list).post(load)).route("/models/{hash}", get(describe).delete(unload));
    let inference = Router::new().route("/models/{hash}/invoke", post(invoke));
    Router::new()
        .merge(restricted_routes(&state.settings, ApiCategory::ModelRepository, repository))
        .merge(restricted_routes(&state.settings, ApiCategory::Inference, inference))
        .layer(Extension(archives))
}

/// The body of `POST /models`.
#[derive(Debug, Deserialize)]
struct LoadRequest {
    model_name: String,
    url: String,
}

/// `POST /models`: registers the archive at `url` and loads its model; 200
/// once it serves, 409 when the hash or the name is taken, 507 when the
/// model did not fit in memory, 400 for anything else.
async fn load(
    State(state): State<AppState>,
    Extension(archives): Extension<Arc<Archives>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: LoadRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "load model: expected a JSON object with the strings 'model_name' and 'url': {error}"
        ))
    })?;
    if archives.get(&request.model_name).is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("model '{}' is already loaded", request.model_name)));
    }
    let url = archive_url(&archives.root, &request.url).map_err(ApiError::bad_request)?;
    let (repository, folder) = archive_model_folder(&url).map_err(ApiError::bad_request)?;
    let model = target_model(&headers).unwrap_or_else(|| request.model_name.clone());
    tracing::info!(model = %model, url = %request.url, "loading SageMaker TargetModel");
    let names = archive_names(&repository, &folder, &model).map_err(ApiError::bad_request)?;
    state.manager.register_repository(&repository, names)?;
    if let Err(error) = state.manager.load_model(&model, LoadOptions::default()).await {
        if let Err(unregister) = state.manager.unregister_repository(&repository) {
            tracing::error!(model = %model, "after the failed load: {unregister}");
        }
        return Err(out_of_memory_as_507(error.into()));
    }
    let archive = LoadedArchive { url: request.url, repository, model };
    archives.lock().insert(request.model_name, archive);
    Ok(StatusCode::OK)
}

/// `GET /models`: the archives whose models serve.
async fn list(State(state): State<AppState>, Extension(archives): Extension<Arc<Archives>>) -> Response {
    let loaded = archives.lock().clone();
    let models: Vec<serde_json::Value> = loaded
        .iter()
        .filter(|(_, archive)| state.manager.model_ready(&archive.model, None))
        .map(|(hash, archive)| json!({ "modelName": hash, "modelUrl": archive.url }))
        .collect();
    axum::Json(json!({ "models": models })).into_response()
}

/// `GET /models/<hash>`: the archive's name and url; 404 when not loaded.
async fn describe(
    Extension(archives): Extension<Arc<Archives>>,
    RoutePath(hash): RoutePath<String>,
) -> Result<Response, ApiError> {
    let archive = archives.get(&hash).ok_or_else(|| not_loaded(&hash))?;
    Ok(axum::Json(json!({ "modelName": hash, "modelUrl": archive.url })).into_response())
}

/// `DELETE /models/<hash>`: unloads the archive's model (an ensemble with
/// the composing models loaded for it), once the requests it holds are
/// answered, and forgets its repository; 404 when not loaded.
async fn unload(
    State(state): State<AppState>,
    Extension(archives): Extension<Arc<Archives>>,
    RoutePath(hash): RoutePath<String>,
) -> Result<StatusCode, ApiError> {
    let archive = archives.get(&hash).ok_or_else(|| not_loaded(&hash))?;
    tracing::info!(model = %archive.model, "unloading SageMaker TargetModel");
    state.manager.unload_model(&archive.model, UnloadOptions { unload_dependents: true }).await?;
    archives.lock().remove(&hash);
    state.manager.unregister_repository(&archive.repository)?;
    Ok(StatusCode::OK)
}

/// `POST /models/<hash>/invoke`: a v2 inference request on the archive's
/// model, with SageMaker's binary content type; 404 when not loaded, 507
/// when the model ran out of memory.
async fn invoke(
    State(state): State<AppState>,
    Extension(archives): Extension<Arc<Archives>>,
    RoutePath(hash): RoutePath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let archive = archives.get(&hash).ok_or_else(|| not_loaded(&hash))?;
    super::sagemaker::infer(&state, &archive.model, headers, body).await.map_err(out_of_memory_as_507)
}

fn not_loaded(hash: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("model '{hash}' is not loaded on this endpoint"))
}

/// SageMaker's target model header, when the request has one.
fn target_model(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(TARGET_MODEL_HEADER)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// The error with status 507 when its message says memory ran out.
fn out_of_memory_as_507(error: ApiError) -> ApiError {
    match OUT_OF_MEMORY_WORDS.iter().any(|words| error.message.contains(words)) {
        true => ApiError { status: StatusCode::INSUFFICIENT_STORAGE, ..error },
        false => error,
    }
}

/// `url` as a path, if it is where SageMaker unpacks archives:
/// `<root>/<hash>/model`, or a folder inside it, with names of letters,
/// digits, `.` and `_` (Triton's rule, which keeps a load request from
/// naming any other directory).
fn archive_url(root: &Path, url: &str) -> Result<PathBuf, String> {
    let invalid =
        || format!("Invalid \"url\" '{url}': expected a path of the form {}/<hash>/model[/<subdir>]", root.display());
    let path = lexically_normal(Path::new(url)).ok_or_else(invalid)?;
    let rest = path.strip_prefix(root).map_err(|_| invalid())?;
    let names: Vec<&str> = rest.iter().map(|name| name.to_str().unwrap_or_default()).collect();
    let allowed =
        |name: &str| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
    match names.as_slice() {
        [_hash, ARCHIVE_FOLDER] | [_hash, ARCHIVE_FOLDER, _] if names.iter().all(|name| allowed(name)) => Ok(path),
        _ => Err(invalid()),
    }
}

/// An absolute path with `.` and `..` resolved by name, without the file
/// system; `None` for a relative path or one that climbs above `/`.
fn lexically_normal(path: &Path) -> Option<PathBuf> {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir => normal.push("/"),
            Component::Normal(name) => normal.push(name),
            Component::CurDir => {}
            Component::ParentDir if normal.parent().is_some() => {
                normal.pop();
            }
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    path.is_absolute().then_some(normal)
}

/// The repository to register for the archive unpacked at `url` and the
/// folder of its model, as Triton picks them: `url` itself when it is a
/// model folder (it holds `config.pbtxt` or version folders); otherwise
/// its only folder, or, of several, the ensemble (whose composing models
/// are the others).
fn archive_model_folder(url: &Path) -> Result<(PathBuf, String), String> {
    let shown = url.display();
    if !url.is_dir() {
        return Err(format!("the model archive '{shown}' is not a directory"));
    }
    let is_model_folder = url.join(CONFIG_FILENAME).is_file()
        || crate::repository::available_versions(url).is_ok_and(|versions| !versions.is_empty());
    if is_model_folder {
        let parent = url.parent().ok_or_else(|| format!("the model archive '{shown}' has no parent directory"))?;
        let folder = url.file_name().and_then(|name| name.to_str()).unwrap_or(ARCHIVE_FOLDER);
        return Ok((parent.to_path_buf(), folder.to_string()));
    }
    let folders: Vec<String> =
        scan_repositories(&[url.to_path_buf().into()], false)?.models.into_iter().map(|model| model.name).collect();
    let is_ensemble = |folder: &String| {
        std::fs::read_to_string(url.join(folder).join(CONFIG_FILENAME))
            .ok()
            .and_then(|text| parse_text_format(&text).ok())
            .is_some_and(|config| config.platform == crate::ensemble::ENSEMBLE_PLATFORM)
    };
    let ensembles: Vec<&String> = folders.iter().filter(|folder| is_ensemble(folder)).collect();
    let folder = match (folders.as_slice(), ensembles.as_slice()) {
        ([], _) => return Err(format!("the model archive '{shown}' holds no model folder")),
        ([only], _) => only.clone(),
        (_, [ensemble]) => (*ensemble).clone(),
        (several, _) => {
            return Err(format!(
                "the model archive '{shown}' holds several model folders ({}) and not exactly one ensemble to \
                 serve them: which one is the endpoint's model?",
                several.join(", ")
            ));
        }
    };
    Ok((url.to_path_buf(), folder))
}

/// The names the folders of an archive's repository serve under: its
/// model's folder under `model`, every other folder (an ensemble's
/// composing models) under `<model>/<folder>`, so that archives holding
/// folders of the same name load side by side, each ensemble running its
/// own archive's models (what Triton's model namespacing gives its
/// multi-model endpoints).
fn archive_names(repository: &Path, folder: &str, model: &str) -> Result<BTreeMap<String, String>, String> {
    let folders = scan_repositories(&[repository.to_path_buf().into()], false)?.models;
    Ok(folders
        .into_iter()
        .map(|found| {
            let name = if found.name == folder { model.to_string() } else { format!("{model}/{}", found.name) };
            (found.name, name)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_archive_folders_under_the_root_are_urls() {
        let root = Path::new("/opt/ml/models");
        let ok = |url: &str| archive_url(root, url).map(|path| path.display().to_string());
        assert_eq!(ok("/opt/ml/models/abc123/model"), Ok("/opt/ml/models/abc123/model".to_string()));
        assert_eq!(ok("/opt/ml/models/abc.1_2/model/resnet/"), Ok("/opt/ml/models/abc.1_2/model/resnet".to_string()));
        assert_eq!(ok("/opt/ml/models/x/other/../model"), Ok("/opt/ml/models/x/model".to_string()));
        for bad in [
            "/opt/ml/models/abc/model/../../../../etc",
            "/proc/self/model",
            "/opt/ml/models/abc",
            "/opt/ml/models/abc/weights",
            "/opt/ml/models/a b/model",
            "/opt/ml/models/abc/model/one/two",
            "opt/ml/models/abc/model",
        ] {
            let error = ok(bad).unwrap_err();
            assert!(error.contains("/opt/ml/models/<hash>/model[/<subdir>]"), "{bad}: {error}");
        }
    }

    fn folder(path: &Path, config: Option<&str>) {
        std::fs::create_dir_all(path.join("1")).unwrap();
        if let Some(config) = config {
            std::fs::write(path.join(CONFIG_FILENAME), config).unwrap();
        }
    }

    #[test]
    fn the_archive_model_is_the_url_its_only_folder_or_its_ensemble() {
        let archive = tempfile::tempdir().unwrap();
        let url = archive.path().join("model");
        folder(&url, Some(r#"backend: "onnxruntime""#));
        assert_eq!(archive_model_folder(&url).unwrap(), (archive.path().to_path_buf(), "model".to_string()));

        let archive = tempfile::tempdir().unwrap();
        let url = archive.path().join("model");
        folder(&url.join("resnet"), None);
        assert_eq!(archive_model_folder(&url).unwrap(), (url.clone(), "resnet".to_string()));
        folder(&url.join("preprocess"), Some(r#"backend: "onnxruntime""#));
        let error = archive_model_folder(&url).unwrap_err();
        assert!(error.contains("preprocess, resnet"), "{error}");
        folder(&url.join("pipeline"), Some(r#"platform: "ensemble""#));
        assert_eq!(archive_model_folder(&url).unwrap(), (url.clone(), "pipeline".to_string()));
        let names = archive_names(&url, "pipeline", "p.tar.gz").unwrap();
        let expected = [("pipeline", "p.tar.gz"), ("preprocess", "p.tar.gz/preprocess"), ("resnet", "p.tar.gz/resnet")];
        let expected: BTreeMap<String, String> =
            expected.into_iter().map(|(folder, name)| (folder.to_string(), name.to_string())).collect();
        assert_eq!(names, expected);

        let empty = tempfile::tempdir().unwrap();
        assert!(archive_model_folder(empty.path()).unwrap_err().contains("holds no model folder"));
    }

    #[test]
    fn out_of_memory_errors_are_507() {
        let oom = out_of_memory_as_507(ApiError::bad_request("CUDA out of memory. Tried to allocate 2 GiB"));
        assert_eq!(oom.status, StatusCode::INSUFFICIENT_STORAGE);
        let other = out_of_memory_as_507(ApiError::bad_request("input 'X': expected FP32"));
        assert_eq!(other.status, StatusCode::BAD_REQUEST);
    }
}
