//! Filling in what a configuration leaves out, the way Triton and its ONNX
//! Runtime backend do: backend fields and file name, inputs and outputs
//! with max_batch_size from the model file, then Triton's defaults for
//! version policy, instance groups and optimization.

use super::{DEFAULT_ONNX_FILENAME, ModelConfig, ONNX_BACKEND, ONNX_PLATFORM};
use crate::backend::{ModelSignature, TensorSpec};
use crate::ensemble::ENSEMBLE_PLATFORM;
use crate::proto::inference::{
    ModelInput, ModelInstanceGroup, ModelOutput, ModelTensorReshape, ModelVersionPolicy,
    model_config::SchedulingChoice,
    model_instance_group::Kind,
    model_optimization_policy::PinnedMemoryBuffer,
    model_version_policy::{Latest, PolicyChoice},
};
use crate::tensor::{DataType, format_shape};

/// Settings of the auto-complete step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutocompleteOptions {
    /// `--strict-model-config`: never read inputs and outputs from the model.
    pub strict: bool,
    /// max_batch_size given to models that can batch but whose configuration
    /// does not say (Triton's `default-max-batch-size`, 4).
    pub default_max_batch_size: i32,
    /// How many GPUs the backend can run instances on (ids 0 to count - 1);
    /// decides what `KIND_AUTO` and a `KIND_GPU` group without `gpus` mean.
    pub gpu_count: u32,
}

impl Default for AutocompleteOptions {
    fn default() -> Self {
        Self { strict: false, default_max_batch_size: 4, gpu_count: 0 }
    }
}

impl AutocompleteOptions {
    /// Whether `config` needs the model's signature to be completed.
    pub fn needs_signature(&self, config: &ModelConfig) -> bool {
        !self.strict && config.platform != ENSEMBLE_PLATFORM && (config.input.is_empty() || config.output.is_empty())
    }
}

/// Completes `config` for the model in directory `model_name`. `signature`
/// is the model file's inputs and outputs, required when
/// [`AutocompleteOptions::needs_signature`] says so.
pub fn autocomplete(
    mut config: ModelConfig,
    model_name: &str,
    signature: Option<&ModelSignature>,
    options: AutocompleteOptions,
) -> Result<ModelConfig, String> {
    if config.name.is_empty() {
        config.name = model_name.to_string();
    } else if config.name != model_name {
        return Err(format!("the configuration names the model '{}' but its directory is '{model_name}'", config.name));
    }
    if config.platform == ENSEMBLE_PLATFORM {
        // An ensemble has no model file to complete its tensors from, and
        // no instances of its own: its steps run on the composing models'.
        if config.version_policy.is_none() {
            config.version_policy =
                Some(ModelVersionPolicy { policy_choice: Some(PolicyChoice::Latest(Latest { num_versions: 1 })) });
        }
        return Ok(config);
    }
    complete_backend_fields(&mut config)?;
    if options.needs_signature(&config) {
        let signature = signature.ok_or_else(|| "the model file's inputs and outputs are unknown".to_string())?;
        complete_from_signature(&mut config, signature, options.default_max_batch_size)?;
    }
    normalize(&mut config, options.gpu_count)?;
    Ok(config)
}

fn complete_backend_fields(config: &mut ModelConfig) -> Result<(), String> {
    let platform_ok = config.platform.is_empty() || config.platform == ONNX_PLATFORM;
    let backend_ok = config.backend.is_empty() || config.backend == ONNX_BACKEND;
    if !platform_ok || !backend_ok {
        let what = if !backend_ok {
            format!("backend '{}'", config.backend)
        } else {
            format!("platform '{}'", config.platform)
        };
        return Err(format!(
            "{what} is not supported; this server runs ONNX models (platform '{ONNX_PLATFORM}', backend '{ONNX_BACKEND}')"
        ));
    }
    config.platform = ONNX_PLATFORM.to_string();
    config.backend = ONNX_BACKEND.to_string();
    if config.default_model_filename.is_empty() {
        config.default_model_filename = DEFAULT_ONNX_FILENAME.to_string();
    }
    Ok(())
}

