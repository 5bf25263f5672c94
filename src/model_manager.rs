//! The models the server knows: loading them from the repositories, their
//! state per version, and routing requests to the right loaded version.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::backend::{Backend, Device, InstanceSettings, ModelInstance};
use crate::classification::{Labels, check_classifiable, classify, requested_classes};
use crate::directory_fingerprint::DirectoryFingerprint;
use crate::ensemble::{ENSEMBLE_PLATFORM, EnsemblePlan, StepRequest};
use crate::error::{Error, Result};
use crate::inference::{BatchPosition, InferenceRequest, InferenceResponse, RequestedOutput};
use crate::model_config::{
    AutocompleteOptions, ModelConfig, autocomplete, check_config, parse_json_config, parse_text_format,
};
use crate::model_control::{LoadOptions, ModelControlMode, RepositoryIndexEntry, StartupModels, control_refusal};
use crate::proto::inference::model_instance_group::Kind;
use crate::repository::{
    CONFIG_FILENAME, ModelDirectory, available_versions, config_file, scan_repositories, select_versions,
};
use crate::response_cache::{ModelCache, ResponseCache};
use crate::scheduler::{Executed, RequestOptions, Scheduler, SchedulingPolicy};
use crate::shared_memory::{SharedMemoryRef, SharedMemoryRegistry};
use crate::statistics::{ExecutionTimes, FailureReason, ModelStatistics, StatisticsRecorder};
use crate::tensor::{DataType, Tensor};
use crate::trace::{Activity, RequestTrace, TensorActivity};
use crate::validation::{ModelIo, ValidatedRequest};
use crate::warmup::{warm_up, warmup_samples};

/// The lifecycle state of one model version, as the repository index
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionState {
    /// Being loaded.
    Loading,
    /// Serving.
    Ready,
    /// Failed to load; the reason says why.
    Unavailable(String),
    /// Unloaded on request or at exit. Triton reports it as unavailable
    /// with the reason "unloaded", and it does not count against readiness.
    Unloaded,
}

impl VersionState {
    /// Triton's name for the state.
    pub fn name(&self) -> &'static str {
        match self {
            VersionState::Loading => "LOADING",
            VersionState::Ready => "READY",
            VersionState::Unavailable(_) | VersionState::Unloaded => "UNAVAILABLE",
        }
    }

    /// Why a version is in this state; empty when there is nothing to say.
    pub fn reason(&self) -> &str {
        match self {
            VersionState::Unavailable(reason) => reason,
            VersionState::Unloaded => "unloaded",
            VersionState::Loading | VersionState::Ready => "",
        }
    }
}

/// One row of the model index: a model version (or a model that failed
/// before any version was known) and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIndexEntry {
    /// Model name.
    pub name: String,
    /// Version, or `None` when the model failed before versions were known.
    pub version: Option<i64>,
    /// State.
    pub state: VersionState,
}

impl ModelIndexEntry {
    /// The reason behind an unavailable state; empty otherwise.
    pub fn reason(&self) -> &str {
        self.state.reason()
    }
}

/// A tensor as model metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Shape with -1 for variable dimensions, the batch dimension included.
    pub shape: Vec<i64>,
}

/// What the metadata RPCs report about a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Ready versions, ascending.
    pub versions: Vec<i64>,
    /// Platform, such as `onnxruntime_onnx`.
    pub platform: String,
    /// Inputs in configuration order.
    pub inputs: Vec<TensorMetadata>,
    /// Outputs in configuration order.
    pub outputs: Vec<TensorMetadata>,
}

/// How a loaded model version runs requests.
enum Execution {
    /// On instances of its own, which its scheduler feeds.
    Instances(Scheduler),
    /// As an ensemble: a pipeline of other models' requests.
    Ensemble(EnsemblePlan),
}

/// A model version that is loaded and serving.
pub struct LoadedVersion {
    version: i64,
    config: Arc<ModelConfig>,
    io: ModelIo,
    labels: Labels,
    execution: Execution,
    statistics: Arc<StatisticsRecorder>,
    /// How long loading took: creating and warming up every instance.
    load_duration: Duration,
    /// Its part of the response cache, when its configuration enables the
    /// cache and the server has one.
    response_cache: Option<ModelCache>,
}

impl LoadedVersion {
    /// Runs a validated request with `run`, or answers it from the response
    /// cache when the model uses one and an identical request ran before;
    /// the answer of a request that ran is kept there for the next.
    async fn run_cached<F, Fut>(&self, request: ValidatedRequest, run: F) -> Result<Executed>
    where
        F: FnOnce(ValidatedRequest) -> Fut,
        Fut: Future<Output = Result<Executed>>,
    {
        let Some(cache) = &self.response_cache else {
            return run(request).await;
        };
        let lookup_started = Instant::now();
        let (key, found) = cache.lookup(&request);
        let lookup = lookup_started.elapsed();
        if let Some(outputs) = found {
            self.statistics.record_cache_hit(lookup_started.elapsed(), lookup);
            return match &self.execution {
                Execution::Instances(scheduler) => scheduler.answer_without_running(outputs).await,
                Execution::Ensemble(_) => {
                    Ok(Executed { outputs, position: BatchPosition::ALONE, times: ExecutionTimes::default() })
                }
            };
        }
        let executed = run(request).await?;
        let insert_started = Instant::now();
        if !cache.insert(key, &executed.outputs) {
            let (model, version) = (&self.config.name, self.version);
            tracing::debug!(%model, version, "an answer larger than the whole response cache was not kept");
        }
        self.statistics.record_cache_miss(lookup + insert_started.elapsed());
        Ok(executed)
    }

    /// Requests waiting in its queue; an ensemble has none of its own.
    fn pending_requests(&self) -> usize {
        match &self.execution {
            Execution::Instances(scheduler) => scheduler.pending_requests(),
            Execution::Ensemble(_) => 0,
        }
    }

    /// Stops its scheduler and instances (see [`Scheduler::stop`]).
    fn stop(&self) {
        if let Execution::Instances(scheduler) = &self.execution {
            scheduler.stop();
        }
    }

    /// The outputs `request` wants as classes, with how many; refused
    /// before the model runs when an output's datatype cannot be
    /// classified. Unknown outputs are left to validation to report.
    fn classified_outputs(&self, request: &InferenceRequest) -> Result<Vec<(String, usize)>> {
        let mut classified = Vec::new();
        for output in &request.outputs {
            let Some(count) = requested_classes(&request.model_name, output)? else { continue };
            if let Some(contract) = self.io.outputs.iter().find(|contract| contract.name == output.name) {
                check_classifiable(&request.model_name, &output.name, contract.datatype)?;
            }
            classified.push((output.name.clone(), count));
        }
        Ok(classified)
    }
}

struct VersionRecord {
    state: VersionState,
    loaded: Option<Arc<LoadedVersion>>,
}

#[derive(Default)]
struct ModelRecord {
    config: Option<Arc<ModelConfig>>,
    versions: BTreeMap<i64, VersionRecord>,
    /// A failure that stopped the whole model (bad configuration, no
    /// version directories, ...).
    failure: Option<String>,
    /// The model directory as it was when the record was last built from
    /// it, so that mode `poll` can tell when it changed.
    seen: Option<DirectoryFingerprint>,
}

impl ModelRecord {
    /// A model that failed before any version was tried.
    fn failed(reason: String) -> Self {
        Self { failure: Some(reason), ..Default::default() }
    }

