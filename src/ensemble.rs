//! Triton's ensembles (platform `ensemble`): a model that is a pipeline of
//! other models. Its `ensemble_scheduling` steps say which model each step
//! runs and how that model's inputs and outputs map to the ensemble's
//! tensors: its inputs, its outputs and the intermediate tensors the steps
//! pass along. A request runs every step as soon as the tensors it needs
//! are there, steps that do not depend on each other side by side, each as
//! a request of the composing model, through that model's own queue,
//! batcher and instances.
//!
//! This module holds the plan and its checks, and runs a plan with a step
//! runner it is given; the model manager gives it one that sends each step
//! to the composing model.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use futures::future::try_join_all;

use crate::error::{Error, Result};
use crate::model_config::ModelConfig;
use crate::proto::inference::model_config::SchedulingChoice;
use crate::tensor::{DataType, Tensor};
use crate::validation::{ModelIo, TensorContract};

/// The platform name of ensembles.
pub const ENSEMBLE_PLATFORM: &str = "ensemble";

/// One step of an ensemble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The composing model it runs.
    pub model_name: String,
    /// Its version; `None` for the highest ready one (`-1` in the
    /// configuration).
    pub model_version: Option<i64>,
    /// `(the model's input, the ensemble tensor it is given)`, by input name.
    pub inputs: Vec<(String, String)>,
    /// `(the model's output, the ensemble tensor it becomes)`, by output
    /// name.
    pub outputs: Vec<(String, String)>,
}

/// The steps of an ensemble, checked to form a pipeline: every tensor a
/// step needs is an ensemble input or made by one earlier step, no tensor
/// is made twice, and every ensemble output is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsemblePlan {
    /// The steps, in the order of the configuration.
    pub steps: Vec<Step>,
    /// The steps (by index) in the order they can run: each wave needs only
    /// the ensemble's inputs and the outputs of the waves before it.
    waves: Vec<Vec<usize>>,
}

/// What a step asks of its composing model.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    /// The composing model.
    pub model_name: String,
    /// Its version, `None` for the highest ready one.
    pub model_version: Option<i64>,
    /// The inputs, under the composing model's input names.
    pub inputs: Vec<Tensor>,
    /// The outputs wanted, by the composing model's output names.
    pub outputs: Vec<String>,
}

impl EnsemblePlan {
    /// The plan of `config`'s `ensemble_scheduling`, or why it is not a
    /// pipeline.
    pub fn from_config(config: &ModelConfig) -> std::result::Result<Self, String> {
        let Some(SchedulingChoice::EnsembleScheduling(scheduling)) = &config.scheduling_choice else {
            return Err("an ensemble needs ensemble_scheduling with its steps".to_string());
        };
        if scheduling.step.is_empty() {
            return Err("ensemble_scheduling lists no steps".to_string());
        }
        let sorted = |map: &HashMap<String, String>| {
            let mut pairs: Vec<(String, String)> =
                map.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
            pairs.sort();
            pairs
        };
        let steps: Vec<Step> = scheduling
            .step
            .iter()
            .map(|step| Step {
                model_name: step.model_name.clone(),
                model_version: (step.model_version >= 0).then_some(step.model_version),
                inputs: sorted(&step.input_map),
                outputs: sorted(&step.output_map),
            })
            .collect();
        let mut plan = Self { steps, waves: Vec::new() };
        plan.waves = plan.check(config)?;
        Ok(plan)
    }

