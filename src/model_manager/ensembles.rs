//! Ensembles in the model manager: planning an ensemble version against
//! its composing models at load, and running its steps as requests of
//! those models.

use std::pin::Pin;

use super::*;
use crate::proto::inference::model_config::SchedulingChoice;

/// What running one ensemble step gives: its outputs and its execution's
/// times.
type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(Vec<Tensor>, ExecutionTimes)>> + Send + 'a>>;

/// How long an ensemble loading at start waits for a composing model that
/// is still loading.
const COMPOSING_MODEL_WAIT: Duration = Duration::from_secs(600);

/// The models the steps of an ensemble's configuration run, each once;
/// none for a configuration that is not an ensemble's, or whose steps do
/// not make a plan (loading it says why).
pub(super) fn ensemble_steps(config: &ModelConfig) -> Vec<String> {
    if config.platform != ENSEMBLE_PLATFORM {
        return Vec::new();
    }
    EnsemblePlan::from_config(config).map(|plan| plan.model_names()).unwrap_or_default()
}

/// Names the models of `config`'s ensemble steps as `model`'s repository
/// serves them: a step naming a folder of that repository that serves
/// under a mapped name runs that model.
pub(super) fn name_steps_in_repository(config: &mut ModelConfig, model: &ModelDirectory) {
    if let Some(SchedulingChoice::EnsembleScheduling(scheduling)) = &mut config.scheduling_choice {
        for step in &mut scheduling.step {
            step.model_name = model.model_named(&step.model_name);
        }
    }
}

impl ModelManager {
    /// The models the steps of `model` run, if its configuration (the load
    /// request's, or its file's) makes it an ensemble. Read without
    /// completing or checking it: loading the ensemble does that, and
    /// reports what is wrong.
    pub(super) fn composing_model_names(&self, model: &ModelDirectory, options: &LoadOptions) -> Vec<String> {
        let config = match &options.config {
            Some(json) => parse_json_config(json).ok(),
            None => std::fs::read_to_string(config_file(&model.path, self.options.config_name.as_deref()))
                .ok()
                .and_then(|text| parse_text_format(&text).ok()),
        };
        let Some(mut config) = config else { return Vec::new() };
        name_steps_in_repository(&mut config, model);
        ensemble_steps(&config)
    }

    /// The models the steps of model `name` run: from its record's
    /// configuration when it has one, else from its directory; none for a
    /// model that is not an ensemble or is not in the repositories.
    fn steps_of(&self, name: &str) -> Vec<String> {
        let recorded = self.read_models().get(name).and_then(|record| record.config.clone());
        match recorded {
            Some(config) => ensemble_steps(&config),
            None => self
                .find_model_directory(name)
                .map(|model| self.composing_model_names(&model, &LoadOptions::default()))
                .unwrap_or_default(),
        }
    }

    /// `roots` and every model their steps run, through nested ensembles,
    /// each once and after the models its own steps run: the order to load
    /// them in. A cycle is cut where it closes (planning refuses it).
    pub(super) fn in_dependency_order(&self, roots: &[String]) -> Vec<String> {
        fn visit(manager: &ModelManager, name: &str, path: &mut Vec<String>, order: &mut Vec<String>) {
            if order.iter().any(|done| done == name) || path.iter().any(|open| open == name) {
                return;
            }
            path.push(name.to_string());
            for composing in manager.steps_of(name) {
                visit(manager, &composing, path, order);
            }
            path.pop();
            order.push(name.to_string());
        }
        let mut order = Vec::new();
        for root in roots {
            visit(self, root, &mut Vec::new(), &mut order);
        }
        order
    }

    /// Refuses an ensemble whose steps run the ensemble itself, directly or
    /// through the ensembles they run, as Triton refuses such a cycle;
    /// checked before any composing model is waited for, so that ensembles
    /// in a cycle do not wait for each other.
    fn check_no_cycle(&self, ensemble: &str, steps: &[String], path: &mut Vec<String>) -> Result<()> {
        for name in steps {
            path.push(name.clone());
            if name == ensemble {
                return Err(Error::invalid_argument(format!(
                    "the ensemble runs itself: {ensemble} -> {}",
                    path.join(" -> ")
                )));
            }
            // A cycle that does not pass through this ensemble is refused
            // where it closes, at the load of one of its own ensembles.
            if !path[..path.len() - 1].contains(name) {
                self.check_no_cycle(ensemble, &self.steps_of(name), path)?;
            }
            path.pop();
        }
        Ok(())
    }

