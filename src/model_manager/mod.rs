//! The models the server knows: loading them from the repositories, their
//! state per version, and routing requests to the right loaded version.
//!
//! This file holds the manager, its queries and the request path; the
//! rest is split by concern: `loading.rs` (the repositories at start, a
//! model's configuration, versions and instances), `control.rs` (load and
//! unload requests, mode `poll`, the repository index), `ensembles.rs`
//! (planning and running ensemble versions), `loaded_version.rs` (a
//! serving version and the records of each model's versions),
//! `registered_repositories.rs` (repositories added while the server runs),
//! `cloud_copies.rs` (repositories in cloud storage, served from local
//! copies) and `uploaded_model.rs` (the directory of a model whose files came with
//! its load request).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backend::{Backend, Device, InstanceSettings};
use crate::classification::{Labels, check_classifiable, classify, requested_classes};
use crate::directory_fingerprint::DirectoryFingerprint;
use crate::ensemble::{ENSEMBLE_PLATFORM, EnsemblePlan, StepRequest};
use crate::error::{Error, Result};
use crate::inference::{BatchPosition, InferenceRequest, InferenceResponse, RequestedOutput};
use crate::model_config::{
    AutocompleteOptions, ModelConfig, autocomplete, check_config, parse_json_config, parse_text_format,
};
use crate::model_control::{
    LoadOptions, ModelControlMode, RepositoryIndexEntry, StartupModels, UnloadOptions, control_refusal,
};
use crate::proto::inference::ModelRateLimiter;
use crate::proto::inference::model_instance_group::Kind;
use crate::repository::{
    CONFIG_FILENAME, ModelDirectory, ModelRepository, RepositoryScan, available_versions, config_file,
    scan_repositories, select_versions,
};
use crate::response_cache::{ModelCache, ResponseCache};
use crate::scheduler::{Executed, RateLimiter, RequestOptions, Scheduler, SchedulerInstance, SchedulingPolicy};
use crate::sequence::{SequenceBatcher, SequenceRequest, sequence_batching};
use crate::shared_memory::{SharedMemoryRef, SharedMemoryRegistry};
use crate::statistics::{
    ExecutionTimes, FIRST_RESPONSE_BOUNDS, FailureReason, LatencyDistributions, LatencyObservations, LatencySnapshot,
    ModelStatistics, StatisticsRecorder,
};
use crate::tensor::{DataType, Tensor};
use crate::trace::{Activity, RequestTrace, TensorActivity};
use crate::validation::{ModelIo, ValidatedRequest};
use crate::warmup::{warm_up, warmup_samples};

mod cloud_copies;
mod control;
mod ensembles;
mod load_slots;
mod loaded_version;
mod loading;
mod registered_repositories;
mod uploaded_model;

use self::load_slots::LoadSlots;
use self::loaded_version::{Execution, LoadedVersion, ModelRecord, Namespace, VersionRecord};
pub use self::loading::{InstancePlacement, instance_placements, prepare_config};
use self::loading::{duplicate_reason, retire};
use self::uploaded_model::UploadedModel;

/// With namespacing, the models kept under their directories' paths whose
/// name is `name` (several repositories have a model of that name), with
/// the names they are kept under.
fn namesakes<'a>(
    models: &'a BTreeMap<String, ModelRecord>,
    name: &str,
) -> impl Iterator<Item = (&'a String, &'a ModelRecord)> {
    models.iter().filter(move |(serving_name, record)| record.model_name(serving_name) == name && *serving_name != name)
}

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
    /// Triton's `--model-namespacing`: each repository is a namespace, so
    /// that models of the same name in different repositories all load.
    pub namespacing: bool,
    /// The response cache (`--cache-config local,size=N`) that models with
    /// `response_cache { enable: true }` use.
    pub response_cache: Option<Arc<ResponseCache>>,
    /// Triton's `--model-load-retry-count`: how many more times a version
    /// that failed to load is tried before it is reported as failed.
    pub load_retries: u32,
    /// Triton's `--model-load-thread-count`: how many models load at once;
    /// 0 for no limit.
    pub load_threads: usize,
    /// The rate limiter of `--rate-limit=execution_count`, which every
    /// model's instances with a `rate_limiter` share; `None` when rates
    /// are not limited.
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// The latency distributions each model version keeps for the metrics
    /// (`--metrics-config summary_latencies`, `histogram_latencies`).
    pub latency_distributions: LatencyDistributions,
}