    /// The composing models, each once, in the order of their first step.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for step in &self.steps {
            if !names.contains(&step.model_name) {
                names.push(step.model_name.clone());
            }
        }
        names
    }

    /// Checks that the steps form a pipeline and returns them in waves
    /// (see [`EnsemblePlan::waves`]).
    fn check(&self, config: &ModelConfig) -> std::result::Result<Vec<Vec<usize>>, String> {
        let ensemble_inputs: HashSet<&str> = config.input.iter().map(|input| input.name.as_str()).collect();
        let mut made_by: HashMap<&str, usize> = HashMap::new();
        for (index, step) in self.steps.iter().enumerate() {
            let at = |what: String| format!("step {index} (model '{}'): {what}", step.model_name);
            if step.model_name.is_empty() {
                return Err(format!("step {index} names no model"));
            }
            if step.model_name == config.name {
                return Err(at("an ensemble cannot run itself".to_string()));
            }
            if step.inputs.is_empty() {
                return Err(at("its input_map is empty".to_string()));
            }
            if step.outputs.is_empty() {
                return Err(at("its output_map is empty".to_string()));
            }
            for (output, tensor) in &step.outputs {
                if ensemble_inputs.contains(tensor.as_str()) {
                    return Err(at(format!("output '{output}' is mapped to '{tensor}', which is an ensemble input")));
                }
                if let Some(other) = made_by.insert(tensor, index) {
                    return Err(at(format!(
                        "output '{output}' is mapped to '{tensor}', which step {other} already makes; each ensemble \
                         tensor is made by one output"
                    )));
                }
            }
        }
        for (index, step) in self.steps.iter().enumerate() {
            for (input, tensor) in &step.inputs {
                if !ensemble_inputs.contains(tensor.as_str()) && !made_by.contains_key(tensor.as_str()) {
                    return Err(format!(
                        "step {index} (model '{}'): input '{input}' takes '{tensor}', which is neither an ensemble \
                         input nor the output of a step",
                        step.model_name
                    ));
                }
            }
        }
        for output in &config.output {
            if !made_by.contains_key(output.name.as_str()) {
                return Err(format!("ensemble output '{}' is not the output of any step", output.name));
            }
        }
        // Every step must become runnable: otherwise steps wait on each
        // other in a cycle.
        let mut available = ensemble_inputs;
        let mut waiting: Vec<usize> = (0..self.steps.len()).collect();
        let mut waves = Vec::new();
        while !waiting.is_empty() {
            let (ready, blocked): (Vec<usize>, Vec<usize>) = waiting.into_iter().partition(|&index| {
                self.steps[index].inputs.iter().all(|(_, tensor)| available.contains(tensor.as_str()))
            });
            if ready.is_empty() {
                let names: Vec<&str> = blocked.iter().map(|&index| self.steps[index].model_name.as_str()).collect();
                return Err(format!(
                    "the steps of models {} wait on each other's outputs in a cycle",
                    names.join(", ")
                ));
            }
            available.extend(
                ready.iter().flat_map(|&index| self.steps[index].outputs.iter().map(|(_, tensor)| tensor.as_str())),
            );
            waves.push(ready);
            waiting = blocked;
        }
        Ok(waves)
    }

    /// Checks the steps against their composing models' inputs and
    /// outputs (`composing[i]` is step `i`'s) and the ensemble's own
    /// (`ensemble`): every input and output a step names exists, every
    /// input a model needs is given, each tensor has one datatype wherever
    /// it goes, and each model batches at least as much as the ensemble.
    pub fn check_composing(&self, ensemble: &ModelIo, composing: &[&ModelIo]) -> std::result::Result<(), String> {
        let at =
            |index: usize, what: String| format!("step {index} (model '{}'): {what}", self.steps[index].model_name);
        // The datatype of every ensemble tensor: the inputs', then each
        // step output's.
        let mut datatypes: HashMap<&str, DataType> =
            ensemble.inputs.iter().map(|input| (input.name.as_str(), input.datatype)).collect();
        for (index, (step, model)) in self.steps.iter().zip(composing).enumerate() {
            if ensemble.max_batch_size > 0 && model.max_batch_size < ensemble.max_batch_size {
                return Err(at(
                    index,
                    format!(
                        "the ensemble allows batches of up to {}, but the model only {}",
                        ensemble.max_batch_size, model.max_batch_size
                    ),
                ));
            }
            for (output, tensor) in &step.outputs {
                let contract = model.outputs.iter().find(|contract| &contract.name == output).ok_or_else(|| {
                    at(
                        index,
                        format!(
                            "output_map names output '{output}', which the model does not have; its outputs are {}",
                            ModelIo::names(&model.outputs)
                        ),
                    )
                })?;
                datatypes.insert(tensor, contract.datatype);
            }
        }
        for output in &ensemble.outputs {
            if let Some(&made) = datatypes.get(output.name.as_str())
                && made != output.datatype
            {
                return Err(format!(
                    "output '{}' is {} in the ensemble's configuration, but the step that makes it gives {made}",
                    output.name, output.datatype
                ));
            }
        }
        for (index, (step, model)) in self.steps.iter().zip(composing).enumerate() {
            for (input, tensor) in &step.inputs {
                let contract = model.inputs.iter().find(|contract| &contract.name == input).ok_or_else(|| {
                    at(
                        index,
                        format!(
                            "input_map names input '{input}', which the model does not have; its inputs are {}",
                            ModelIo::names(&model.inputs)
                        ),
                    )
                })?;
                if let Some(&given) = datatypes.get(tensor.as_str())
                    && given != contract.datatype
                {
                    return Err(at(
                        index,
                        format!(
                            "its input '{input}' is {} but is given '{tensor}', which is {given}",
                            contract.datatype
                        ),
                    ));
                }
            }
            let given = |contract: &&TensorContract| step.inputs.iter().any(|(input, _)| *input == contract.name);
            if let Some(missing) = model.inputs.iter().find(|contract| !contract.optional && !given(contract)) {
                return Err(at(
                    index,
                    format!("the model's input '{}' is not mapped to any ensemble tensor", missing.name),
                ));
            }
        }
        Ok(())
    }

    /// Runs the pipeline on `inputs` (the ensemble's, by name) with
    /// `run_step`, which runs one step's request and returns the composing
    /// model's outputs; returns the ensemble tensors named in `wanted`, in
    /// that order, with the `T` that `run_step` returned beside each step's
    /// outputs, in the order the steps ran.
    pub async fn run<T, F, Fut>(
        &self,
        inputs: Vec<Tensor>,
        wanted: &[String],
        run_step: F,
    ) -> Result<(Vec<Tensor>, Vec<T>)>
    where
        F: Fn(StepRequest) -> Fut,
        Fut: Future<Output = Result<(Vec<Tensor>, T)>>,
    {
        let mut tensors: HashMap<String, Tensor> =
            inputs.into_iter().map(|tensor| (tensor.name.clone(), tensor)).collect();
        let mut results = Vec::with_capacity(self.steps.len());
        for wave in &self.waves {
            let ready: Vec<&Step> = wave.iter().map(|&index| &self.steps[index]).collect();
            for step in &ready {
                // An optional ensemble input that the request left out.
                if let Some((input, tensor)) = step.inputs.iter().find(|(_, tensor)| !tensors.contains_key(tensor)) {
                    return Err(Error::invalid_argument(format!(
                        "ensemble step of model '{}' needs '{tensor}' for its input '{input}', which the request \
                         does not give",
                        step.model_name
                    )));
                }
            }
            let requests = ready.iter().map(|step| {
                let inputs = step
                    .inputs
                    .iter()
                    .map(|(input, tensor)| Tensor { name: input.clone(), ..tensors[tensor].clone() })
                    .collect();
                run_step(StepRequest {
                    model_name: step.model_name.clone(),
                    model_version: step.model_version,
                    inputs,
                    outputs: step.outputs.iter().map(|(output, _)| output.clone()).collect(),
                })
            });
            for (step, (outputs, result)) in ready.iter().zip(try_join_all(requests).await?) {
                for (output, tensor) in &step.outputs {
                    let made = outputs.iter().find(|made| &made.name == output).ok_or_else(|| {
                        Error::internal(format!("model '{}' did not return its output '{output}'", step.model_name))
                    })?;
                    tensors.insert(tensor.clone(), Tensor { name: tensor.clone(), ..made.clone() });
                }
                results.push(result);
            }
        }
        let outputs = wanted
            .iter()
            .map(|name| {
                tensors
                    .remove(name)
                    .ok_or_else(|| Error::internal(format!("no step made the ensemble output '{name}'")))
            })
            .collect::<Result<_>>()?;
        Ok((outputs, results))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::model_config::parse_text_format;
    use crate::tensor::DataType;

    const PIPELINE: &str = r#"
        name: "pipeline" platform: "ensemble" max_batch_size: 4
        input { name: "RAW" data_type: TYPE_FP32 dims: [ 2 ] }
        output { name: "SUM" data_type: TYPE_FP32 dims: [ 2 ] }
        output { name: "DIFF" data_type: TYPE_FP32 dims: [ 2 ] }
        ensemble_scheduling {
          step { model_name: "scale" model_version: -1
                 input_map { key: "X" value: "RAW" } output_map { key: "Y" value: "scaled" } }
          step { model_name: "add_sub" model_version: 2
                 input_map { key: "A" value: "RAW" } input_map { key: "B" value: "scaled" }
                 output_map { key: "SUM" value: "SUM" } output_map { key: "DIFF" value: "DIFF" } }
        }"#;

    fn plan(text: &str) -> std::result::Result<EnsemblePlan, String> {
        EnsemblePlan::from_config(&parse_text_format(text).unwrap())
    }

    fn floats(name: &str, values: &[f32]) -> Tensor {
        let data: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        Tensor {
            name: name.into(),
            datatype: DataType::Fp32,
            shape: vec![1, values.len() as i64],
            data: Bytes::from(data),
        }
    }

    fn values(tensor: &Tensor) -> Vec<f32> {
        tensor.data.chunks_exact(4).map(|bytes| f32::from_le_bytes(bytes.try_into().unwrap())).collect()
    }

    #[test]
    fn a_pipeline_is_read_with_its_maps() {
        let plan = plan(PIPELINE).unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[0].model_version, None);
        assert_eq!(plan.steps[1].model_version, Some(2));
        assert_eq!(plan.steps[1].inputs, vec![("A".into(), "RAW".into()), ("B".into(), "scaled".into())]);
        assert_eq!(plan.model_names(), ["scale", "add_sub"]);
        assert_eq!(plan.waves, [vec![0], vec![1]]);
    }

    #[test]
    fn broken_pipelines_say_what_is_wrong() {
        let cases = [
            (PIPELINE.replace(r#"value: "scaled" } }"#, r#"value: "RAW" } }"#), "which is an ensemble input"),
            (PIPELINE.replace(r#"key: "DIFF" value: "DIFF""#, r#"key: "DIFF" value: "SUM""#), "step 1 already makes"),
            (
                PIPELINE.replace(r#"key: "B" value: "scaled""#, r#"key: "B" value: "nowhere""#),
                "neither an ensemble input",
            ),
            (
                PIPELINE.replace(r#"key: "DIFF" value: "DIFF""#, r#"key: "DIFF" value: "other""#),
                "'DIFF' is not the output",
            ),
            (
                PIPELINE.replace(r#"value: "RAW" } output_map { key: "Y""#, r#"value: "SUM" } output_map { key: "Y""#),
                "in a cycle",
            ),
            (PIPELINE.replace(r#"model_name: "scale""#, r#"model_name: "pipeline""#), "cannot run itself"),
            (PIPELINE.replace(r#"model_name: "scale""#, r#"model_name: """#), "names no model"),
        ];
        for (text, expected) in cases {
            let error = plan(&text).unwrap_err();
            assert!(error.contains(expected), "expected '{expected}' in '{error}'");
        }
    }

    fn io(text: &str) -> ModelIo {
        ModelIo::from_config(&parse_text_format(text).unwrap())
    }

    const SCALE: &str = r#"name: "scale" max_batch_size: 8
        input { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } output { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] }"#;
    const ADD_SUB: &str = r#"name: "add_sub" max_batch_size: 8
        input { name: "A" data_type: TYPE_FP32 dims: [ 2 ] } input { name: "B" data_type: TYPE_FP32 dims: [ 2 ] }
        output { name: "SUM" data_type: TYPE_FP32 dims: [ 2 ] } output { name: "DIFF" data_type: TYPE_FP32 dims: [ 2 ] }"#;

    #[test]
    fn steps_are_checked_against_their_models() {
        let check = |ensemble: &str, scale: &str, add_sub: &str| {
            plan(ensemble).unwrap().check_composing(&io(ensemble), &[&io(scale), &io(add_sub)])
        };
        check(PIPELINE, SCALE, ADD_SUB).unwrap();
        let cases = [
            (
                check(PIPELINE, &SCALE.replace("max_batch_size: 8", "max_batch_size: 2"), ADD_SUB),
                "step 0 (model 'scale'): the ensemble allows batches of up to 4, but the model only 2",
            ),
            (
                check(PIPELINE, &SCALE.replace("\"Y\"", "\"Z\""), ADD_SUB),
                "output_map names output 'Y', which the model does not have; its outputs are Z",
            ),
            (
                check(PIPELINE, SCALE, &ADD_SUB.replace("\"B\"", "\"C\"")),
                "step 1 (model 'add_sub'): input_map names input 'B'",
            ),
            (
                check(
                    PIPELINE,
                    &SCALE.replace(
                        "output { name: \"Y\" data_type: TYPE_FP32",
                        "output { name: \"Y\" data_type: TYPE_INT32",
                    ),
                    ADD_SUB,
                ),
                "its input 'B' is FP32 but is given 'scaled', which is INT32",
            ),
            (
                check(
                    &PIPELINE.replace("name: \"DIFF\" data_type: TYPE_FP32", "name: \"DIFF\" data_type: TYPE_FP64"),
                    SCALE,
                    ADD_SUB,
                ),
                "output 'DIFF' is FP64 in the ensemble's configuration, but the step that makes it gives FP32",
            ),
            (
                check(
                    PIPELINE,
                    SCALE,
                    &(ADD_SUB.to_string() + r#" input { name: "C" data_type: TYPE_FP32 dims: [ 2 ] }"#),
                ),
                "the model's input 'C' is not mapped to any ensemble tensor",
            ),
        ];
        for (outcome, expected) in cases {
            let error = outcome.unwrap_err();
            assert!(error.contains(expected), "expected '{expected}' in '{error}'");
        }
    }

    #[tokio::test]
    async fn steps_run_when_their_tensors_are_there_and_outputs_come_in_the_order_asked() {
        let plan = plan(PIPELINE).unwrap();
        let asked = Mutex::new(Vec::new());
        let run_step = |request: StepRequest| {
            asked.lock().unwrap().push((request.model_name.clone(), request.outputs.clone()));
            async move {
                let input = |name: &str| values(request.inputs.iter().find(|tensor| tensor.name == name).unwrap());
                let outputs = match request.model_name.as_str() {
                    "scale" => vec![floats("Y", &input("X").iter().map(|x| x * 10.0).collect::<Vec<_>>())],
                    _ => {
                        let (a, b) = (input("A"), input("B"));
                        vec![floats("SUM", &[a[0] + b[0], a[1] + b[1]]), floats("DIFF", &[a[0] - b[0], a[1] - b[1]])]
                    }
                };
                Ok((outputs, request.model_name))
            }
        };
        let wanted = vec!["DIFF".to_string(), "SUM".to_string()];
        let (outputs, ran) = plan.run(vec![floats("RAW", &[1.0, 2.0])], &wanted, run_step).await.unwrap();
        assert_eq!(outputs.iter().map(|tensor| tensor.name.as_str()).collect::<Vec<_>>(), ["DIFF", "SUM"]);
        assert_eq!(values(&outputs[0]), [-9.0, -18.0]);
        assert_eq!(values(&outputs[1]), [11.0, 22.0]);
        assert_eq!(ran, ["scale", "add_sub"]);
        assert_eq!(
            asked.into_inner().unwrap(),
            [("scale".to_string(), vec!["Y".to_string()]), ("add_sub".into(), vec!["DIFF".into(), "SUM".into()])]
        );
    }

    #[tokio::test]
    async fn a_failing_step_fails_the_request() {
        let plan = plan(PIPELINE).unwrap();
        let failing = |request: StepRequest| async move {
            Err::<(Vec<Tensor>, ()), _>(Error::unavailable(format!("model '{}' is not ready", request.model_name)))
        };
        let error = plan.run(vec![floats("RAW", &[1.0, 2.0])], &["SUM".to_string()], failing).await.unwrap_err();
        assert!(error.message().contains("model 'scale' is not ready"), "{error}");
    }
}