    /// The plan of an ensemble, checked against the composing models as
    /// they are loaded now: each one serves (an ensemble among them too),
    /// has the inputs and outputs the steps name, with the datatypes the
    /// ensemble's tensors have, and batches at least as much as the
    /// ensemble; no step runs the ensemble itself. At start, a composing
    /// model still loading is waited for.
    pub(super) fn plan_ensemble(&self, config: &ModelConfig) -> Result<EnsemblePlan> {
        let plan = EnsemblePlan::from_config(config).map_err(Error::invalid_argument)?;
        self.check_no_cycle(&config.name, &plan.model_names(), &mut Vec::new())?;
        let mut composing = Vec::with_capacity(plan.steps.len());
        for (index, step) in plan.steps.iter().enumerate() {
            let at_step =
                |what: &str| Error::invalid_argument(format!("step {index} (model '{}'): {what}", step.model_name));
            let model =
                self.composing_model(&step.model_name, step.model_version).map_err(|error| at_step(error.message()))?;
            composing.push(model);
        }
        let ios: Vec<&ModelIo> = composing.iter().map(|model| &model.io).collect();
        plan.check_composing(&ModelIo::from_config(config), &ios).map_err(Error::invalid_argument)?;
        Ok(plan)
    }

    /// The composing model `name` at `version` as it serves now; while the
    /// start-up loading has it still loading, waits for it.
    pub(super) fn composing_model(&self, name: &str, version: Option<i64>) -> Result<Arc<LoadedVersion>> {
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

    /// Runs an ensemble's steps for one request. Its statistics count the
    /// request once, with the compute times of its steps added up, as
    /// Triton counts an ensemble's. A request of a sequence hands its
    /// correlation ID and flags to every step, so that stateful composing
    /// models see the sequence; a traced request traces each step as a
    /// trace of its own with the ensemble's as its parent, as Triton does.
    pub(super) async fn run_ensemble(
        &self,
        loaded: &LoadedVersion,
        plan: &EnsemblePlan,
        request: ValidatedRequest,
        options: RequestOptions,
        trace: Option<Arc<RequestTrace>>,
        sequence: Option<SequenceRequest>,
    ) -> Result<Executed> {
        let started = Instant::now();
        let ensemble = loaded.config.name.as_str();
        let run_step = |step| {
            let step_trace = trace.as_ref().map(RequestTrace::step);
            self.run_step(ensemble, step, options, step_trace, sequence.clone())
        };
        let outcome = plan.run(request.inputs, &request.outputs, run_step).await;
        match outcome {
            Ok((outputs, step_times)) => {
                let times: ExecutionTimes = step_times.into_iter().sum();
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
    /// validation, response cache, queue and instances (or its own steps,
    /// for an ensemble), traced with `trace` when the ensemble request is;
    /// returns its outputs as a client would get them, and its execution's
    /// times. Boxed, with its type spelled out: a step
    /// that runs an ensemble comes back here, and the compiler cannot see
    /// through such a cycle that the future may move between threads.
    pub(super) fn run_step<'a>(
        &'a self,
        ensemble: &'a str,
        step: StepRequest,
        options: RequestOptions,
        trace: Option<Arc<RequestTrace>>,
        sequence: Option<SequenceRequest>,
    ) -> StepFuture<'a> {
        Box::pin(async move {
            if let Some(trace) = &trace {
                trace.stamp(Activity::RequestStart);
            }
            let in_ensemble =
                |error: Error| Error::new(error.kind(), format!("ensemble '{ensemble}': {}", error.message()));
            let composing = self.resolve(&step.model_name, step.model_version).map_err(in_ensemble)?;
            if let Some(trace) = &trace {
                trace.identify(&step.model_name, composing.version, "");
            }
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
            if let Some(trace) = &trace {
                trace.tensors(TensorActivity::QueueInput, &validated.inputs);
            }
            let executed =
                self.execute(&composing, validated, options, trace.clone(), sequence).await.map_err(in_ensemble)?;
            let mut outputs = executed.outputs;
            for output in &mut outputs {
                output.shape = composing.io.response_shape(&output.name, std::mem::take(&mut output.shape));
            }
            if let Some(trace) = &trace {
                trace.tensors(TensorActivity::BackendOutput, &outputs);
                trace.stamp(Activity::InferResponseComplete);
                trace.stamp(Activity::RequestEnd);
            }
            Ok((outputs, executed.times))
        })
    }
}
