//! The models the server knows: loading them from the repositories, their
//! state per version, and routing requests to the right loaded version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backend::{Backend, Device, InstanceSettings, ModelInstance};
use crate::classification::{Labels, check_classifiable, classify, requested_classes};
use crate::error::{Error, Result};
use crate::inference::{InferenceRequest, InferenceResponse};
use crate::model_config::{AutocompleteOptions, ModelConfig, autocomplete, check_config, parse_text_format};
use crate::proto::inference::model_instance_group::Kind;
use crate::repository::{CONFIG_FILENAME, ModelDirectory, available_versions, scan_repositories, select_versions};
use crate::scheduler::{RequestOptions, Scheduler, SchedulingPolicy};
use crate::statistics::{ModelStatistics, StatisticsRecorder};
use crate::tensor::DataType;
use crate::validation::ModelIo;
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
}

impl VersionState {
    /// Triton's name for the state.
    pub fn name(&self) -> &'static str {
        match self {
            VersionState::Loading => "LOADING",
            VersionState::Ready => "READY",
            VersionState::Unavailable(_) => "UNAVAILABLE",
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
        match &self.state {
            VersionState::Unavailable(reason) => reason,
            _ => "",
        }
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

/// A model version that is loaded and serving.
pub struct LoadedVersion {
    version: i64,
    config: Arc<ModelConfig>,
    io: ModelIo,
    labels: Labels,
    scheduler: Scheduler,
    statistics: Arc<StatisticsRecorder>,
    /// How long loading took: creating and warming up every instance.
    load_duration: Duration,
}

impl LoadedVersion {
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
}

/// How models are loaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct ManagerOptions {
    /// Auto-complete settings.
    pub autocomplete: AutocompleteOptions,
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
}

/// The outcome of loading the repositories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model versions that are ready.
    pub ready: usize,
    /// `model: reason` for every model or version that failed.
    pub failures: Vec<String>,
}

/// Every model the server knows and its loaded versions.
pub struct ModelManager {
    backend: std::result::Result<Arc<dyn Backend>, String>,
    options: ManagerOptions,
    models: RwLock<BTreeMap<String, ModelRecord>>,
    loading_done: AtomicBool,
    readiness: watch::Sender<bool>,
}

impl ModelManager {
    /// A manager with no models yet. `backend` is the ONNX Runtime backend,
    /// or why it could not be loaded (then every model fails with that
    /// reason).
    pub fn new(backend: std::result::Result<Arc<dyn Backend>, String>, options: ManagerOptions) -> Self {
        let (readiness, _) = watch::channel(false);
        Self { backend, options, models: RwLock::new(BTreeMap::new()), loading_done: AtomicBool::new(false), readiness }
    }

    /// Follows server readiness, for health watchers.
    pub fn subscribe_readiness(&self) -> watch::Receiver<bool> {
        self.readiness.subscribe()
    }

    /// Loads every model of the repositories, models in parallel. A failing
    /// model is recorded and does not stop the others.
    pub async fn load_repositories(
        self: &Arc<Self>,
        repositories: &[PathBuf],
    ) -> std::result::Result<LoadReport, String> {
        let scan = scan_repositories(repositories)?;
        {
            let mut models = self.write_models();
            for (name, paths) in &scan.duplicates {
                let places: Vec<String> = paths.iter().map(|path| path.display().to_string()).collect();
                models.insert(
                    name.clone(),
                    ModelRecord {
                        failure: Some(format!("model '{name}' is in more than one repository: {}", places.join(", "))),
                        ..Default::default()
                    },
                );
            }
            for model in &scan.models {
                models.insert(model.name.clone(), ModelRecord::default());
            }
        }
        let loads: Vec<_> = scan
            .models
            .into_iter()
            .map(|model| {
                let manager = Arc::clone(self);
                tokio::task::spawn_blocking(move || manager.load_model(&model))
            })
            .collect();
        for load in loads {
            if let Err(error) = load.await {
                tracing::error!(%error, "a model loading task failed");
            }
        }
        self.loading_done.store(true, Ordering::SeqCst);
        self.readiness.send_replace(self.server_ready());
        Ok(self.report())
    }