/// What Triton's ONNX Runtime backend does: a model whose every input and
/// output has a dynamic first dimension can batch; then missing inputs and
/// outputs are listed without that dimension.
fn complete_from_signature(
    config: &mut ModelConfig,
    signature: &ModelSignature,
    default_max_batch_size: i32,
) -> Result<(), String> {
    let all = signature.inputs.iter().chain(&signature.outputs);
    let can_batch = all.clone().all(|spec| spec.dims.first() == Some(&-1));
    if can_batch {
        if config.max_batch_size == 0 {
            config.max_batch_size = default_max_batch_size.max(0);
            tracing::warn!(
                model = %config.name,
                max_batch_size = config.max_batch_size,
                "auto-completed max_batch_size: the model can batch but its configuration sets no max_batch_size"
            );
        }
        // Like Triton's ONNX Runtime backend: a model found able to batch
        // gets the dynamic batcher unless another scheduler is configured.
        if config.max_batch_size > 1 && config.scheduling_choice.is_none() {
            config.scheduling_choice = Some(SchedulingChoice::DynamicBatching(Default::default()));
        }
    } else if config.max_batch_size != 0 {
        return Err(format!(
            "max_batch_size is {} but the model cannot batch: not every input and output has a dynamic first dimension",
            config.max_batch_size
        ));
    }
    let batching = config.max_batch_size > 0;
    // A sequence model's control and state tensors are the server's to
    // provide and keep, never the client's: like Triton's ONNX Runtime
    // backend, auto-complete leaves them out.
    // So are the batch inputs of ragged batching.
    let (mut server_inputs, server_outputs) = crate::sequence::server_tensors(config);
    server_inputs.extend(config.batch_input.iter().flat_map(|batch_input| batch_input.target_name.iter().cloned()));
    if config.input.is_empty() {
        config.input = signature
            .inputs
            .iter()
            .filter(|spec| !server_inputs.contains(&spec.name))
            .map(|spec| {
                let (data_type, dims, reshape) = config_shape(spec, batching)?;
                Ok(ModelInput { name: spec.name.clone(), data_type, dims, reshape, ..Default::default() })
            })
            .collect::<Result<_, String>>()?;
    }
    if config.output.is_empty() {
        config.output = signature
            .outputs
            .iter()
            .filter(|spec| !server_outputs.contains(&spec.name))
            .map(|spec| {
                let (data_type, dims, reshape) = config_shape(spec, batching)?;
                Ok(ModelOutput { name: spec.name.clone(), data_type, dims, reshape, ..Default::default() })
            })
            .collect::<Result<_, String>>()?;
    }
    Ok(())
}

/// Data type, dims and reshape of one auto-completed tensor. A scalar (no
/// dims left) is listed as `[1]`, reshaped to `[]` for a batching model.
fn config_shape(spec: &TensorSpec, batching: bool) -> Result<(i32, Vec<i64>, Option<ModelTensorReshape>), String> {
    let datatype =
        spec.datatype.ok_or_else(|| format!("tensor '{}' has an element type the protocol cannot carry", spec.name))?;
    let dims: Vec<i64> = spec.dims.iter().skip(usize::from(batching)).copied().collect();
    if dims.is_empty() {
        let reshape = batching.then(|| ModelTensorReshape { shape: Vec::new() });
        return Ok((datatype.to_config() as i32, vec![1], reshape));
    }
    Ok((datatype.to_config() as i32, dims, None))
}

