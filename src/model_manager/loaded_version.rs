//! A loaded model version and the records of each model's versions.

use super::*;

/// How a loaded model version runs requests.
pub(super) enum Execution {
    /// On instances of its own, which its scheduler feeds.
    Instances(Scheduler),
    /// As an ensemble: a pipeline of other models' requests.
    Ensemble(EnsemblePlan),
}

/// A model version that is loaded and serving.
pub struct LoadedVersion {
    pub(super) version: i64,
    pub(super) config: Arc<ModelConfig>,
    pub(super) io: ModelIo,
    pub(super) labels: Labels,
    pub(super) execution: Execution,
    pub(super) statistics: Arc<StatisticsRecorder>,
    /// How long loading took: creating and warming up every instance.
    pub(super) load_duration: Duration,
    /// Its part of the response cache, when its configuration enables the
    /// cache and the server has one.
    pub(super) response_cache: Option<ModelCache>,
    /// Its sequences, when it is a stateful model (`sequence_batching`).
    pub(super) sequences: Option<SequenceBatcher>,
    /// The files it loaded from, as they were just before the load: a
    /// reload with the same configuration keeps the version while they
    /// stay so.
    pub(super) files: DirectoryFingerprint,
}

impl LoadedVersion {
    /// Runs a validated request with `run`, or answers it from the response
    /// cache when the model uses one and an identical request ran before;
    /// the answer of a request that ran is kept there for the next.
    pub(super) async fn run_cached<F, Fut>(&self, request: ValidatedRequest, run: F) -> Result<Executed>
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
                Execution::Ensemble(_) => Ok(Executed::without_running(outputs)),
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

    /// Runs a validated request on its instances through `scheduler`, the
    /// request of a sequence model through its sequence batcher.
    pub(super) async fn run_on_instances(
        &self,
        scheduler: &Scheduler,
        request: ValidatedRequest,
        options: RequestOptions,
        trace: Option<Arc<RequestTrace>>,
        sequence: Option<SequenceRequest>,
    ) -> Result<Executed> {
        match &self.sequences {
            Some(sequences) => {
                let arrived = Instant::now();
                let run = |request| scheduler.execute_since(request, options, trace, arrived);
                sequences.run(sequence, request, run).await
            }
            None => scheduler.execute(request, options, trace).await,
        }
    }

    /// Requests waiting in its queue, and for a sequence model those
    /// waiting for their sequence's turn or a slot; an ensemble has none of
    /// its own.
    pub(super) fn pending_requests(&self) -> usize {
        let waiting = self.sequences.as_ref().map_or(0, SequenceBatcher::waiting_requests);
        match &self.execution {
            Execution::Instances(scheduler) => scheduler.pending_requests() + waiting,
            Execution::Ensemble(_) => 0,
        }
    }

    /// Stops its scheduler and instances (see [`Scheduler::stop`]).
    pub(super) fn stop(&self) {
        if let Execution::Instances(scheduler) = &self.execution {
            scheduler.stop();
        }
    }

    /// The outputs `request` wants as classes, with how many; refused
    /// before the model runs when an output's datatype cannot be
    /// classified. Unknown outputs are left to validation to report.
    pub(super) fn classified_outputs(&self, request: &InferenceRequest) -> Result<Vec<(String, usize)>> {
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

pub(super) struct VersionRecord {
    pub(super) state: VersionState,
    pub(super) loaded: Option<Arc<LoadedVersion>>,
}

/// With model namespacing, where a model belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Namespace {
    /// The model's name (a model whose name several repositories use is
    /// kept under its directory's path, not under this name).
    pub(super) name: String,
    /// The repository it loaded from: its namespace.
    pub(super) repository: PathBuf,
}

impl Namespace {
    /// The namespace of a model directory, when the manager has namespaces.
    pub(super) fn of(model: &ModelDirectory) -> Option<Self> {
        let repository = model.namespace.clone()?;
        Some(Self { name: model.model_name().to_string(), repository })
    }
}

#[derive(Default)]
pub(super) struct ModelRecord {
    pub(super) config: Option<Arc<ModelConfig>>,
    pub(super) versions: BTreeMap<i64, VersionRecord>,
    /// A failure that stopped the whole model (bad configuration, no
    /// version directories, ...).
    pub(super) failure: Option<String>,
    /// The model directory as it was when the record was last built from
    /// it, so that mode `poll` can tell when it changed.
    pub(super) seen: Option<DirectoryFingerprint>,
    /// What the load that built it asked for (a configuration given with
    /// the request), so that re-planning an ensemble loads it the same way;
    /// the files a load sent are in `uploaded`, not here.
    pub(super) options: LoadOptions,
    /// The directory written from the files the load request sent, which
    /// the model loaded from instead of the repositories'; removed when the
    /// record is replaced or the model unloaded.
    pub(super) uploaded: Option<Arc<UploadedModel>>,
    /// Loaded only because an ensemble that needs it was (mode
    /// `explicit`): an unload of that ensemble with `unload_dependents`
    /// takes it along, as Triton's does with models not loaded explicitly.
    pub(super) loaded_for_ensemble: bool,
    /// With model namespacing, the model's name and repository.
    pub(super) namespace: Option<Namespace>,
}

impl ModelRecord {
    /// The name clients know the model by, when it is kept under
    /// `serving_name`.
    pub(super) fn model_name<'a>(&'a self, serving_name: &'a str) -> &'a str {
        self.namespace.as_ref().map_or(serving_name, |namespace| &namespace.name)
    }

    /// A model that failed before any version was tried.
    pub(super) fn failed(reason: String) -> Self {
        Self { failure: Some(reason), ..Default::default() }
    }

    /// Why the model did not load completely, or `None` when every version
    /// it tried serves.
    pub(super) fn failure_reason(&self) -> Option<String> {
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
    pub(super) fn loaded_versions(&self) -> Vec<Arc<LoadedVersion>> {
        self.versions.values().filter_map(|version| version.loaded.clone()).collect()
    }

    /// The versions that serve here and that `other` does not hold (a
    /// reload keeps the unchanged ones in its new record).
    pub(super) fn versions_not_in(&self, other: Option<&ModelRecord>) -> Vec<Arc<LoadedVersion>> {
        let held = other.map(ModelRecord::loaded_versions).unwrap_or_default();
        self.loaded_versions().into_iter().filter(|loaded| !held.iter().any(|kept| Arc::ptr_eq(kept, loaded))).collect()
    }

    /// Marks every version unloaded and hands back those that served, and
    /// the directory of the files a load request sent (a later load sends
    /// them again or loads from the repositories). The caller drops the
    /// directory once it no longer holds the models' lock: removing it
    /// takes as long as the file system needs.
    pub(super) fn unload(&mut self) -> (Vec<Arc<LoadedVersion>>, Option<Arc<UploadedModel>>) {
        self.failure = None;
        let versions = self
            .versions
            .values_mut()
            .filter_map(|version| {
                version.state = VersionState::Unloaded;
                version.loaded.take()
            })
            .collect();
        (versions, self.uploaded.take())
    }
}