    fn read_models(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelRecord>> {
        // A panic while holding the lock cannot leave a record half-written
        // (records are replaced whole), so a poisoned lock is still usable.
        self.models.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_models(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail_model(&self, name: &str, reason: String) {
        tracing::error!(model = name, "failed to load: {reason}");
        let mut models = self.write_models();
        let record = models.entry(name.to_string()).or_default();
        record.failure = Some(reason);
    }

    fn load_model(&self, model: &ModelDirectory) {
        let name = model.name.as_str();
        let config = match prepare_config(model, &self.backend, self.options.autocomplete) {
            Ok(config) => Arc::new(config),
            Err(reason) => return self.fail_model(name, reason),
        };
        let available = match available_versions(&model.path) {
            Ok(available) => available,
            Err(reason) => return self.fail_model(name, reason),
        };
        let (selected, missing) = select_versions(config.version_policy.as_ref(), &available);
        if selected.is_empty() && missing.is_empty() {
            return self.fail_model(
                name,
                format!("no version directory in '{}' is selected by its version policy", model.path.display()),
            );
        }
        {
            let mut models = self.write_models();
            let record = models.entry(name.to_string()).or_default();
            record.config = Some(Arc::clone(&config));
            for &version in &selected {
                record.versions.insert(version, VersionRecord { state: VersionState::Loading, loaded: None });
            }
            for &version in &missing {
                let reason = format!("version {version} is named by the version policy but has no directory");
                record
                    .versions
                    .insert(version, VersionRecord { state: VersionState::Unavailable(reason), loaded: None });
            }
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
                self.record_version(name, version, loaded);
            }
        });
    }

    fn record_version(&self, name: &str, version: i64, loaded: Result<LoadedVersion>) {
        let record = match loaded {
            Ok(loaded) => {
                tracing::info!(model = name, version, "loaded");
                VersionRecord { state: VersionState::Ready, loaded: Some(Arc::new(loaded)) }
            }
            Err(error) => {
                tracing::error!(model = name, version, "failed to load: {error}");
                VersionRecord { state: VersionState::Unavailable(error.message().to_string()), loaded: None }
            }
        };
        self.write_models().entry(name.to_string()).or_default().versions.insert(version, record);
    }

    fn load_version(&self, model_dir: &Path, config: &Arc<ModelConfig>, version: i64) -> Result<LoadedVersion> {
        let started = Instant::now();
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
        let io = ModelIo::from_config(config);
        let labels = Labels::load(config, model_dir)?;
        let samples = warmup_samples(config, &io, model_dir)?;
        let statistics = Arc::new(StatisticsRecorder::new(&config.name, version));
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
        let label = format!("model '{}' version {version}", config.name);
        let scheduler =
            Scheduler::start(&label, SchedulingPolicy::from_config(config), instances, Arc::clone(&statistics))?;
        Ok(LoadedVersion {
            version,
            config: Arc::clone(config),
            io,
            labels,
            scheduler,
            statistics,
            load_duration: started.elapsed(),
        })
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
                VersionState::Loading => {}
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

    /// Ready means loading has finished and every model version is ready
    /// (Triton's strict readiness).
    pub fn server_ready(&self) -> bool {
        self.loading_done.load(Ordering::SeqCst) && self.index().iter().all(|entry| entry.state == VersionState::Ready)
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
        let record = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("model '{name}' is not in the model repository")))?;
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
                version_record.loaded.clone().ok_or_else(|| match &version_record.state {
                    VersionState::Unavailable(reason) => {
                        Error::unavailable(format!("model '{name}' version {version} is not ready: {reason}"))
                    }
                    _ => Error::unavailable(format!("model '{name}' version {version} is still loading")),
                })
            }
            None => record.versions.values().rev().find_map(|record| record.loaded.clone()).ok_or_else(|| {
                let reasons: Vec<&str> = record
                    .versions
                    .values()
                    .filter_map(|record| match &record.state {
                        VersionState::Unavailable(reason) => Some(reason.as_str()),
                        _ => None,
                    })
                    .collect();
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
        let record = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("model '{name}' is not in the model repository")))?;
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
                pending_requests: loaded.scheduler.pending_requests(),
                load_duration: loaded.load_duration,
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
        let unloaded: Vec<(String, Arc<LoadedVersion>)> = {
            let mut models = self.write_models();
            models
                .iter_mut()
                .flat_map(|(name, record)| {
                    record.versions.values_mut().filter_map(move |version_record| {
                        let loaded = version_record.loaded.take()?;
                        version_record.state = VersionState::Unavailable("unloaded".to_string());
                        Some((name.clone(), loaded))
                    })
                })
                .collect()
        };
        self.readiness.send_replace(false);
        for (name, loaded) in unloaded {
            loaded.scheduler.stop();
            tracing::info!(model = %name, version = loaded.version, "unloaded");
        }
    }

    /// Runs one inference request.
    pub async fn infer(&self, request: InferenceRequest) -> Result<InferenceResponse> {
        let loaded = self.resolve(&request.model_name, request.model_version)?;
        let model_name = request.model_name.clone();
        let id = request.id.clone();
        let options = RequestOptions::from_parameters(&model_name, &request.parameters)?;
        let classified = loaded.classified_outputs(&request)?;
        let validated = loaded.io.validate(request)?;
        let executed = loaded.scheduler.execute(validated, options).await?;
        let mut outputs = executed.outputs;
        for output in &mut outputs {
            output.shape = loaded.io.response_shape(&output.name, std::mem::take(&mut output.shape));
            if let Some(&(_, count)) = classified.iter().find(|(name, _)| *name == output.name) {
                *output = classify(&model_name, output, count, loaded.io.max_batch_size > 0, &loaded.labels)?;
            }
        }
        Ok(InferenceResponse {
            model_name,
            model_version: loaded.version,
            id,
            parameters: Default::default(),
            outputs,
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
    let config_path = model.path.join(CONFIG_FILENAME);
    let config = if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)
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
        let report = manager.load_repositories(&[repository.path().to_path_buf()]).await.unwrap();
        assert_eq!(report, LoadReport { ready: 2, failures: Vec::new() });
        manager.unload_all();
    }
}