/// What the metrics endpoint reports of one loaded model version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionMetrics {
    /// With model namespacing, its repository (Triton's `namespace` label).
    pub namespace: Option<String>,
    /// Its statistics so far.
    pub statistics: ModelStatistics,
    /// Its latency distributions, where the server keeps them.
    pub latency: Option<LatencySnapshot>,
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

/// Every model the server knows and its loaded versions.
pub struct ModelManager {
    backend: std::result::Result<Arc<dyn Backend>, String>,
    options: ManagerOptions,
    models: RwLock<BTreeMap<String, ModelRecord>>,
    /// The repositories: those given at start, then those registered
    /// while the server runs.
    repositories: RwLock<Vec<ModelRepository>>,
    /// The local copies among the repositories of repositories in cloud
    /// storage, refreshed before the repositories are read for a change.
    cloud_copies: RwLock<Vec<Arc<crate::cloud_storage::RepositoryCopy>>>,
    /// Held by each load or unload request, so that they happen one at a
    /// time and a model is never loaded twice at once.
    control: Mutex<()>,
    /// How many models may create their instances at once.
    load_slots: LoadSlots,
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
            load_slots: LoadSlots::new(options.load_threads),
            options,
            models: RwLock::new(BTreeMap::new()),
            repositories: RwLock::new(Vec::new()),
            cloud_copies: RwLock::new(Vec::new()),
            control: Mutex::new(()),
            loading_done: AtomicBool::new(false),
            readiness,
        }
    }

    /// Follows server readiness, for health watchers.
    pub fn subscribe_readiness(&self) -> watch::Receiver<bool> {
        self.readiness.subscribe()
    }

    fn read_models(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelRecord>> {
        // A panic while holding the lock cannot leave a record half-written
        // (records are replaced whole), so a poisoned lock is still usable.
        self.models.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_models(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The repositories models load from now.
    fn repositories(&self) -> Vec<ModelRepository> {
        self.repositories.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The model directories of the repositories, in namespaces when the
    /// manager has them.
    fn scan(&self) -> std::result::Result<RepositoryScan, String> {
        scan_repositories(&self.repositories(), self.options.namespacing)
    }

    /// The record of the model clients call `name`. With namespacing, a
    /// model whose name several repositories use is kept under its
    /// directory's path: the name finds it while it is the only one of
    /// that name the manager knows, and is ambiguous otherwise, as in
    /// Triton.
    fn find_record<'a>(&self, models: &'a BTreeMap<String, ModelRecord>, name: &str) -> Result<&'a ModelRecord> {
        if let Some(record) = models.get(name) {
            return Ok(record);
        }
        let namesakes: Vec<&ModelRecord> = namesakes(models, name).map(|(_, record)| record).collect();
        match namesakes.as_slice() {
            [] => Err(self.unknown_model(name)),
            [record] => Ok(record),
            several => {
                let places: Vec<String> = several
                    .iter()
                    .filter_map(|record| record.namespace.as_ref())
                    .map(|namespace| namespace.repository.display().to_string())
                    .collect();
                Err(Error::invalid_argument(format!(
                    "There are {} models named '{name}', one in each of the repositories {}: model namespace must \
                     be provided to resolve ambiguity; only the ensembles of each repository can tell them apart",
                    several.len(),
                    places.join(", ")
                )))
            }
        }
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

    /// Runs a validated request on `loaded`: on its instances, or through
    /// its ensemble's steps; from the response cache where it may be.
    async fn execute(
        &self,
        loaded: &LoadedVersion,
        request: ValidatedRequest,
        options: RequestOptions,
        trace: Option<Arc<RequestTrace>>,
        sequence: Option<SequenceRequest>,
    ) -> Result<Executed> {
        match &loaded.execution {
            Execution::Instances(scheduler) => {
                let run = |request| loaded.run_on_instances(scheduler, request, options, trace, sequence);
                loaded.run_cached(request, run).await
            }
            Execution::Ensemble(plan) => {
                let run = |request| self.run_ensemble(loaded, plan, request, options, trace, sequence);
                loaded.run_cached(request, run).await
            }
        }
    }

    /// Every model version the server knows and its state, by name and
    /// version.
    pub fn index(&self) -> Vec<ModelIndexEntry> {
        self.index_by_serving_name().into_iter().map(|(_, entry)| entry).collect()
    }

    /// [`Self::index`], each entry with the name its model is kept under
    /// (which differs with namespacing, for models whose name several
    /// repositories use).
    fn index_by_serving_name(&self) -> Vec<(String, ModelIndexEntry)> {
        let models = self.read_models();
        let mut entries = Vec::new();
        for (serving_name, record) in models.iter() {
            let name = &record.model_name(serving_name).to_string();
            let mut push = |entry| entries.push((serving_name.clone(), entry));
            if let Some(failure) = &record.failure {
                push(ModelIndexEntry {
                    name: name.clone(),
                    version: None,
                    state: VersionState::Unavailable(failure.clone()),
                });
                continue;
            }
            if record.versions.is_empty() {
                push(ModelIndexEntry { name: name.clone(), version: None, state: VersionState::Loading });
            }
            for (&version, version_record) in &record.versions {
                push(ModelIndexEntry {
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
        let record = self.find_record(&models, name)?;
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
        let record = self.find_record(&models, name)?;
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
            .filter(|(model, record)| name.is_none_or(|name| name == record.model_name(model)))
            .flat_map(|(_, record)| record.versions.values().filter_map(|version| version.loaded.as_ref()))
            .map(|loaded| loaded.statistics.snapshot())
            .collect())
    }

    /// The metrics of every loaded model version, by name and version.
    pub fn metrics(&self) -> Vec<VersionMetrics> {
        let models = self.read_models();
        models
            .values()
            .flat_map(|record| {
                let namespace = record.namespace.as_ref().map(|namespace| namespace.repository.display().to_string());
                record
                    .versions
                    .values()
                    .filter_map(|version| version.loaded.as_ref())
                    .map(move |loaded| (loaded, namespace.clone()))
            })
            .map(|(loaded, namespace)| VersionMetrics {
                namespace,
                statistics: loaded.statistics.snapshot(),
                latency: loaded.statistics.latency_snapshot(),
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
                self.find_record(&models, name)
                    .ok()
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

    /// The registered shared-memory regions.
    pub fn shared_memory(&self) -> &SharedMemoryRegistry {
        &self.shared_memory
    }

    /// Registers a CUDA shared-memory region (see
    /// [`SharedMemoryRegistry::register_cuda`]) on a blocking thread: the
    /// first one loads and initialises the NVIDIA driver, which can take a
    /// second on a machine with many GPUs, and the frontend's threads must
    /// not wait on it.
    pub async fn register_cuda_shared_memory(
        self: &Arc<Self>,
        name: String,
        raw_handle: Vec<u8>,
        device_id: i64,
        byte_size: u64,
    ) -> Result<()> {
        let manager = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            manager.shared_memory.register_cuda(&name, &raw_handle, device_id, byte_size)
        })
        .await
        .map_err(|error| Error::internal(format!("registering CUDA shared memory region failed: {error}")))?
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
            let what = format!("model '{model_name}': input '{}'", input.name);
            input.data = self.shared_memory.read(&place, &what).await?;
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
        let sequence = SequenceRequest::from_parameters(&model_name, &request.parameters)?;
        let classified = loaded.classified_outputs(&request)?;
        let validated = loaded.io.validate(request)?;
        if let Some(trace) = &trace {
            trace.tensors(TensorActivity::QueueInput, &validated.inputs);
        }
        let executed = self.execute(&loaded, validated, options, trace.clone(), sequence).await?;
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
                self.shared_memory.write(place, &what, std::mem::take(&mut output.data)).await?;
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

#[cfg(test)]
mod tests {
    use super::loading::on_threads_named;
    use super::*;
    use crate::backend::ModelInstance;
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
        let placed: Vec<(&str, Device)> =
            placements.iter().map(|placement| (placement.name.as_str(), placement.device)).collect();
        assert_eq!(placed, expected);
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

        fn signature(&self, _: &Path, _: &ModelConfig) -> Result<crate::backend::ModelSignature> {
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
            tokio::spawn(async move { manager.unload_model("n", UnloadOptions::default()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!unloading.is_finished(), "the unload did not wait for the request holding the version");
        assert_eq!(states(&manager)[0], ("n".to_string(), Some(1), Some("UNAVAILABLE"), "unloaded".to_string()));
        drop(held);
        unloading.await.unwrap().unwrap();
        assert!(manager.server_ready());
        assert_eq!(
            manager.unload_model("none", UnloadOptions::default()).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        manager.unload_all();
    }

    #[tokio::test]
    async fn a_registered_repository_serves_its_folder_under_the_mapped_name() {
        let (start, archive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_model(start.path(), "n");
        // The folder's configuration calls it "model"; mapped, it serves as
        // "resnet.tar.gz" all the same.
        write_model(archive.path(), "model");
        let backend = MeetingBackend { expected: 1, arrived: Default::default(), all_here: Default::default() };
        let options = ManagerOptions { control: ModelControlMode::Explicit, ..Default::default() };
        let manager = Arc::new(ModelManager::new(Ok(Arc::new(backend)), options));
        manager.load_repositories(&[start.path().to_path_buf()], &StartupModels::Named(Vec::new())).await.unwrap();
        let mapping = |name: &str| mapping_of("model", name);

        manager.register_repository(archive.path(), mapping("resnet.tar.gz")).unwrap();
        manager.load_model("resnet.tar.gz", LoadOptions::default()).await.unwrap();
        assert_eq!(manager.model_config("resnet.tar.gz", None).unwrap().name, "resnet.tar.gz");
        assert_eq!(manager.load_model("model", LoadOptions::default()).await.unwrap_err().kind(), ErrorKind::NotFound);

        let again = manager.register_repository(archive.path(), mapping("other")).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists);
        assert!(again.message().contains("has already been registered"), "{again}");
        let elsewhere = tempfile::tempdir().unwrap();
        write_model(elsewhere.path(), "model");
        let conflict = manager.register_repository(elsewhere.path(), mapping("resnet.tar.gz")).unwrap_err();
        assert_eq!(conflict.kind(), ErrorKind::AlreadyExists);
        assert!(conflict.message().contains("conflicting mapping for 'resnet.tar.gz'"), "{conflict}");
        let missing = manager.register_repository(elsewhere.path(), mapping_of("absent", "x")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::InvalidArgument);

        // Unregistered, the model still serves until it is unloaded, and
        // cannot load again.
        manager.unregister_repository(archive.path()).unwrap();
        assert!(manager.model_ready("resnet.tar.gz", None));
        manager.unload_model("resnet.tar.gz", UnloadOptions::default()).await.unwrap();
        assert_eq!(
            manager.load_model("resnet.tar.gz", LoadOptions::default()).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let unknown = manager.unregister_repository(archive.path()).unwrap_err();
        assert_eq!(unknown.kind(), ErrorKind::InvalidArgument);
        manager.unload_all();
    }

    fn mapping_of(folder: &str, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(folder.to_string(), name.to_string())])
    }

    /// A backend whose first `failures` instance creations fail.
    struct FlakyBackend {
        failures: std::sync::Mutex<u32>,
    }

    impl Backend for FlakyBackend {
        fn name(&self) -> &'static str {
            crate::model_config::ONNX_BACKEND
        }

        fn signature(&self, _: &Path, _: &ModelConfig) -> Result<crate::backend::ModelSignature> {
            Err(Error::internal("the test configuration lists inputs and outputs"))
        }

        fn create_instance(&self, _: &InstanceSettings) -> Result<Box<dyn ModelInstance>> {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(Error::unavailable(format!("flaky, {} failures to go", *failures)));
            }
            Ok(Box::new(IdleInstance))
        }
    }

    #[tokio::test]
    async fn a_failed_load_is_tried_again_as_often_as_asked() {
        let repository = tempfile::tempdir().unwrap();
        write_model(repository.path(), "m");
        let config = repository.path().join("m").join("config.pbtxt");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, format!("{text}\ninstance_group [ {{ count: 1 kind: KIND_CPU }} ]")).unwrap();
        let load = |failures: u32, load_retries: u32| {
            let backend = FlakyBackend { failures: std::sync::Mutex::new(failures) };
            let manager = Arc::new(ModelManager::new(
                Ok(Arc::new(backend)),
                ManagerOptions { load_retries, ..Default::default() },
            ));
            let repositories = [repository.path().to_path_buf()];
            async move {
                let report = manager.load_repositories(&repositories, &StartupModels::All).await.unwrap();
                manager.unload_all();
                report
            }
        };
        assert_eq!(load(2, 2).await, LoadReport { ready: 1, failures: Vec::new() });
        let failed = load(2, 1).await;
        assert_eq!(failed.ready, 0);
        assert!(failed.failures[0].contains("flaky, 0 failures to go"), "{:?}", failed.failures);
    }

    /// A backend that counts the instances being created at once.
    #[derive(Default)]
    struct CountingBackend {
        creating: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    impl Backend for CountingBackend {
        fn name(&self) -> &'static str {
            crate::model_config::ONNX_BACKEND
        }

        fn signature(&self, _: &Path, _: &ModelConfig) -> Result<crate::backend::ModelSignature> {
            Err(Error::internal("the test configuration lists inputs and outputs"))
        }

        fn create_instance(&self, _: &InstanceSettings) -> Result<Box<dyn ModelInstance>> {
            let now = self.creating.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            self.creating.fetch_sub(1, Ordering::SeqCst);
            Ok(Box::new(IdleInstance))
        }
    }

    #[tokio::test]
    async fn no_more_models_load_at_once_than_the_load_thread_count() {
        let repository = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c", "d"] {
            write_model(repository.path(), name);
            let config = repository.path().join(name).join("config.pbtxt");
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, format!("{text}\ninstance_group [ {{ count: 1 kind: KIND_CPU }} ]")).unwrap();
        }
        // With no limit all four load side by side; with 2, two at a time.
        for (load_threads, expected) in [(0, 4), (2, 2)] {
            let backend = Arc::new(CountingBackend::default());
            let backend_handle: Arc<dyn Backend> = backend.clone();
            let manager =
                Arc::new(ModelManager::new(Ok(backend_handle), ManagerOptions { load_threads, ..Default::default() }));
            let report =
                manager.load_repositories(&[repository.path().to_path_buf()], &StartupModels::All).await.unwrap();
            assert_eq!(report.ready, 4, "{report:?}");
            assert_eq!(backend.most.load(Ordering::SeqCst), expected, "with {load_threads} load threads");
            manager.unload_all();
        }
    }

    #[tokio::test]
    async fn a_reload_keeps_the_versions_that_did_not_change() {
        let repository = tempfile::tempdir().unwrap();
        write_model(repository.path(), "m");
        let model = repository.path().join("m");
        let config = std::fs::read_to_string(model.join("config.pbtxt")).unwrap();
        let config =
            format!("{config}\nversion_policy {{ all {{}} }}\ninstance_group [ {{ count: 1 kind: KIND_CPU }} ]");
        std::fs::write(model.join("config.pbtxt"), config).unwrap();
        let backend =
            Arc::new(MeetingBackend { expected: 1, arrived: Default::default(), all_here: Default::default() });
        let options = ManagerOptions { control: ModelControlMode::Explicit, ..Default::default() };
        let manager = Arc::new(ModelManager::new(Ok(Arc::clone(&backend) as Arc<dyn Backend>), options));
        let repositories = [repository.path().to_path_buf()];
        manager.load_repositories(&repositories, &StartupModels::Named(vec!["m".into()])).await.unwrap();
        let serving = |version| Arc::downgrade(&manager.resolve("m", Some(version)).unwrap());
        let created = || *backend.arrived.lock().unwrap();
        let first = serving(1);
        manager.resolve("m", Some(1)).unwrap().statistics.record_cache_hit(Duration::ZERO, Duration::ZERO);

        // Nothing changed: the version, its instances and statistics stay.
        manager.load_model("m", LoadOptions::default()).await.unwrap();
        assert!(first.ptr_eq(&serving(1)));
        assert_eq!(created(), 1);
        assert_eq!(manager.statistics(Some("m"), Some(1)).unwrap()[0].inference_stats.cache_hit.count, 1);

        // A version added: only it loads.
        std::fs::create_dir(model.join("2")).unwrap();
        std::fs::write(model.join("2").join("model.onnx"), b"").unwrap();
        manager.load_model("m", LoadOptions::default()).await.unwrap();
        assert!(first.ptr_eq(&serving(1)));
        assert_eq!(created(), 2);
        let second = serving(2);

        // A version's file replaced: that version loads again.
        std::fs::write(model.join("1").join("model.onnx"), b"new weights").unwrap();
        manager.load_model("m", LoadOptions::default()).await.unwrap();
        assert!(!first.ptr_eq(&serving(1)));
        assert!(first.upgrade().is_none(), "the replaced version was released");
        assert!(second.ptr_eq(&serving(2)));
        assert_eq!(created(), 3);

        // Another configuration: every version loads again.
        let replaced = serving(1);
        let other = LoadOptions {
            config: Some(
                r#"{"name": "m", "backend": "onnxruntime", "version_policy": {"all": {}}, "max_batch_size": 2,
                    "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
                    "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
                    "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}]}"#
                    .into(),
            ),
            ..Default::default()
        };
        manager.load_model("m", other).await.unwrap();
        assert!(!replaced.ptr_eq(&serving(1)) && !second.ptr_eq(&serving(2)));
        assert_eq!(created(), 5);
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
        assert_eq!(manager.unload_model("m", UnloadOptions::default()).await.unwrap_err().message(), refusal);
    }
}