/// Triton's defaults for fields no configuration needs to spell out, and
/// its reading of instance groups against the GPUs the server sees.
fn normalize(config: &mut ModelConfig, gpu_count: u32) -> Result<(), String> {
    let is_gpu = |gpu: &i32| u32::try_from(*gpu).is_ok_and(|gpu| gpu < gpu_count);
    if config.version_policy.is_none() {
        config.version_policy =
            Some(ModelVersionPolicy { policy_choice: Some(PolicyChoice::Latest(Latest { num_versions: 1 })) });
    }
    if let Some(SchedulingChoice::DynamicBatching(batching)) = &mut config.scheduling_choice
        && batching.preferred_batch_size.is_empty()
        && config.max_batch_size > 0
    {
        batching.preferred_batch_size.push(config.max_batch_size);
    }
    let optimization = config.optimization.get_or_insert_with(Default::default);
    optimization.input_pinned_memory.get_or_insert(PinnedMemoryBuffer { enable: true });
    optimization.output_pinned_memory.get_or_insert(PinnedMemoryBuffer { enable: true });

    if config.instance_group.is_empty() {
        config.instance_group.push(ModelInstanceGroup { name: config.name.clone(), ..Default::default() });
    }
    for (index, group) in config.instance_group.iter_mut().enumerate() {
        if group.name.is_empty() {
            group.name = format!("{}_{index}", config.name);
        }
        // KIND_AUTO is the GPU when the server sees one and every GPU the
        // group lists, else the CPU, where those GPUs do not apply: the same
        // configuration serves on hosts with and without a GPU.
        if group.kind() == Kind::Auto {
            if gpu_count > 0 && group.gpus.iter().all(is_gpu) {
                group.set_kind(Kind::Gpu);
            } else {
                group.set_kind(Kind::Cpu);
                group.gpus.clear();
            }
        }
        if group.kind() == Kind::Gpu {
            if let Some(missing) = group.gpus.iter().find(|gpu| gpu_count > 0 && !is_gpu(gpu)) {
                return Err(format!(
                    "instance_group '{}' names GPU {missing}, but the GPUs this server sees are 0 to {}",
                    group.name,
                    gpu_count - 1
                ));
            }
            // Unlisted GPUs mean every GPU, as in Triton. Without any, GPU 0
            // stays, so that creating the instance says what is missing.
            if group.gpus.is_empty() {
                group.gpus = (0..gpu_count.max(1)).map(|gpu| gpu as i32).collect();
            }
        }
        if group.count < 1 {
            // Triton gives ONNX Runtime models two CPU instances by default.
            group.count = if group.kind() == Kind::Cpu { 2 } else { 1 };
        }
    }
    Ok(())
}

/// Checks that a configuration fits the model file it will run: the same
/// input and output names, element types and compatible shapes.
///
/// Ragged batching changes what the model sees: a ragged input arrives as
/// one flat tensor of the whole batch's elements, so the model must declare
/// it with shape `[-1]`; batch inputs are model inputs of their configured
/// type that the configuration does not list as inputs; and a batch
/// output's shape is the model's own business (its shares take their shape
/// from the source input), so only its type is compared.
pub fn check_against_signature(config: &ModelConfig, signature: &ModelSignature) -> Result<(), String> {
    let batching = config.max_batch_size > 0;
    let configured_inputs = config.input.iter().map(|input| {
        let shape = input.reshape.as_ref().map_or(&input.dims, |reshape| &reshape.shape);
        (&input.name, input.data_type, (!input.allow_ragged_batch).then_some(shape))
    });
    check_tensors("input", configured_inputs, &signature.inputs, batching)?;
    let configured_outputs = config.output.iter().map(|output| {
        let shape = output.reshape.as_ref().map_or(&output.dims, |reshape| &reshape.shape);
        let batch_output =
            config.batch_output.iter().any(|batch_output| batch_output.target_name.contains(&output.name));
        (&output.name, output.data_type, (!batch_output).then_some(shape))
    });
    check_tensors("output", configured_outputs, &signature.outputs, batching)?;
    check_ragged_tensors(config, signature)?;
    check_sequence_tensors(config, signature)
}

/// Checks that the model declares each ragged input flat (`[-1]`) and each
/// batch input with its configured type.
fn check_ragged_tensors(config: &ModelConfig, signature: &ModelSignature) -> Result<(), String> {
    for input in config.input.iter().filter(|input| input.allow_ragged_batch) {
        if let Some(spec) = signature.inputs.iter().find(|spec| spec.name == input.name)
            && spec.dims != [-1]
        {
            return Err(format!(
                "ragged input '{}' must be declared by the model with shape [-1] (the batch's elements, one \
                 request after the other), but the model declares {}",
                input.name,
                format_shape(&spec.dims)
            ));
        }
    }
    for batch_input in &config.batch_input {
        let datatype = DataType::from_config(batch_input.data_type);
        for target in &batch_input.target_name {
            check_declared("batch_input target", "input", target, datatype, &signature.inputs)?;
        }
    }
    Ok(())
}