    /// Why the model did not load completely, or `None` when every version
    /// it tried serves.
    fn failure_reason(&self) -> Option<String> {
        if let Some(failure) = &self.failure {
            return Some(failure.clone());
        }
        let reasons: Vec<String> = self
            .versions
            .iter()
            .filter_map(|(version, record)| match &record.state {
                VersionState::Unavailable(reason) => Some(format!("version {version}: {reason}")),
                _ => None,
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The versions that serve.
    fn loaded_versions(&self) -> Vec<Arc<LoadedVersion>> {
        self.versions.values().filter_map(|version| version.loaded.clone()).collect()
    }

    /// Marks every version unloaded and hands back those that served.
    fn unload(&mut self) -> Vec<Arc<LoadedVersion>> {
        self.failure = None;
        self.versions
            .values_mut()
            .filter_map(|version| {
                version.state = VersionState::Unloaded;
                version.loaded.take()
            })
            .collect()
    }
}

/// How models are loaded.
#[derive(Debug, Clone, Default)]
pub struct ManagerOptions {
    /// Auto-complete settings.
    pub autocomplete: AutocompleteOptions,
    /// Triton's `--model-config-name`: each model's
    /// `configs/<name>.pbtxt`, where it has one, in place of its
    /// `config.pbtxt`.
    pub config_name: Option<String>,
    /// Whether clients may load and unload models.
    pub control: ModelControlMode,
    /// Whether clients may register shared-memory regions
    /// (`--allow-client-shm`).
    pub allow_client_shm: bool,
    /// Triton's `--strict-readiness`: with `false` the server is ready
    /// once the start-up loading is over, whatever the models' states.
    pub lenient_readiness: bool,
    /// The response cache (`--cache-config local,size=N`) that models with
    /// `response_cache { enable: true }` use.
    pub response_cache: Option<Arc<ResponseCache>>,
}

/// What the metrics endpoint reports of one loaded model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMetrics {
    /// Its statistics so far.
    pub statistics: ModelStatistics,
    /// Requests waiting in its queue now.
    pub pending_requests: usize,
    /// How long it took to load.
    pub load_duration: Duration,
    /// Whether it uses the response cache.
    pub caches_responses: bool,
}

/// The outcome of loading the repositories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model versions that are ready.
    pub ready: usize,
    /// `model: reason` for every model or version that failed.
    pub failures: Vec<String>,
}

/// How long an ensemble loading at start waits for a composing model that
/// is still loading.
const COMPOSING_MODEL_WAIT: Duration = Duration::from_secs(600);

/// How long an unload or reload lets the requests that already hold a
/// version finish before it stops the version's instances anyway.
const RETIRE_GRACE: Duration = Duration::from_secs(30);

/// Every model the server knows and its loaded versions.
pub struct ModelManager {
    backend: std::result::Result<Arc<dyn Backend>, String>,
    options: ManagerOptions,
    models: RwLock<BTreeMap<String, ModelRecord>>,
    /// The repositories, once loading has started.
    repositories: OnceLock<Vec<PathBuf>>,
    /// Held by each load or unload request, so that they happen one at a
    /// time and a model is never loaded twice at once.
    control: Mutex<()>,
    shared_memory: SharedMemoryRegistry,
    loading_done: AtomicBool,
    readiness: watch::Sender<bool>,
}

impl ModelManager {
    /// A manager with no models yet. `backend` is the ONNX Runtime backend,
    /// or why it could not be loaded (then every model fails with that
    /// reason).
    pub fn new(backend: std::result::Result<Arc<dyn Backend>, String>, options: ManagerOptions) -> Self {
        let (readiness, _) = watch::channel(false);
        Self {
            backend,
            shared_memory: SharedMemoryRegistry::new(options.allow_client_shm),
            options,
            models: RwLock::new(BTreeMap::new()),
            repositories: OnceLock::new(),
            control: Mutex::new(()),
            loading_done: AtomicBool::new(false),
            readiness,
        }
    }

    /// Follows server readiness, for health watchers.
    pub fn subscribe_readiness(&self) -> watch::Receiver<bool> {
        self.readiness.subscribe()
    }

    /// Loads the `startup` models of the repositories, models in parallel. A
    /// failing model is recorded and does not stop the others; a named model
    /// that is not in any repository is a failure of the report.
    pub async fn load_repositories(
        self: &Arc<Self>,
        repositories: &[PathBuf],
        startup: &StartupModels,
    ) -> std::result::Result<LoadReport, String> {
        let scan = scan_repositories(repositories)?;
        // Only the first call sets them; the server makes one.
        let _ = self.repositories.set(repositories.to_vec());
        // A named ensemble brings its composing models, as in Triton.
        let composing: Vec<String> = match startup {
            StartupModels::All => Vec::new(),
            StartupModels::Named(names) => scan
                .models
                .iter()
                .filter(|model| names.contains(&model.name))
                .flat_map(|model| self.composing_model_names(model, &LoadOptions::default()))
                .collect(),
        };
        let wanted = |name: &str| match startup {
            StartupModels::All => true,
            StartupModels::Named(names) => names.iter().chain(&composing).any(|wanted| wanted == name),
        };
        let mut missing = Vec::new();
        if let StartupModels::Named(names) = startup {
            for name in names {
                if !scan.duplicates.contains_key(name) && !scan.models.iter().any(|model| &model.name == name) {
                    tracing::error!(model = %name, "failed to load: no model repository has a model of that name");
                    missing.push(format!("{name}: no model repository has a model of that name"));
                }
            }
        }
        let models: Vec<ModelDirectory> = scan.models.into_iter().filter(|model| wanted(&model.name)).collect();
        {
            let mut records = self.write_models();
            for (name, paths) in scan.duplicates.iter().filter(|(name, _)| wanted(name)) {
                let reason = duplicate_reason(name, paths);
                tracing::error!(model = %name, "failed to load: {reason}");
                records.insert(name.clone(), ModelRecord::failed(reason));
            }
            for model in &models {
                records.insert(model.name.clone(), ModelRecord::default());
            }
        }
        let loads: Vec<_> = models
            .into_iter()
            .map(|model| {
                let manager = Arc::clone(self);
                tokio::task::spawn_blocking(move || {
                    let record = manager.build_model(&model, &LoadOptions::default());
                    manager.write_models().insert(model.name, record);
                })
            })
            .collect();
        for load in loads {
            if let Err(error) = load.await {
                tracing::error!(%error, "a model loading task failed");
            }
        }
        self.loading_done.store(true, Ordering::SeqCst);
        self.readiness.send_replace(self.server_ready());
        let mut report = self.report();
        report.failures.extend(missing);
        Ok(report)
    }

