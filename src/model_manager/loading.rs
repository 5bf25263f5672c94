//! Loading models: the repositories at start, a model's configuration
//! and versions, and each version's instances.

use super::ensembles::name_steps_in_repository;
use super::*;

/// How long an unload or reload lets the requests that already hold a
/// version finish before it stops the version's instances anyway.
const RETIRE_GRACE: Duration = Duration::from_secs(30);

impl ModelManager {
    /// Loads the `startup` models of the repositories, models in parallel. A
    /// failing model is recorded and does not stop the others; a named model
    /// that is not in any repository is a failure of the report.
    pub async fn load_repositories(
        self: &Arc<Self>,
        repositories: &[PathBuf],
        startup: &StartupModels,
    ) -> std::result::Result<LoadReport, String> {
        let repositories: Vec<ModelRepository> = repositories.iter().cloned().map(ModelRepository::from).collect();
        let manager = Arc::clone(self);
        tokio::task::spawn_blocking(move || manager.refresh_cloud_copies())
            .await
            .map_err(|error| format!("copying the cloud model repositories failed: {error}"))??;
        let scan = scan_repositories(&repositories, self.options.namespacing)?;
        *self.repositories.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = repositories;
        // The models named at start, under the names they serve under: with
        // namespacing, a name several repositories use names each of them.
        let named: Vec<String> = match startup {
            StartupModels::All => Vec::new(),
            StartupModels::Named(names) => names.iter().flat_map(|name| serving_names(&scan, name)).collect(),
        };
        // A named ensemble brings its composing models (and theirs, for a
        // nested ensemble), as in Triton.
        let composing: Vec<String> = match startup {
            StartupModels::All => Vec::new(),
            StartupModels::Named(_) => self.in_dependency_order(&named),
        };
        let wanted = |name: &str| match startup {
            StartupModels::All => true,
            StartupModels::Named(_) => named.iter().chain(&composing).any(|wanted| wanted == name),
        };
        let mut missing = Vec::new();
        if let StartupModels::Named(names) = startup {
            for name in names {
                if !scan.duplicates.contains_key(name) && !scan.models.iter().any(|model| model.model_name() == name) {
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
                records
                    .insert(model.name.clone(), ModelRecord { namespace: Namespace::of(model), ..Default::default() });
            }
        }
        let loads: Vec<_> = models
            .into_iter()
            .map(|model| {
                let manager = Arc::clone(self);
                let loaded_for_ensemble = matches!(startup, StartupModels::Named(_) if !named.contains(&model.name));
                tokio::task::spawn_blocking(move || {
                    let record = manager.build_model(&model, &LoadOptions::default());
                    manager.write_models().insert(model.name, ModelRecord { loaded_for_ensemble, ..record });
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

    /// Loads a model's configuration and versions into a new record, off to
    /// the side: the versions that serve now keep serving meanwhile. The
    /// directory is looked at first, so a change made during the load is a
    /// change the next poll sees.
    pub(super) fn build_model(&self, model: &ModelDirectory, options: &LoadOptions) -> ModelRecord {
        let seen = DirectoryFingerprint::of(&model.path);
        ModelRecord { seen: Some(seen), ..self.build_record(model, options) }
    }

    pub(super) fn build_record(&self, model: &ModelDirectory, options: &LoadOptions) -> ModelRecord {
        let name = model.name.as_str();
        let failed = |reason: String| {
            tracing::error!(model = name, "failed to load: {reason}");
            ModelRecord { namespace: Namespace::of(model), ..ModelRecord::failed(reason) }
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
        if let Err(reason) = crate::repository_agent::run_before_load(&config, &model.path) {
            return failed(reason);
        }
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
        let mut record = ModelRecord {
            config: Some(Arc::clone(&config)),
            options: options.clone(),
            namespace: Namespace::of(model),
            ..Default::default()
        };
        for &version in &missing {
            let reason = format!("version {version} is named by the version policy but has no directory");
            record.versions.insert(version, VersionRecord { state: VersionState::Unavailable(reason), loaded: None });
        }
        // Held while the versions load (`--model-load-thread-count`).
        let _slot = (config.platform != ENSEMBLE_PLATFORM).then(|| self.load_slots.take());
        let (kept, selected) = self.unchanged_versions(model, &config, selected);
        for loaded in kept {
            tracing::info!(model = name, version = loaded.version, "unchanged, so it keeps serving as loaded");
            record.versions.insert(loaded.version, VersionRecord { state: VersionState::Ready, loaded: Some(loaded) });
        }
        // Versions load side by side, as Triton loads them.
        std::thread::scope(|scope| {
            let loads: Vec<_> = selected
                .into_iter()
                .map(|version| {
                    let config = &config;
                    let load = move || self.load_version_retrying(&model.path, config, version);
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

    /// Splits the `selected` versions of a model being loaded again into
    /// the serving ones it keeps as they are, with their instances and
    /// statistics, and those to load. As in Triton, a version is kept when
    /// the configuration is the one it serves with and the files it loaded
    /// from did not change since; an ensemble's versions always load again,
    /// planned against the composing models as they are now.
    fn unchanged_versions(
        &self,
        model: &ModelDirectory,
        config: &ModelConfig,
        selected: Vec<i64>,
    ) -> (Vec<Arc<LoadedVersion>>, Vec<i64>) {
        let serving: BTreeMap<i64, Arc<LoadedVersion>> = match self.read_models().get(&model.name) {
            Some(record) if config.platform != ENSEMBLE_PLATFORM && record.config.as_deref() == Some(config) => {
                record.loaded_versions().into_iter().map(|loaded| (loaded.version, loaded)).collect()
            }
            _ => return (Vec::new(), selected),
        };
        let mut kept = Vec::new();
        let mut to_load = Vec::new();
        for version in selected {
            match serving.get(&version) {
                Some(loaded) if loaded.files == DirectoryFingerprint::of_version(&model.path, version) => {
                    kept.push(Arc::clone(loaded));
                }
                _ => to_load.push(version),
            }
        }
        (kept, to_load)
    }

    /// Loads a version, trying again up to `load_retries` times when it
    /// fails (a GPU still freeing memory, a file still being copied), as
    /// Triton's `--model-load-retry-count` does; the last failure is the
    /// one reported.
    fn load_version_retrying(
        &self,
        model_dir: &Path,
        config: &Arc<ModelConfig>,
        version: i64,
    ) -> Result<LoadedVersion> {
        let mut tries_left = self.options.load_retries;
        loop {
            match self.load_version(model_dir, config, version) {
                Err(error) if tries_left > 0 => {
                    tries_left -= 1;
                    tracing::warn!(model = %config.name, version, "failed to load, trying again: {error}");
                }
                loaded => return loaded,
            }
        }
    }

    pub(super) fn load_version(
        &self,
        model_dir: &Path,
        config: &Arc<ModelConfig>,
        version: i64,
    ) -> Result<LoadedVersion> {
        let started = Instant::now();
        let files = DirectoryFingerprint::of_version(model_dir, version);
        let io = ModelIo::from_config(config);
        let labels = Labels::load(config, model_dir)?;
        let statistics = Arc::new(StatisticsRecorder::observing(
            &config.name,
            version,
            &latency_observations(config, self.options.latency_distributions),
        ));
        let label = format!("model '{}' version {version}", config.name);
        let execution = if config.platform == ENSEMBLE_PLATFORM {
            Execution::Ensemble(self.plan_ensemble(config)?)
        } else {
            Execution::Instances(self.start_instances(model_dir, config, version, &io, &label, &statistics)?)
        };
        let sequences = match (&execution, sequence_batching(config)) {
            (Execution::Instances(scheduler), Some(_)) => {
                Some(SequenceBatcher::new(&label, config, model_dir, scheduler.instance_count())?)
            }
            _ => None,
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
            sequences,
            files,
        })
    }

    /// Creates and warms up a model version's instances and starts its
    /// scheduler.
    pub(super) fn start_instances(
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
        // Registered first: a claim the rate limiter cannot meet fails the
        // load before any instance is created.
        let mut rate_limits = Vec::with_capacity(placements.len());
        for placement in &placements {
            let limit = match (&self.options.rate_limiter, &placement.rate_limiter) {
                (Some(limiter), Some(config)) => {
                    let device = match placement.device {
                        Device::Cpu => 0,
                        Device::Gpu(gpu) => gpu,
                    };
                    let limited = limiter.register(device, config).map_err(|reason| {
                        Error::invalid_argument(format!("{label} instance '{}': {reason}", placement.name))
                    })?;
                    Some(limited)
                }
                _ => None,
            };
            rate_limits.push(limit);
        }
        let creations = placements.iter().map(|placement| {
            let settings = InstanceSettings {
                name: placement.name.clone(),
                model_path: model_path.clone(),
                config: Arc::clone(config),
                device: placement.device,
                instances_of_model: placements.len(),
            };
            (placement.name.clone(), move || {
                let mut instance = backend.create_instance(&settings)?;
                warm_up(instance.as_mut(), &config.name, &settings.name, samples, recorder)?;
                Ok(instance)
            })
        });
        let instances: Vec<SchedulerInstance> = on_threads_named(creations.collect())
            .into_iter()
            .zip(placements.iter().zip(rate_limits))
            .map(|(backend, (placement, rate_limit))| {
                backend.map(|backend| SchedulerInstance { name: placement.name.clone(), backend, rate_limit })
            })
            .collect::<Result<_>>()?;
        Scheduler::start(label, SchedulingPolicy::from_config(config), instances, Arc::clone(statistics))
    }

    pub(super) fn report(&self) -> LoadReport {
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
pub(super) fn prepare_config_from(
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
        Some(backend.signature(&model_file, &config).map_err(|error| error.message().to_string())?)
    } else {
        None
    };
    // A folder registered under another name serves under that name
    // whatever its configuration calls it, as in Triton; an ensemble's
    // steps run the models of its own repository.
    let mut config =
        if model.renamed() { ModelConfig { name: model.model_name().to_string(), ..config } } else { config };
    name_steps_in_repository(&mut config, model);
    let config = autocomplete(config, model.model_name(), signature.as_ref(), options)?;
    check_config(&config)?;
    Ok(config)
}

/// The names that `name` serves under: itself, or with namespacing, where
/// several repositories have a model of that name, each of theirs.
pub(super) fn serving_names(scan: &RepositoryScan, name: &str) -> Vec<String> {
    let namesakes: Vec<String> = scan
        .models
        .iter()
        .filter(|model| model.model_name() == name && model.name != name)
        .map(|model| model.name.clone())
        .collect();
    if namesakes.is_empty() { vec![name.to_string()] } else { namesakes }
}

/// Why a model found in several repositories does not load.
pub(super) fn duplicate_reason(name: &str, paths: &[PathBuf]) -> String {
    let places: Vec<String> = paths.iter().map(|path| path.display().to_string()).collect();
    format!("model '{name}' is in more than one repository: {}", places.join(", "))
}

/// Takes model versions out of service that are no longer reachable
/// through the manager: waits (up to [`RETIRE_GRACE`]) until no request
/// holds one any more, then stops its instances, so the requests that
/// found it before it was swapped out or unloaded still get their answers.
pub(super) fn retire(versions: Vec<Arc<LoadedVersion>>) {
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
pub(super) fn on_threads_named<T: Send>(jobs: Vec<(String, impl FnOnce() -> Result<T> + Send)>) -> Vec<Result<T>> {
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

use crate::proto::inference::model_metrics::metric_control::MetricOptions;

/// The family of the first-response histogram, by which `model_metrics`
/// names it.
const FIRST_RESPONSE_FAMILY: &str = "nv_inference_first_response_histogram_ms";

/// The latency distributions a model version keeps: those the server asks
/// for, the first-response histogram with the bucket bounds the model's
/// `model_metrics` gives it, as in Triton.
fn latency_observations(config: &ModelConfig, distributions: LatencyDistributions) -> LatencyObservations {
    let mut bounds = FIRST_RESPONSE_BOUNDS.to_vec();
    for control in config.model_metrics.iter().flat_map(|metrics| &metrics.metric_control) {
        let family = control.metric_identifier.as_ref().map_or("", |identifier| identifier.family.as_str());
        match (family == FIRST_RESPONSE_FAMILY, &control.metric_options) {
            (true, Some(MetricOptions::HistogramOptions(options))) => bounds = options.buckets.clone(),
            (true, None) => {}
            (false, _) => tracing::warn!(
                model = %config.name,
                "metric family '{family}' in model_metrics is not a metric whose buckets can be set"
            ),
        }
    }
    LatencyObservations {
        summaries: distributions.summaries,
        first_response_bounds: distributions.first_response_histogram.then_some(bounds),
    }
}

/// One instance that a configuration asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePlacement {
    /// `<group>_<n>`.
    pub name: String,
    /// Where it executes.
    pub device: Device,
    /// Its group's `rate_limiter`.
    pub rate_limiter: Option<ModelRateLimiter>,
}

/// Names and devices of the instances a completed configuration asks for:
/// `count` per group on the CPU, or `count` per listed GPU, named
/// `<group>_<n>` with n counting within the group and device, as Triton
/// names them. Passive instances are left out: Triton loads them but never
/// sends them requests, and this server has nothing else to use them for.
pub fn instance_placements(config: &ModelConfig) -> Vec<InstancePlacement> {
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
            placements.extend((0..count).map(|index| InstancePlacement {
                name: format!("{}_{index}", group.name),
                device,
                rate_limiter: group.rate_limiter.clone(),
            }));
        }
    }
    placements
}