/// Checks that a tensor the server provides or keeps (`role`, such as a
/// sequence control input) is among the model's `declared` inputs or
/// outputs (`what`) with the element type the configuration gives it.
fn check_declared(
    role: &str,
    what: &str,
    name: &str,
    datatype: Option<DataType>,
    declared: &[TensorSpec],
) -> Result<(), String> {
    let Some(spec) = declared.iter().find(|spec| spec.name == name) else {
        let names: Vec<&str> = declared.iter().map(|spec| spec.name.as_str()).collect();
        return Err(format!("{role} '{name}' is not in the model, whose {what}s are: {}", names.join(", ")));
    };
    if spec.datatype != datatype {
        let expected = datatype.map_or_else(|| "no type".to_string(), |datatype| datatype.to_string());
        let actual = spec.datatype.map_or_else(|| "an unsupported type".to_string(), |datatype| datatype.to_string());
        return Err(format!("{role} '{name}' is configured as {expected} but the model declares {actual}"));
    }
    Ok(())
}

/// Checks that a sequence model declares the control inputs and the state
/// inputs and outputs its `sequence_batching` section names, with their
/// element types.
fn check_sequence_tensors(config: &ModelConfig, signature: &ModelSignature) -> Result<(), String> {
    let Some(batching) = crate::sequence::sequence_batching(config) else {
        return Ok(());
    };
    let controls = crate::sequence::SequenceControls::from_config(batching)?;
    let mut inputs: Vec<(&str, Option<DataType>)> =
        controls.inputs().into_iter().map(|(name, datatype)| (name, Some(datatype))).collect();
    let mut outputs = Vec::new();
    for state in &batching.state {
        inputs.push((&state.input_name, DataType::from_config(state.data_type)));
        outputs.push((state.output_name.as_str(), DataType::from_config(state.data_type)));
    }
    for (what, tensors, declared) in [("input", inputs, &signature.inputs), ("output", outputs, &signature.outputs)] {
        for (name, datatype) in tensors {
            check_declared(&format!("sequence_batching {what}"), what, name, datatype, declared)?;
        }
    }
    Ok(())
}