    fn read_models(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelRecord>> {
        // A panic while holding the lock cannot leave a record half-written
        // (records are replaced whole), so a poisoned lock is still usable.
        self.models.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_models(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads a model's configuration and versions into a new record, off to
    /// the side: the versions that serve now keep serving meanwhile. The
    /// directory is looked at first, so a change made during the load is a
    /// change the next poll sees.
    fn build_model(&self, model: &ModelDirectory, options: &LoadOptions) -> ModelRecord {
        let seen = DirectoryFingerprint::of(&model.path);
        ModelRecord { seen: Some(seen), ..self.build_record(model, options) }
    }

    fn build_record(&self, model: &ModelDirectory, options: &LoadOptions) -> ModelRecord {
        let name = model.name.as_str();
        let failed = |reason: String| {
            tracing::error!(model = name, "failed to load: {reason}");
            ModelRecord::failed(reason)
        };
        let config_file = config_file(&model.path, self.options.config_name.as_deref());
        let config = match prepare_config_from(
            model,
            &config_file,
            options.config.as_deref(),
            &self.backend,
            self.options.autocomplete,
        ) {
            Ok(config) => Arc::new(config),
            Err(reason) => return failed(reason),
        };
        let available = match available_versions(&model.path) {
            Ok(available) => available,
            Err(reason) => return failed(reason),
        };
        let (selected, missing) = select_versions(config.version_policy.as_ref(), &available);
        if selected.is_empty() && missing.is_empty() {
            return failed(format!(
                "no version directory in '{}' is selected by its version policy",
                model.path.display()
            ));
        }
        let mut record = ModelRecord { config: Some(Arc::clone(&config)), ..Default::default() };
        for &version in &missing {
            let reason = format!("version {version} is named by the version policy but has no directory");
            record.versions.insert(version, VersionRecord { state: VersionState::Unavailable(reason), loaded: None });
        }
        // Versions load side by side, as Triton loads them.
        std::thread::scope(|scope| {
            let loads: Vec<_> = selected
                .into_iter()
                .map(|version| {
                    let config = &config;
                    let load = move || self.load_version(&model.path, config, version);
                    let loading = std::thread::Builder::new().spawn_scoped(scope, load).map_err(|error| {
                        Error::internal(format!("version {version}: cannot start a thread to load it: {error}"))
                    });
                    (version, loading)
                })
                .collect();
            for (version, loading) in loads {
                let loaded = loading.and_then(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| Err(Error::internal(format!("loading version {version} panicked"))))
                });
                let version_record = match loaded {
                    Ok(loaded) => {
                        tracing::info!(model = name, version, "loaded");
                        VersionRecord { state: VersionState::Ready, loaded: Some(Arc::new(loaded)) }
                    }
                    Err(error) => {
                        tracing::error!(model = name, version, "failed to load: {error}");
                        VersionRecord { state: VersionState::Unavailable(error.message().to_string()), loaded: None }
                    }
                };
                record.versions.insert(version, version_record);
            }
        });
        record
    }

    /// Loads or reloads `name` from the repositories, on a client's request
    /// (mode `explicit` only). A reload builds the new versions first and
    /// swaps them in only if all of them load, so the model keeps serving
    /// throughout; if any fails, the versions that served keep serving and
    /// the error says why. A model that did not serve takes whatever loaded,
    /// as at start. The old versions finish the requests they hold.
    pub async fn load_model(self: &Arc<Self>, name: &str, options: LoadOptions) -> Result<()> {
        self.check_control()?;
        let (manager, name) = (Arc::clone(self), name.to_string());
        tokio::task::spawn_blocking(move || manager.load_on_request(&name, &options))
            .await
            .map_err(|error| Error::internal(format!("loading the model failed: {error}")))?
    }

    fn load_on_request(&self, name: &str, options: &LoadOptions) -> Result<()> {
        let _one_at_a_time = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let model = self.find_model_directory(name)?;
        // As in Triton, loading an ensemble loads its composing models that
        // do not serve yet.
        for composing in self.composing_model_names(&model, options) {
            if self.resolve(&composing, None).is_ok() {
                continue;
            }
            let directory = self.find_model_directory(&composing).map_err(|error| {
                Error::invalid_argument(format!("load failed for ensemble '{name}': {}", error.message()))
            })?;
            let record = self.build_model(&directory, &LoadOptions::default());
            self.install(&composing, record)
                .map(|()| tracing::info!(model = composing, ensemble = name, "loaded as a composing model"))
                .map_err(|reason| {
                    Error::invalid_argument(format!(
                        "load failed for ensemble '{name}': its composing model '{composing}' did not load: {reason}"
                    ))
                })?;
        }
        let record = self.build_model(&model, options);
        self.install(name, record)
            .map(|()| tracing::info!(model = name, "loaded on request"))
            .map_err(|reason| Error::invalid_argument(format!("load failed for model '{name}': {reason}")))
    }

    /// Puts a freshly built record in the place of the model's. If it did
    /// not load completely while the model serves, the serving versions
    /// stay (noting the directory state that was tried) and the new ones
    /// are dropped; otherwise it replaces the old record, whose versions
    /// retire once the requests holding them are answered. Returns why the
    /// load failed, if it did.
    fn install(&self, name: &str, record: ModelRecord) -> std::result::Result<(), String> {
        let Some(reason) = record.failure_reason() else {
            self.replace_record(name, Some(record));
            return Ok(());
        };
        let discarded = {
            let mut models = self.write_models();
            match models.get_mut(name) {
                Some(old) if !old.loaded_versions().is_empty() => {
                    old.seen = record.seen;
                    record.loaded_versions()
                }
                _ => {
                    models.insert(name.to_string(), record);
                    Vec::new()
                }
            }
        };
        self.settle(discarded);
        Err(reason)
    }

    /// Puts `record` in the place of model `name`'s (`None` removes the
    /// model), then settles with the old record's versions.
    fn replace_record(&self, name: &str, record: Option<ModelRecord>) {
        let old = match record {
            Some(record) => self.write_models().insert(name.to_string(), record),
            None => self.write_models().remove(name),
        };
        self.settle(old.map(|old| old.loaded_versions()).unwrap_or_default());
    }

    /// After the records changed: readiness follows them, and the versions
    /// taken out retire once the requests holding them are answered.
    fn settle(&self, retired: Vec<Arc<LoadedVersion>>) {
        self.readiness.send_replace(self.server_ready());
        retire(retired);
    }

    /// Brings the models in line with the repositories (mode `poll`):
    /// models whose directories appeared load, those whose directories
    /// changed reload (the old versions serve until the new ones all
    /// loaded, and stay if any fails), and those whose directories went
    /// away unload. A repository that cannot be read changes nothing.
    pub async fn poll_repositories(self: &Arc<Self>) {
        let manager = Arc::clone(self);
        if let Err(error) = tokio::task::spawn_blocking(move || manager.poll_once()).await {
            tracing::error!("polling the model repository failed: {error}");
        }
    }

    fn poll_once(&self) {
        let _one_at_a_time = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let repositories = self.repositories.get().map(Vec::as_slice).unwrap_or_default();
        let scan = match scan_repositories(repositories) {
            Ok(scan) => scan,
            Err(reason) => {
                tracing::warn!("cannot poll the model repository, so no model changes: {reason}");
                return;
            }
        };
        let in_repository =
            |name: &str| scan.duplicates.contains_key(name) || scan.models.iter().any(|m| m.name == name);
        let gone: Vec<String> = self.read_models().keys().filter(|name| !in_repository(name)).cloned().collect();
        for name in gone {
            self.replace_record(&name, None);
            tracing::info!(model = %name, "unloaded: its directory left the model repository");
        }
        for (name, paths) in &scan.duplicates {
            let reason = duplicate_reason(name, paths);
            if self.read_models().get(name).is_some_and(|record| record.failure.as_ref() == Some(&reason)) {
                continue;
            }
            tracing::error!(model = %name, "failed to load: {reason}");
            self.replace_record(name, Some(ModelRecord::failed(reason)));
        }
        for model in &scan.models {
            let seen = self.read_models().get(&model.name).map(|record| record.seen);
            let now = DirectoryFingerprint::of(&model.path);
            if seen == Some(Some(now)) {
                continue;
            }
            let name = model.name.as_str();
            let change = if seen.is_some() { "changed in" } else { "added to" };
            // Looked at before the load, as build_model does.
            let record = ModelRecord { seen: Some(now), ..self.build_record(model, &LoadOptions::default()) };
            match self.install(name, record) {
                Ok(()) => tracing::info!(model = name, "loaded: its directory was {change} the model repository"),
                Err(reason) if seen.is_some() && self.model_ready(name, None) => tracing::error!(
                    model = name,
                    "its directory changed, but the new contents do not load, so the versions loaded before keep \
                     serving: {reason}"
                ),
                Err(_) => {}
            }
        }
    }

    /// Unloads every version of `name` on a client's request (mode
    /// `explicit` only): new requests get UNAVAILABLE at once, and this
    /// returns once the requests already running on it are answered and its
    /// instances are released. Unloading a model of the repositories that is
    /// not loaded changes nothing, as in Triton.
    pub async fn unload_model(self: &Arc<Self>, name: &str) -> Result<()> {
        self.check_control()?;
        let (manager, name) = (Arc::clone(self), name.to_string());
        tokio::task::spawn_blocking(move || manager.unload_on_request(&name))
            .await
            .map_err(|error| Error::internal(format!("unloading the model failed: {error}")))?
    }

    fn unload_on_request(&self, name: &str) -> Result<()> {
        let _one_at_a_time = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let retired = {
            let mut models = self.write_models();
            match models.get_mut(name) {
                // A model that failed before it had versions has nothing to
                // show as unloaded: it goes back to never having loaded.
                Some(record) if record.versions.is_empty() => {
                    models.remove(name);
                    Vec::new()
                }
                Some(record) => record.unload(),
                None => {
                    drop(models);
                    self.find_model_directory(name)?;
                    return Ok(());
                }
            }
        };
        self.settle(retired);
        tracing::info!(model = name, "unloaded on request");
        Ok(())
    }

    /// The error for a request to a model the manager has no record of,
    /// in Triton's words first (clients match on them), then why.
    fn unknown_model(&self, name: &str) -> Error {
        let why = match self.options.control {
            ModelControlMode::None | ModelControlMode::Poll => "it is not in the model repository",
            ModelControlMode::Explicit => "it is not loaded: load it with the repository API or --load-model",
        };
        Error::not_found(format!("Request for unknown model: '{name}' is not found; {why}"))
    }

    /// Load and unload requests need mode `explicit`, and wait for the end
    /// of the start-up loading, which would otherwise overwrite what they
    /// did to a model it was still loading.
    fn check_control(&self) -> Result<()> {
        match self.options.control {
            ModelControlMode::None | ModelControlMode::Poll => {
                Err(Error::unavailable(control_refusal(self.options.control)))
            }
            ModelControlMode::Explicit if !self.loading_done.load(Ordering::SeqCst) => Err(Error::unavailable(
                "the server is still loading the models named at start; load and unload models once it is done",
            )),
            ModelControlMode::Explicit => Ok(()),
        }
    }

    /// The models the steps of `model` run, if its configuration (the load
    /// request's, or its file's) makes it an ensemble. Read without
    /// completing or checking it: loading the ensemble does that, and
    /// reports what is wrong.
    fn composing_model_names(&self, model: &ModelDirectory, options: &LoadOptions) -> Vec<String> {
        let config = match &options.config {
            Some(json) => parse_json_config(json).ok(),
            None => std::fs::read_to_string(config_file(&model.path, self.options.config_name.as_deref()))
                .ok()
                .and_then(|text| parse_text_format(&text).ok()),
        };
        let Some(config) = config.filter(|config| config.platform == ENSEMBLE_PLATFORM) else {
            return Vec::new();
        };
        EnsemblePlan::from_config(&config).map(|plan| plan.model_names()).unwrap_or_default()
    }

    /// The directory of model `name` in the repositories.
    fn find_model_directory(&self, name: &str) -> Result<ModelDirectory> {
        let repositories = self.repositories.get().map(Vec::as_slice).unwrap_or_default();
        let mut scan = scan_repositories(repositories).map_err(Error::internal)?;
        if let Some(paths) = scan.duplicates.get(name) {
            return Err(Error::invalid_argument(format!(
                "load failed for model '{name}': {}",
                duplicate_reason(name, paths)
            )));
        }
        let position = scan.models.iter().position(|model| model.name == name).ok_or_else(|| {
            let places: Vec<String> = repositories.iter().map(|path| path.display().to_string()).collect();
            Error::not_found(format!("model '{name}' is not in the model repository ({})", places.join(", ")))
        })?;
        Ok(scan.models.swap_remove(position))
    }

    /// Triton's repository index: every model directory of the
    /// repositories and every model the server has loaded, by name; a model
    /// that has been asked to load has a row per version with its state.
    /// With `ready_only`, only the versions that serve.
    pub fn repository_index(&self, ready_only: bool) -> Result<Vec<RepositoryIndexEntry>> {
        let repositories = self.repositories.get().map(Vec::as_slice).unwrap_or_default();
        let scan = scan_repositories(repositories).map_err(Error::internal)?;
        let mut rows: BTreeMap<String, Vec<RepositoryIndexEntry>> = BTreeMap::new();
        for model in &scan.models {
            rows.entry(model.name.clone()).or_default();
        }
        for (name, paths) in &scan.duplicates {
            rows.entry(name.clone()).or_default().push(RepositoryIndexEntry {
                name: name.clone(),
                version: None,
                state: Some(VersionState::Unavailable(String::new()).name()),
                reason: duplicate_reason(name, paths),
            });
        }
        for entry in self.index() {
            let row = rows.entry(entry.name.clone()).or_default();
            // The manager's own record of a model (it may serve, loaded
            // before a second copy appeared) replaces the scan's duplicate row.
            row.retain(|known| known.version.is_some());
            let reason = entry.reason().to_string();
            row.push(RepositoryIndexEntry {
                name: entry.name,
                version: entry.version,
                state: Some(entry.state.name()),
                reason,
            });
        }
        Ok(rows
            .into_iter()
            .flat_map(|(name, row)| {
                if row.is_empty() {
                    vec![RepositoryIndexEntry { name, version: None, state: None, reason: String::new() }]
                } else {
                    row
                }
            })
            .filter(|entry| !ready_only || entry.state == Some(VersionState::Ready.name()))
            .collect())
    }

    fn load_version(&self, model_dir: &Path, config: &Arc<ModelConfig>, version: i64) -> Result<LoadedVersion> {
        let started = Instant::now();
        let io = ModelIo::from_config(config);
        let labels = Labels::load(config, model_dir)?;
        let statistics = Arc::new(StatisticsRecorder::new(&config.name, version));
        let label = format!("model '{}' version {version}", config.name);
        let execution = if config.platform == ENSEMBLE_PLATFORM {
            Execution::Ensemble(self.plan_ensemble(config)?)
        } else {
            Execution::Instances(self.start_instances(model_dir, config, version, &io, &label, &statistics)?)
        };
        let wants_cache = config.response_cache.as_ref().is_some_and(|cache| cache.enable);
        let response_cache = match (&self.options.response_cache, wants_cache) {
            (Some(cache), true) => Some(cache.scope()),
            (None, true) => {
                tracing::warn!(
                    "{label} enables response_cache, but the server has no cache; start it with --cache-config \
                     local,size=<bytes> to cache its answers"
                );
                None
            }
            (_, false) => None,
        };
        Ok(LoadedVersion {
            version,
            config: Arc::clone(config),
            io,
            labels,
            execution,
            statistics,
            load_duration: started.elapsed(),
            response_cache,
        })
    }

    /// Creates and warms up a model version's instances and starts its
    /// scheduler.
    fn start_instances(
        &self,
        model_dir: &Path,
        config: &Arc<ModelConfig>,
        version: i64,
        io: &ModelIo,
        label: &str,
        statistics: &Arc<StatisticsRecorder>,
    ) -> Result<Scheduler> {
        let backend = self.backend.as_ref().map_err(|reason| Error::unavailable(reason.clone()))?;
        let model_path = model_file(model_dir, version, &config.default_model_filename);
        if !model_path.is_file() {
            return Err(Error::unavailable(format!("model file '{}' does not exist", model_path.display())));
        }
        let placements = instance_placements(config);
        if placements.is_empty() {
            return Err(Error::unavailable(format!(
                "model '{}': every instance group is passive, so no instance would take its requests",
                config.name
            )));
        }
        let samples = warmup_samples(config, io, model_dir)?;
        // The creation jobs below move these references, not the values.
        let (samples, recorder) = (samples.as_slice(), statistics.as_ref());
        // Each instance is created and warmed up on its own thread, so a
        // model's instances warm up side by side, as in Triton.
        let creations = placements.iter().map(|(name, device)| {
            let settings = InstanceSettings {
                name: name.clone(),
                model_path: model_path.clone(),
                config: Arc::clone(config),
                device: *device,
                instances_of_model: placements.len(),
            };
            (name.clone(), move || {
                let mut instance = backend.create_instance(&settings)?;
                warm_up(instance.as_mut(), &config.name, &settings.name, samples, recorder)?;
                Ok(instance)
            })
        });
        let instances: Vec<(String, Box<dyn ModelInstance>)> = on_threads_named(creations.collect())
            .into_iter()
            .zip(placements.iter().map(|(name, _)| name.clone()))
            .map(|(instance, name)| instance.map(|instance| (name, instance)))
            .collect::<Result<_>>()?;
        Scheduler::start(label, SchedulingPolicy::from_config(config), instances, Arc::clone(statistics))
    }

    /// The plan of an ensemble, checked against the composing models as
    /// they are loaded now: each one serves, is not itself an ensemble, has
    /// the inputs and outputs the steps name, with the datatypes the
    /// ensemble's tensors have, and batches at least as much as the
    /// ensemble. At start, a composing model still loading is waited for.
    fn plan_ensemble(&self, config: &ModelConfig) -> Result<EnsemblePlan> {
        let plan = EnsemblePlan::from_config(config).map_err(Error::invalid_argument)?;
        let mut composing = Vec::with_capacity(plan.steps.len());
        for (index, step) in plan.steps.iter().enumerate() {
            let at_step =
                |what: &str| Error::invalid_argument(format!("step {index} (model '{}'): {what}", step.model_name));
            let model =
                self.composing_model(&step.model_name, step.model_version).map_err(|error| at_step(error.message()))?;
            if matches!(model.execution, Execution::Ensemble(_)) {
                return Err(at_step("it is an ensemble; ensembles of ensembles are not supported"));
            }
            composing.push(model);
        }
        let ios: Vec<&ModelIo> = composing.iter().map(|model| &model.io).collect();
        plan.check_composing(&ModelIo::from_config(config), &ios).map_err(Error::invalid_argument)?;
        Ok(plan)
    }

    /// The composing model `name` at `version` as it serves now; while the
    /// start-up loading has it still loading, waits for it.
    fn composing_model(&self, name: &str, version: Option<i64>) -> Result<Arc<LoadedVersion>> {
        let deadline = Instant::now() + COMPOSING_MODEL_WAIT;
        loop {
            let still_loading = self.read_models().get(name).is_some_and(|record| {
                record.failure.is_none()
                    && (record.versions.is_empty()
                        || record.versions.values().any(|version| version.state == VersionState::Loading))
            });
            if !still_loading || Instant::now() >= deadline {
                return self
                    .resolve(name, version)
                    .map_err(|error| Error::unavailable(format!("the model does not serve: {}", error.message())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs a validated request on `loaded`: on its instances, or through
    /// its ensemble's steps; from the response cache where it may be.
    async fn execute(
        &self,
        loaded: &LoadedVersion,
        request: ValidatedRequest,
        options: RequestOptions,
        trace: Option<Arc<RequestTrace>>,
    ) -> Result<Executed> {
        match &loaded.execution {
            Execution::Instances(scheduler) => {
                loaded.run_cached(request, |request| scheduler.execute(request, options, trace)).await
            }
            Execution::Ensemble(plan) => {
                loaded.run_cached(request, |request| self.run_ensemble(loaded, plan, request, options)).await
            }
        }
    }

    /// Runs an ensemble's steps for one request. Its statistics count the
    /// request once, with the compute times of its steps added up, as
    /// Triton counts an ensemble's.
    async fn run_ensemble(
        &self,
        loaded: &LoadedVersion,
        plan: &EnsemblePlan,
        request: ValidatedRequest,
        options: RequestOptions,
    ) -> Result<Executed> {
        let started = Instant::now();
        let ensemble = loaded.config.name.as_str();
        let outcome = plan.run(request.inputs, &request.outputs, |step| self.run_step(ensemble, step, options)).await;
        match outcome {
            Ok((outputs, step_times)) => {
                let times = step_times.iter().fold(ExecutionTimes::default(), |sum, step| ExecutionTimes {
                    input: sum.input + step.input,
                    infer: sum.infer + step.infer,
                    output: sum.output + step.output,
                });
                loaded.statistics.record_execution(
                    request.batch_size as u64,
                    times,
                    &[Duration::ZERO],
                    &[started.elapsed()],
                );
                Ok(Executed { outputs, position: BatchPosition::ALONE, times })
            }
            Err(error) => {
                // Triton labels an ensemble's failures OTHER; the step that
                // failed counts its own in its composing model.
                loaded.statistics.record_failure(started.elapsed(), FailureReason::Other);
                Err(error)
            }
        }
    }

    /// Sends one ensemble step to its composing model, through that model's
    /// validation, response cache, queue and instances; returns its outputs
    /// as a client would get them, and its execution's times.
    async fn run_step(
        &self,
        ensemble: &str,
        step: StepRequest,
        options: RequestOptions,
    ) -> Result<(Vec<Tensor>, ExecutionTimes)> {
        let in_ensemble =
            |error: Error| Error::new(error.kind(), format!("ensemble '{ensemble}': {}", error.message()));
        let composing = self.resolve(&step.model_name, step.model_version).map_err(in_ensemble)?;
        let Execution::Instances(scheduler) = &composing.execution else {
            return Err(Error::internal(format!("ensemble '{ensemble}': model '{}' is an ensemble", step.model_name)));
        };
        let request = InferenceRequest {
            model_name: step.model_name,
            model_version: step.model_version,
            id: String::new(),
            parameters: Default::default(),
            inputs: step.inputs,
            shared_memory_inputs: Vec::new(),
            outputs: step
                .outputs
                .into_iter()
                .map(|name| RequestedOutput { name, parameters: Default::default() })
                .collect(),
        };
        let validated = composing.io.validate(request).map_err(in_ensemble)?;
        let executed = composing
            .run_cached(validated, |request| scheduler.execute(request, options, None))
            .await
            .map_err(in_ensemble)?;
        let outputs = executed
            .outputs
            .into_iter()
            .map(|output| Tensor { shape: composing.io.response_shape(&output.name, output.shape.clone()), ..output })
            .collect();
        Ok((outputs, executed.times))
    }

    fn report(&self) -> LoadReport {
        let mut report = LoadReport::default();
        for entry in self.index() {
            match &entry.state {
                VersionState::Ready => report.ready += 1,
                VersionState::Unavailable(reason) => report.failures.push(match entry.version {
                    Some(version) => format!("{} version {version}: {reason}", entry.name),
                    None => format!("{}: {reason}", entry.name),
                }),
                VersionState::Loading | VersionState::Unloaded => {}
            }
        }
        report
    }

    /// Every model version the server knows and its state, by name and
    /// version.
    pub fn index(&self) -> Vec<ModelIndexEntry> {
        let models = self.read_models();
        let mut entries = Vec::new();
        for (name, record) in models.iter() {
            if let Some(failure) = &record.failure {
                entries.push(ModelIndexEntry {
                    name: name.clone(),
                    version: None,
                    state: VersionState::Unavailable(failure.clone()),
                });
                continue;
            }
            if record.versions.is_empty() {
                entries.push(ModelIndexEntry { name: name.clone(), version: None, state: VersionState::Loading });
            }
            for (&version, version_record) in &record.versions {
                entries.push(ModelIndexEntry {
                    name: name.clone(),
                    version: Some(version),
                    state: version_record.state.clone(),
                });
            }
        }
        entries
    }

    /// Ready means loading has finished and every model version the server
    /// was asked to load is ready (Triton's strict readiness); unloaded ones
    /// do not count. With lenient readiness, the end of loading is enough.
    pub fn server_ready(&self) -> bool {
        self.loading_done.load(Ordering::SeqCst)
            && (self.options.lenient_readiness
                || self.index().iter().all(|entry| matches!(entry.state, VersionState::Ready | VersionState::Unloaded)))
    }

    /// Whether a model version can serve; an unknown model is simply not
    /// ready.
    pub fn model_ready(&self, name: &str, version: Option<i64>) -> bool {
        self.check_model_ready(name, version).is_ok()
    }

    /// Ok when a model version can serve, else why not.
    pub fn check_model_ready(&self, name: &str, version: Option<i64>) -> Result<()> {
        self.resolve(name, version).map(|_| ())
    }

    /// The version that serves `name` at `version` (the highest ready one
    /// when `None`).
    fn resolve(&self, name: &str, version: Option<i64>) -> Result<Arc<LoadedVersion>> {
        let models = self.read_models();
        let record = models.get(name).ok_or_else(|| self.unknown_model(name))?;
        if let Some(failure) = &record.failure {
            return Err(Error::unavailable(format!("model '{name}' is not ready: {failure}")));
        }
        match version {
            Some(version) => {
                let version_record = record.versions.get(&version).ok_or_else(|| {
                    let known: Vec<String> = record.versions.keys().map(i64::to_string).collect();
                    Error::not_found(format!(
                        "model '{name}' has no version {version}; its versions are: {}",
                        known.join(", ")
                    ))
                })?;
                version_record.loaded.clone().ok_or_else(|| match version_record.state.reason() {
                    "" => Error::unavailable(format!("model '{name}' version {version} is still loading")),
                    reason => Error::unavailable(format!("model '{name}' version {version} is not ready: {reason}")),
                })
            }
            None => record.versions.values().rev().find_map(|record| record.loaded.clone()).ok_or_else(|| {
                let mut reasons: Vec<&str> = record
                    .versions
                    .values()
                    .map(|record| record.state.reason())
                    .filter(|reason| !reason.is_empty())
                    .collect();
                reasons.dedup();
                if reasons.is_empty() {
                    Error::unavailable(format!("model '{name}' is still loading"))
                } else {
                    Error::unavailable(format!("model '{name}' has no ready version: {}", reasons.join("; ")))
                }
            }),
        }
    }

    /// The completed configuration of a model. Configurations are per model,
    /// so any known version gives the same one.
    pub fn model_config(&self, name: &str, version: Option<i64>) -> Result<Arc<ModelConfig>> {
        if version.is_some() {
            return self.resolve(name, version).map(|loaded| Arc::clone(&loaded.config));
        }
        let models = self.read_models();
        let record = models.get(name).ok_or_else(|| self.unknown_model(name))?;
        match (&record.config, &record.failure) {
            (Some(config), None) => Ok(Arc::clone(config)),
            (_, Some(failure)) => Err(Error::unavailable(format!("model '{name}' is not ready: {failure}"))),
            (None, None) => Err(Error::unavailable(format!("model '{name}' is still loading"))),
        }
    }

    /// Statistics of every ready version of `name` (of every model when
    /// `None`, whatever `version` says, as in Triton), or of one version,
    /// ordered by name and version. A named model without a ready version
    /// is an error, not an empty list, so a failed model does not pass for
    /// an idle one.
    pub fn statistics(&self, name: Option<&str>, version: Option<i64>) -> Result<Vec<ModelStatistics>> {
        if let Some(name) = name {
            let resolved = self.resolve(name, version)?;
            if version.is_some() {
                return Ok(vec![resolved.statistics.snapshot()]);
            }
        }
        let models = self.read_models();
        Ok(models
            .iter()
            .filter(|(model, _)| name.is_none_or(|name| name == model.as_str()))
            .flat_map(|(_, record)| record.versions.values().filter_map(|version| version.loaded.as_ref()))
            .map(|loaded| loaded.statistics.snapshot())
            .collect())
    }

    /// The metrics of every loaded model version, by name and version.
    pub fn metrics(&self) -> Vec<VersionMetrics> {
        let models = self.read_models();
        models
            .values()
            .flat_map(|record| record.versions.values().filter_map(|version| version.loaded.as_ref()))
            .map(|loaded| VersionMetrics {
                statistics: loaded.statistics.snapshot(),
                pending_requests: loaded.pending_requests(),
                load_duration: loaded.load_duration,
                caches_responses: loaded.response_cache.is_some(),
            })
            .collect()
    }

    /// Name, ready versions, platform and tensors of a model.
    pub fn model_metadata(&self, name: &str, version: Option<i64>) -> Result<ModelMetadata> {
        let loaded = self.resolve(name, version)?;
        let versions = match version {
            Some(version) => vec![version],
            None => {
                let models = self.read_models();
                models
                    .get(name)
                    .map(|record| {
                        record.versions.iter().filter(|(_, record)| record.loaded.is_some()).map(|(&v, _)| v).collect()
                    })
                    .unwrap_or_default()
            }
        };
        let io = &loaded.io;
        let describe = |contracts: &[crate::validation::TensorContract]| {
            contracts
                .iter()
                .map(|contract| {
                    let batch = (io.max_batch_size > 0).then_some(-1);
                    TensorMetadata {
                        name: contract.name.clone(),
                        datatype: contract.datatype,
                        shape: batch.into_iter().chain(contract.dims.iter().copied()).collect(),
                    }
                })
                .collect()
        };
        Ok(ModelMetadata {
            name: name.to_string(),
            versions,
            platform: loaded.config.platform.clone(),
            inputs: describe(&io.inputs),
            outputs: describe(&io.outputs),
        })
    }

    /// Unloads every model version, as Triton does before it exits: each
    /// version stops taking requests (they get UNAVAILABLE), answers what is
    /// already queued, and its instances release their backend resources
    /// before this returns. Blocks while the batches in flight finish.
    pub fn unload_all(&self) {
        let unloaded: Vec<Arc<LoadedVersion>> =
            self.write_models().values_mut().flat_map(|record| record.unload()).collect();
        self.readiness.send_replace(false);
        for loaded in unloaded {
            loaded.stop();
            tracing::info!(model = %loaded.config.name, version = loaded.version, "unloaded");
        }
    }

    /// The registered shared-memory regions.
    pub fn shared_memory(&self) -> &SharedMemoryRegistry {
        &self.shared_memory
    }

    /// Runs one inference request. Inputs in shared memory are read from
    /// their regions first, and outputs the request asked for in shared
    /// memory are written there, leaving them empty in the response. A
    /// traced request gets the core's moments and tensors recorded.
    pub async fn infer(
        &self,
        mut request: InferenceRequest,
        trace: Option<Arc<RequestTrace>>,
    ) -> Result<InferenceResponse> {
        if let Some(trace) = &trace {
            trace.stamp(Activity::RequestStart);
        }
        let loaded = self.resolve(&request.model_name, request.model_version)?;
        let model_name = request.model_name.clone();
        let id = request.id.clone();
        if let Some(trace) = &trace {
            trace.identify(&model_name, loaded.version, &id);
        }
        for (index, place) in std::mem::take(&mut request.shared_memory_inputs) {
            let input = request.inputs.get_mut(index).ok_or_else(|| {
                Error::internal(format!("model '{model_name}': shared-memory input {index} is not among the inputs"))
            })?;
            input.data = self.shared_memory.read(&place, &format!("model '{model_name}': input '{}'", input.name))?;
        }
        let mut output_places = Vec::new();
        for output in &request.outputs {
            if let Some(place) =
                SharedMemoryRef::from_parameters(&model_name, "output", &output.name, &output.parameters)?
            {
                // Checked before the model runs, so a wrong region costs nothing.
                self.shared_memory.check(&place, &format!("model '{model_name}': output '{}'", output.name))?;
                output_places.push((output.name.clone(), place));
            }
        }
        let options = RequestOptions::from_parameters(&model_name, &request.parameters)?;
        let classified = loaded.classified_outputs(&request)?;
        let validated = loaded.io.validate(request)?;
        if let Some(trace) = &trace {
            trace.tensors(TensorActivity::QueueInput, &validated.inputs);
        }
        let executed = self.execute(&loaded, validated, options, trace.clone()).await?;
        if let Some(trace) = &trace {
            trace.tensors(TensorActivity::BackendOutput, &executed.outputs);
        }
        let mut outputs = executed.outputs;
        let mut shared_memory_outputs = Vec::new();
        for output in &mut outputs {
            output.shape = loaded.io.response_shape(&output.name, std::mem::take(&mut output.shape));
            if let Some(&(_, count)) = classified.iter().find(|(name, _)| *name == output.name) {
                *output = classify(&model_name, output, count, loaded.io.max_batch_size > 0, &loaded.labels)?;
            }
            if let Some((_, place)) = output_places.iter().find(|(name, _)| *name == output.name) {
                let what = format!("model '{model_name}': output '{}'", output.name);
                self.shared_memory.write(place, &what, &output.data)?;
                output.data = Bytes::new();
                shared_memory_outputs.push(output.name.clone());
            }
        }
        if let Some(trace) = &trace {
            trace.stamp(Activity::InferResponseComplete);
            trace.stamp(Activity::RequestEnd);
        }
        Ok(InferenceResponse {
            model_name,
            model_version: loaded.version,
            id,
            parameters: Default::default(),
            outputs,
            shared_memory_outputs,
            batch_position: executed.position,
        })
    }
}

/// Reads, auto-completes and checks a model's configuration, asking
/// `backend` for the model's signature when the configuration lacks inputs
/// or outputs (the backend's load error is the reason when it could not be
/// loaded). Public so that the benchmark's raw limit runs the configuration
/// the server would.
pub fn prepare_config(
    model: &ModelDirectory,
    backend: &std::result::Result<Arc<dyn Backend>, String>,
    options: AutocompleteOptions,
) -> std::result::Result<ModelConfig, String> {
    prepare_config_from(model, &model.path.join(CONFIG_FILENAME), None, backend, options)
}

/// [`prepare_config`] from `config_path` (the directory's `config.pbtxt` or
/// a custom configuration), or from the configuration given in JSON by a
/// load request in its place, when there is one.
fn prepare_config_from(
    model: &ModelDirectory,
    config_path: &Path,
    json_override: Option<&str>,
    backend: &std::result::Result<Arc<dyn Backend>, String>,
    options: AutocompleteOptions,
) -> std::result::Result<ModelConfig, String> {
    let config = if let Some(json) = json_override {
        parse_json_config(json).map_err(|error| format!("the load request's 'config': {error}"))?
    } else if config_path.is_file() {
        let text = std::fs::read_to_string(config_path)
            .map_err(|error| format!("cannot read '{}': {error}", config_path.display()))?;
        parse_text_format(&text).map_err(|error| format!("'{}': {error}", config_path.display()))?
    } else {
        ModelConfig::default()
    };
    let signature = if options.needs_signature(&config) {
        let backend = backend.as_ref().map_err(Clone::clone)?;
        let available = available_versions(&model.path)?;
        let latest = available.last().ok_or_else(|| {
            format!("'{}' has no version directory to auto-complete the configuration from", model.path.display())
        })?;
        let filename = if config.default_model_filename.is_empty() {
            crate::model_config::DEFAULT_ONNX_FILENAME
        } else {
            &config.default_model_filename
        };
        let model_file = model_file(&model.path, *latest, filename);
        Some(backend.signature(&model_file).map_err(|error| error.message().to_string())?)
    } else {
        None
    };
    let config = autocomplete(config, &model.name, signature.as_ref(), options)?;
    check_config(&config)?;
    Ok(config)
}

/// Why a model found in several repositories does not load.
fn duplicate_reason(name: &str, paths: &[PathBuf]) -> String {
    let places: Vec<String> = paths.iter().map(|path| path.display().to_string()).collect();
    format!("model '{name}' is in more than one repository: {}", places.join(", "))
}

/// Takes model versions out of service that are no longer reachable
/// through the manager: waits (up to [`RETIRE_GRACE`]) until no request
/// holds one any more, then stops its instances, so the requests that
/// found it before it was swapped out or unloaded still get their answers.
fn retire(versions: Vec<Arc<LoadedVersion>>) {
    for loaded in versions {
        let deadline = Instant::now() + RETIRE_GRACE;
        while Arc::strong_count(&loaded) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        loaded.stop();
        tracing::info!(model = %loaded.config.name, version = loaded.version, "released");
    }
}

/// The model file of `version`: `<model>/<version>/<filename>`, or, where
/// that is a directory (a model with its weights in files beside it),
/// the `model.onnx` inside it, as Triton's ONNX Runtime backend reads it.
fn model_file(model_dir: &Path, version: i64, filename: &str) -> PathBuf {
    let path = model_dir.join(version.to_string()).join(filename);
    if path.is_dir() { path.join(crate::model_config::DEFAULT_ONNX_FILENAME) } else { path }
}

/// Runs every job on a new thread called by the job's name, all at once,
/// and returns their results in the order given. A model's instances are
/// created this way, in parallel as Triton's ONNX Runtime backend creates
/// them: a session takes from milliseconds to seconds (graph optimisation,
/// CUDA initialisation), so a group of N would otherwise delay readiness
/// N times over. ONNX Runtime's intra-op threads inherit the name of the
/// thread that creates the session; created here, they carry the
/// instance's name (as its own thread does) instead of the async runtime's,
/// so `top -H` and profilers show which model spends the CPU.
fn on_threads_named<T: Send>(jobs: Vec<(String, impl FnOnce() -> Result<T> + Send)>) -> Vec<Result<T>> {
    std::thread::scope(|scope| {
        let started: Vec<_> = jobs
            .into_iter()
            .map(|(name, job)| {
                let thread = std::thread::Builder::new()
                    .name(name.clone())
                    .spawn_scoped(scope, job)
                    .map_err(|error| Error::internal(format!("instance '{name}': cannot start a thread: {error}")));
                (name, thread)
            })
            .collect();
        started
            .into_iter()
            .map(|(name, thread)| {
                thread?
                    .join()
                    .unwrap_or_else(|_| Err(Error::internal(format!("instance '{name}': creating it panicked"))))
            })
            .collect()
    })
}

/// Names and devices of the instances a completed configuration asks for:
/// `count` per group on the CPU, or `count` per listed GPU, named
/// `<group>_<n>` with n counting within the group and device, as Triton
/// names them. Passive instances are left out: Triton loads them but never
/// sends them requests, and this server has nothing else to use them for.
pub fn instance_placements(config: &ModelConfig) -> Vec<(String, Device)> {
    let mut placements = Vec::new();
    for group in &config.instance_group {
        if group.passive {
            tracing::info!(model = %config.name, group = %group.name, "passive instances are not loaded: they would get no requests");
            continue;
        }
        let count = usize::try_from(group.count).unwrap_or(0);
        let devices: Vec<Device> = match group.kind() {
            Kind::Gpu => group.gpus.iter().map(|&gpu| Device::Gpu(gpu)).collect(),
            _ => vec![Device::Cpu],
        };
        for device in devices {
            placements.extend((0..count).map(|index| (format!("{}_{index}", group.name), device)));
        }
    }
    placements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn instances_are_named_within_their_group_and_passive_ones_left_out() {
        let config = crate::model_config::parse_text_format(
            r#"name: "m"
               instance_group [ { name: "a" count: 2 kind: KIND_CPU },
                                { name: "g" count: 1 kind: KIND_GPU gpus: [ 0, 1 ] },
                                { name: "p" count: 3 kind: KIND_CPU passive: true } ]"#,
        )
        .unwrap();
        let placements = instance_placements(&config);
        let expected = [("a_0", Device::Cpu), ("a_1", Device::Cpu), ("g_0", Device::Gpu(0)), ("g_0", Device::Gpu(1))];
        assert_eq!(placements, expected.map(|(name, device)| (name.to_string(), device)));
    }

    #[test]
    fn instances_are_created_on_a_thread_named_after_them() {
        let current_name = || Ok(std::thread::current().name().map(str::to_string));
        let names =
            on_threads_named(vec![("mlp_0_0".to_string(), current_name), ("mlp_0_1".to_string(), current_name)]);
        let names: Vec<_> = names.into_iter().map(|name| name.unwrap()).collect();
        assert_eq!(names, [Some("mlp_0_0".to_string()), Some("mlp_0_1".to_string())]);
    }

    #[test]
    fn instances_are_created_at_the_same_time() {
        // Each creation waits for the other to have started: created one
        // after another, the first would wait in vain and fail.
        let (first_started, first_seen) = std::sync::mpsc::channel::<()>();
        let (second_started, second_seen) = std::sync::mpsc::channel::<()>();
        let meet = |started: std::sync::mpsc::Sender<()>, other: std::sync::mpsc::Receiver<()>| {
            move || {
                started.send(()).map_err(|_| Error::internal("the other creation ended"))?;
                other
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .map_err(|_| Error::internal("the other creation did not start"))
            }
        };
        let results = on_threads_named(vec![
            ("a_0".to_string(), meet(first_started, second_seen)),
            ("a_1".to_string(), meet(second_started, first_seen)),
        ]);
        for result in results {
            assert_eq!(result.map_err(|error| error.message().to_string()), Ok(()));
        }
    }

    #[test]
    fn a_failed_or_panicking_creation_is_an_error_in_its_place() {
        let results = on_threads_named::<u8>(vec![
            ("mlp_0_0".to_string(), Box::new(|| Ok(7u8)) as Box<dyn FnOnce() -> Result<u8> + Send>),
            ("mlp_0_1".to_string(), Box::new(|| Err(Error::unavailable("no GPU")))),
            ("mlp_0_2".to_string(), Box::new(|| panic!("broken model"))),
        ]);
        let messages: Vec<_> =
            results.into_iter().map(|result| result.map_err(|error| error.message().to_string())).collect();
        assert_eq!(
            messages,
            [Ok(7), Err("no GPU".to_string()), Err("instance 'mlp_0_2': creating it panicked".to_string())]
        );
    }

    /// A backend whose instance creations each wait, up to 10 s, until
    /// `expected` of them are under way at once: loading one after another,
    /// the first would wait in vain and fail.
    struct MeetingBackend {
        expected: usize,
        arrived: std::sync::Mutex<usize>,
        all_here: std::sync::Condvar,
    }

    struct IdleInstance;

    impl ModelInstance for IdleInstance {
        fn execute(
            &mut self,
            _: &[crate::tensor::Tensor],
            _: &[String],
            _: &mut crate::statistics::ExecutionTimes,
        ) -> Result<Vec<crate::tensor::Tensor>> {
            Ok(Vec::new())
        }
    }

    impl Backend for MeetingBackend {
        fn name(&self) -> &'static str {
            crate::model_config::ONNX_BACKEND
        }

        fn signature(&self, _: &Path) -> Result<crate::backend::ModelSignature> {
            Err(Error::internal("the test configuration lists inputs and outputs"))
        }

        fn create_instance(&self, _: &InstanceSettings) -> Result<Box<dyn ModelInstance>> {
            let mut arrived = self.arrived.lock().unwrap();
            *arrived += 1;
            self.all_here.notify_all();
            let wait = std::time::Duration::from_secs(10);
            let (arrived, waited) = self.all_here.wait_timeout_while(arrived, wait, |n| *n < self.expected).unwrap();
            if waited.timed_out() {
                return Err(Error::internal(format!("{} of {} creations under way at once", *arrived, self.expected)));
            }
            Ok(Box::new(IdleInstance))
        }
    }

    #[tokio::test]
    async fn versions_and_their_instances_load_side_by_side() {
        let repository = tempfile::tempdir().unwrap();
        let model = repository.path().join("m");
        for version in ["1", "2"] {
            std::fs::create_dir_all(model.join(version)).unwrap();
            std::fs::write(model.join(version).join("model.onnx"), b"").unwrap();
        }
        std::fs::write(
            model.join("config.pbtxt"),
            r#"name: "m" backend: "onnxruntime" version_policy { all {} }
               instance_group [ { count: 2 kind: KIND_CPU } ]
               input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
               output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]"#,
        )
        .unwrap();
        // Two versions of two instances each: four creations at once.
        let backend = MeetingBackend { expected: 4, arrived: Default::default(), all_here: Default::default() };
        let manager = Arc::new(ModelManager::new(Ok(Arc::new(backend)), ManagerOptions::default()));
        let report = manager.load_repositories(&[repository.path().to_path_buf()], &StartupModels::All).await.unwrap();
        assert_eq!(report, LoadReport { ready: 2, failures: Vec::new() });
        manager.unload_all();
    }

    /// A repository directory holding model `name` with one version and a
    /// configuration the test backend can load.
    fn write_model(repository: &Path, name: &str) {
        std::fs::create_dir_all(repository.join(name).join("1")).unwrap();
        std::fs::write(repository.join(name).join("1").join("model.onnx"), b"").unwrap();
        std::fs::write(
            repository.join(name).join("config.pbtxt"),
            format!(
                r#"name: "{name}" backend: "onnxruntime"
                   input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }} ]
                   output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }} ]"#
            ),
        )
        .unwrap();
    }

    fn states(manager: &ModelManager) -> Vec<(String, Option<i64>, Option<&'static str>, String)> {
        let index = manager.repository_index(false).unwrap();
        index.into_iter().map(|entry| (entry.name, entry.version, entry.state, entry.reason)).collect()
    }

    #[tokio::test]
    async fn explicit_mode_loads_and_unloads_on_request() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_model(first.path(), "n");
        write_model(first.path(), "twice");
        write_model(second.path(), "twice");
        let backend = MeetingBackend { expected: 1, arrived: Default::default(), all_here: Default::default() };
        let options = ManagerOptions { control: ModelControlMode::Explicit, ..Default::default() };
        let manager = Arc::new(ModelManager::new(Ok(Arc::new(backend)), options));
        let early = manager.load_model("n", LoadOptions::default()).await.unwrap_err();
        assert!(early.message().contains("still loading the models named at start"), "{early}");
        let repositories = [first.path().to_path_buf(), second.path().to_path_buf()];
        let report = manager.load_repositories(&repositories, &StartupModels::Named(Vec::new())).await.unwrap();
        assert_eq!(report, LoadReport::default());
        assert!(manager.server_ready());
        let listing = states(&manager);
        assert_eq!(listing[0], ("n".to_string(), None, None, String::new()));
        assert_eq!((listing[1].2, listing[1].3.contains("more than one repository")), (Some("UNAVAILABLE"), true));

        let error = manager.load_model("twice", LoadOptions::default()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert!(error.message().contains("more than one repository"), "{error}");
        assert_eq!(manager.load_model("none", LoadOptions::default()).await.unwrap_err().kind(), ErrorKind::NotFound);

        manager.load_model("n", LoadOptions::default()).await.unwrap();
        assert_eq!(states(&manager)[0], ("n".to_string(), Some(1), Some("READY"), String::new()));
        assert_eq!(manager.repository_index(true).unwrap().len(), 1);
        // A request that found the version before the unload holds it; the
        // unload waits for it to let go before the instances stop.
        let held = manager.resolve("n", None).unwrap();
        let unloading = {
            let manager = Arc::clone(&manager);
            tokio::spawn(async move { manager.unload_model("n").await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!unloading.is_finished(), "the unload did not wait for the request holding the version");
        assert_eq!(states(&manager)[0], ("n".to_string(), Some(1), Some("UNAVAILABLE"), "unloaded".to_string()));
        drop(held);
        unloading.await.unwrap().unwrap();
        assert!(manager.server_ready());
        assert_eq!(manager.unload_model("none").await.unwrap_err().kind(), ErrorKind::NotFound);
        manager.unload_all();
    }

    #[tokio::test]
    async fn mode_poll_follows_the_repository() {
        let repository = tempfile::tempdir().unwrap();
        write_model(repository.path(), "kept");
        write_model(repository.path(), "gone");
        let backend = MeetingBackend { expected: 1, arrived: Default::default(), all_here: Default::default() };
        let options = ManagerOptions { control: ModelControlMode::Poll, ..Default::default() };
        let manager = Arc::new(ModelManager::new(Ok(Arc::new(backend)), options));
        manager.load_repositories(&[repository.path().to_path_buf()], &StartupModels::All).await.unwrap();
        let refusal = manager.load_model("kept", LoadOptions::default()).await.unwrap_err();
        assert_eq!(refusal.message(), control_refusal(ModelControlMode::Poll));
        // Weak, so that a reload does not wait for this test to let go.
        let kept = Arc::downgrade(&manager.resolve("kept", None).unwrap());
        let still_kept = |manager: &ModelManager| {
            std::sync::Weak::ptr_eq(&kept, &Arc::downgrade(&manager.resolve("kept", None).unwrap()))
        };

        // Nothing changed: nothing reloads.
        manager.poll_repositories().await;
        assert!(still_kept(&manager));

        std::fs::remove_dir_all(repository.path().join("gone")).unwrap();
        write_model(repository.path(), "added");
        manager.poll_repositories().await;
        assert_eq!(manager.check_model_ready("gone", None).unwrap_err().kind(), ErrorKind::NotFound);
        assert!(manager.model_ready("added", None));
        assert!(still_kept(&manager));

        // Broken contents leave the loaded version serving; fixed, it reloads.
        let config = repository.path().join("kept").join("config.pbtxt");
        let good = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, "name: \"kept\" max_batch_size: eight").unwrap();
        manager.poll_repositories().await;
        assert!(still_kept(&manager));
        std::fs::write(&config, good.replace("backend", "max_batch_size: 2 backend")).unwrap();
        manager.poll_repositories().await;
        assert!(!still_kept(&manager));
        assert_eq!(manager.resolve("kept", None).unwrap().io.max_batch_size, 2);
        manager.unload_all();
    }

    #[tokio::test]
    async fn mode_none_refuses_loads_and_unloads() {
        let manager = Arc::new(ModelManager::new(Err("no backend".into()), ManagerOptions::default()));
        let error = manager.load_model("m", LoadOptions::default()).await.unwrap_err();
        let refusal = control_refusal(ModelControlMode::None);
        assert_eq!((error.kind(), error.message()), (ErrorKind::Unavailable, refusal.as_str()));
        assert_eq!(manager.unload_model("m").await.unwrap_err().message(), refusal);
    }
}