fn check_tensors<'a>(
    what: &str,
    configured: impl Iterator<Item = (&'a String, i32, Option<&'a Vec<i64>>)>,
    declared: &[TensorSpec],
    batching: bool,
) -> Result<(), String> {
    let names = || declared.iter().map(|spec| spec.name.as_str()).collect::<Vec<_>>().join(", ");
    for (name, data_type, dims) in configured {
        let Some(spec) = declared.iter().find(|spec| &spec.name == name) else {
            return Err(format!("configuration {what} '{name}' is not in the model, whose {what}s are: {}", names()));
        };
        let datatype = DataType::from_config(data_type);
        if spec.datatype != datatype || datatype.is_none() {
            let configured = datatype.map_or_else(|| data_type.to_string(), |datatype| datatype.to_string());
            let actual =
                spec.datatype.map_or_else(|| "an unsupported type".to_string(), |datatype| datatype.to_string());
            return Err(format!("{what} '{name}' is configured as {configured} but the model declares {actual}"));
        }
        let Some(dims) = dims else {
            continue;
        };
        let mut expected = Vec::with_capacity(dims.len() + 1);
        if batching {
            expected.push(-1);
        }
        expected.extend_from_slice(dims);
        let compatible = expected.len() == spec.dims.len()
            && expected.iter().zip(&spec.dims).all(|(&configured, &actual)| actual == -1 || configured == actual);
        if !compatible {
            let batch_note = if batching { " with the batch dimension" } else { "" };
            return Err(format!(
                "{what} '{name}' is configured with shape {}{batch_note} but the model declares {}",
                format_shape(&expected),
                format_shape(&spec.dims)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inference::{DataType as ConfigDataType, ModelDynamicBatching};

    fn spec(name: &str, datatype: DataType, dims: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), datatype: Some(datatype), dims: dims.to_vec() }
    }

    fn batching_signature() -> ModelSignature {
        ModelSignature {
            inputs: vec![spec("x", DataType::Fp16, &[-1, 4])],
            outputs: vec![spec("y", DataType::Fp16, &[-1, 4]), spec("score", DataType::Fp32, &[-1])],
        }
    }

    #[test]
    fn a_sequence_models_control_and_state_tensors_are_left_to_the_server() {
        let signature = ModelSignature {
            inputs: vec![
                spec("x", DataType::Int32, &[-1, 1]),
                spec("START", DataType::Int32, &[-1, 1]),
                spec("STATE_IN", DataType::Fp32, &[-1, 3]),
            ],
            outputs: vec![spec("y", DataType::Int32, &[-1, 1]), spec("STATE_OUT", DataType::Fp32, &[-1, 3])],
        };
        let config = crate::model_config::parse_text_format(
            r#"sequence_batching {
                 control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]
                 state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 3 ] } ]
               }"#,
        )
        .unwrap();
        let config = autocomplete(config, "m", Some(&signature), AutocompleteOptions::default()).unwrap();
        let names = |tensors: Vec<&str>| tensors.join(",");
        assert_eq!(names(config.input.iter().map(|input| input.name.as_str()).collect()), "x");
        assert_eq!(names(config.output.iter().map(|output| output.name.as_str()).collect()), "y");
        // The sequence batcher stays the scheduler.
        assert!(matches!(config.scheduling_choice, Some(SchedulingChoice::SequenceBatching(_))));
        check_against_signature(&config, &signature).unwrap();
        // The model must declare them, with the configured types.
        let mut wrong_type = signature.clone();
        wrong_type.inputs[2].datatype = Some(DataType::Fp64);
        assert_eq!(
            check_against_signature(&config, &wrong_type).unwrap_err(),
            "sequence_batching input 'STATE_IN' is configured as FP32 but the model declares FP64"
        );
        let mut missing = signature.clone();
        missing.outputs.pop();
        assert_eq!(
            check_against_signature(&config, &missing).unwrap_err(),
            "sequence_batching output 'STATE_OUT' is not in the model, whose outputs are: y"
        );
    }

    #[test]
    fn ragged_inputs_are_flat_in_the_model_and_batch_inputs_are_the_servers() {
        let signature = ModelSignature {
            inputs: vec![spec("x", DataType::Fp32, &[-1]), spec("ends", DataType::Int32, &[-1])],
            outputs: vec![spec("sum", DataType::Fp32, &[-1, 1]), spec("doubled", DataType::Fp32, &[-1])],
        };
        let config = crate::model_config::parse_text_format(
            r#"max_batch_size: 4
               input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
               batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: "ends" data_type: TYPE_INT32
                               source_input: "x" } ]
               output [ { name: "sum" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "doubled" data_type: TYPE_FP32 dims: [ -1 ] } ]
               batch_output [ { target_name: "doubled" source_input: "x" } ]"#,
        )
        .unwrap();
        let config = autocomplete(config, "m", Some(&signature), AutocompleteOptions::default()).unwrap();
        check_against_signature(&config, &signature).unwrap();
        let mut batched = signature.clone();
        batched.inputs[0].dims = vec![-1, -1];
        assert_eq!(
            check_against_signature(&config, &batched).unwrap_err(),
            "ragged input 'x' must be declared by the model with shape [-1] (the batch's elements, one request after \
             the other), but the model declares [-1,-1]"
        );
        let mut wrong_type = signature.clone();
        wrong_type.inputs[1].datatype = Some(DataType::Int64);
        assert_eq!(
            check_against_signature(&config, &wrong_type).unwrap_err(),
            "batch_input target 'ends' is configured as INT32 but the model declares INT64"
        );
        let mut missing = signature.clone();
        missing.inputs.pop();
        assert_eq!(
            check_against_signature(&config, &missing).unwrap_err(),
            "batch_input target 'ends' is not in the model, whose inputs are: x"
        );
        // Auto-complete lists the model's inputs without the batch inputs.
        let mut without_inputs = config.clone();
        without_inputs.input.clear();
        let completed = autocomplete(without_inputs, "m", Some(&signature), AutocompleteOptions::default()).unwrap();
        assert_eq!(completed.input.iter().map(|input| input.name.as_str()).collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn fills_an_empty_config_like_triton() {
        let config =
            autocomplete(ModelConfig::default(), "m", Some(&batching_signature()), AutocompleteOptions::default())
                .unwrap();
        assert_eq!(config.name, "m");
        assert_eq!(config.platform, "onnxruntime_onnx");
        assert_eq!(config.backend, "onnxruntime");
        assert_eq!(config.default_model_filename, "model.onnx");
        assert_eq!(config.max_batch_size, 4);
        match &config.scheduling_choice {
            Some(SchedulingChoice::DynamicBatching(batching)) => assert_eq!(batching.preferred_batch_size, vec![4]),
            other => panic!("expected the dynamic batcher, got {other:?}"),
        }
        assert_eq!(config.input[0].name, "x");
        assert_eq!(config.input[0].data_type, ConfigDataType::TypeFp16 as i32);
        assert_eq!(config.input[0].dims, vec![4]);
        // A [batch] output becomes dims [1] reshaped to [] (a scalar per item).
        assert_eq!(config.output[1].dims, vec![1]);
        assert_eq!(config.output[1].reshape, Some(ModelTensorReshape { shape: vec![] }));
        assert_eq!(config.instance_group.len(), 1);
        assert_eq!(config.instance_group[0].name, "m");
        assert_eq!(config.instance_group[0].kind(), Kind::Cpu);
        assert_eq!(config.instance_group[0].count, 2);
        match config.version_policy.unwrap().policy_choice {
            Some(PolicyChoice::Latest(latest)) => assert_eq!(latest.num_versions, 1),
            other => panic!("{other:?}"),
        }
        assert!(config.optimization.unwrap().input_pinned_memory.unwrap().enable);
        check_against_signature(
            &autocomplete(ModelConfig::default(), "m", Some(&batching_signature()), AutocompleteOptions::default())
                .unwrap(),
            &batching_signature(),
        )
        .unwrap();
    }

    #[test]
    fn fixed_first_dimension_means_no_batching() {
        let signature = ModelSignature {
            inputs: vec![spec("n", DataType::Int64, &[1])],
            outputs: vec![spec("count", DataType::Int64, &[1])],
        };
        let config =
            autocomplete(ModelConfig::default(), "m", Some(&signature), AutocompleteOptions::default()).unwrap();
        assert_eq!(config.max_batch_size, 0);
        assert_eq!(config.input[0].dims, vec![1]);

        let asks_for_batching = ModelConfig { max_batch_size: 8, ..Default::default() };
        let error = autocomplete(asks_for_batching, "m", Some(&signature), AutocompleteOptions::default()).unwrap_err();
        assert!(error.contains("cannot batch"), "{error}");
    }

    #[test]
    fn keeps_what_the_config_says() {
        let config = ModelConfig {
            max_batch_size: 16,
            input: vec![ModelInput {
                name: "x".into(),
                data_type: ConfigDataType::TypeFp16 as i32,
                dims: vec![4],
                ..Default::default()
            }],
            scheduling_choice: Some(SchedulingChoice::DynamicBatching(ModelDynamicBatching::default())),
            ..Default::default()
        };
        let config = autocomplete(config, "m", Some(&batching_signature()), AutocompleteOptions::default()).unwrap();
        assert_eq!(config.max_batch_size, 16);
        assert_eq!(config.input.len(), 1);
        assert_eq!(config.output.len(), 2);
        match config.scheduling_choice {
            Some(SchedulingChoice::DynamicBatching(batching)) => assert_eq!(batching.preferred_batch_size, vec![16]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kind_auto_means_gpu_only_when_one_is_usable() {
        let config = |gpu_count| {
            let options = AutocompleteOptions { gpu_count, ..Default::default() };
            let config = autocomplete(ModelConfig::default(), "m", Some(&batching_signature()), options).unwrap();
            (config.instance_group[0].kind(), config.instance_group[0].gpus.clone(), config.instance_group[0].count)
        };
        assert_eq!(config(0), (Kind::Cpu, vec![], 2));
        // Unlisted GPUs mean all of them, as in Triton.
        assert_eq!(config(2), (Kind::Gpu, vec![0, 1], 1));
        let grouped = |kind: Kind, gpus: Vec<i32>, gpu_count| {
            let group = ModelInstanceGroup { kind: kind as i32, gpus, ..Default::default() };
            let config = ModelConfig { instance_group: vec![group], ..Default::default() };
            let options = AutocompleteOptions { gpu_count, ..Default::default() };
            autocomplete(config, "m", Some(&batching_signature()), options)
                .map(|config| (config.instance_group[0].kind(), config.instance_group[0].gpus.clone()))
        };
        // The GPUs a KIND_AUTO group names apply only where all of them exist.
        assert_eq!(grouped(Kind::Auto, vec![1], 0), Ok((Kind::Cpu, vec![])));
        assert_eq!(grouped(Kind::Auto, vec![1], 1), Ok((Kind::Cpu, vec![])));
        assert_eq!(grouped(Kind::Auto, vec![1], 2), Ok((Kind::Gpu, vec![1])));
        // KIND_GPU on a missing GPU says which GPUs there are; with none at
        // all, GPU 0 stays, and creating the instance says what is missing.
        assert_eq!(
            grouped(Kind::Gpu, vec![2], 2).unwrap_err(),
            "instance_group 'm_0' names GPU 2, but the GPUs this server sees are 0 to 1"
        );
        assert_eq!(grouped(Kind::Gpu, vec![], 0), Ok((Kind::Gpu, vec![0])));
    }

    #[test]
    fn strict_mode_never_reads_the_model() {
        let options = AutocompleteOptions { strict: true, ..Default::default() };
        assert!(!options.needs_signature(&ModelConfig::default()));
        let config = autocomplete(ModelConfig::default(), "m", None, options).unwrap();
        assert!(config.input.is_empty());
        assert_eq!(config.max_batch_size, 0);
    }

    #[test]
    fn rejects_other_backends_and_mismatched_names() {
        let python = ModelConfig { backend: "python".into(), ..Default::default() };
        let error =
            autocomplete(python, "m", None, AutocompleteOptions { strict: true, ..Default::default() }).unwrap_err();
        assert!(error.contains("backend 'python' is not supported"), "{error}");

        let renamed = ModelConfig { name: "other".into(), ..Default::default() };
        let error = autocomplete(renamed, "m", None, AutocompleteOptions::default()).unwrap_err();
        assert!(error.contains("'other'") && error.contains("'m'"), "{error}");
    }

    #[test]
    fn signature_check_names_the_mismatch() {
        let signature = batching_signature();
        let mut config =
            autocomplete(ModelConfig::default(), "m", Some(&signature), AutocompleteOptions::default()).unwrap();

        config.input[0].name = "z".into();
        let error = check_against_signature(&config, &signature).unwrap_err();
        assert!(error.contains("input 'z' is not in the model") && error.contains("x"), "{error}");

        config.input[0].name = "x".into();
        config.input[0].data_type = ConfigDataType::TypeFp32 as i32;
        let error = check_against_signature(&config, &signature).unwrap_err();
        assert!(error.contains("FP32") && error.contains("FP16"), "{error}");

        config.input[0].data_type = ConfigDataType::TypeFp16 as i32;
        config.input[0].dims = vec![5];
        let error = check_against_signature(&config, &signature).unwrap_err();
        assert!(error.contains("[-1,5]") && error.contains("[-1,4]"), "{error}");
    }
}
