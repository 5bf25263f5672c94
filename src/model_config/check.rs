//! Checks that a completed configuration is one the server can run, with
//! messages that point at the offending field.

use std::collections::HashSet;

use super::ModelConfig;
use crate::ensemble::{ENSEMBLE_PLATFORM, EnsemblePlan};
use crate::proto::inference::model_config::SchedulingChoice;
use crate::proto::inference::model_instance_group::Kind;
use crate::proto::inference::model_queue_policy::TimeoutAction;
use crate::proto::inference::{
    ModelDynamicBatching, ModelQueuePolicy, ModelTensorReshape, model_version_policy::PolicyChoice,
};
use crate::tensor::{DataType, format_shape};

/// Validates a completed configuration (after [`super::autocomplete`]).
pub fn check_config(config: &ModelConfig) -> Result<(), String> {
    if config.max_batch_size < 0 {
        return Err(format!("max_batch_size must be 0 or more, not {}", config.max_batch_size));
    }
    if config.input.is_empty() {
        return Err("the configuration lists no inputs".to_string());
    }
    if config.output.is_empty() {
        return Err("the configuration lists no outputs".to_string());
    }
    let inputs = config.input.iter().map(|input| (input.name.as_str(), input.data_type, &input.dims, &input.reshape));
    check_tensors("input", inputs, config.max_batch_size)?;
    let outputs =
        config.output.iter().map(|output| (output.name.as_str(), output.data_type, &output.dims, &output.reshape));
    check_tensors("output", outputs, config.max_batch_size)?;

    if let Some(PolicyChoice::Latest(latest)) = config.version_policy.as_ref().and_then(|p| p.policy_choice.as_ref())
        && latest.num_versions == 0
    {
        return Err("version_policy latest must keep at least 1 version (num_versions: 0)".to_string());
    }
    match &config.scheduling_choice {
        Some(SchedulingChoice::DynamicBatching(batching)) => check_dynamic_batching(batching, config.max_batch_size)?,
        Some(SchedulingChoice::SequenceBatching(sequences)) => {
            crate::sequence::check_config(config, sequences)?;
            // As in Triton, whose cache keys know nothing of sequences.
            if config.response_cache.as_ref().is_some_and(|cache| cache.enable) {
                return Err("response_cache cannot be enabled for a model with sequence_batching: the answer of a \
                            stateful model depends on the requests before it"
                    .to_string());
            }
        }
        Some(SchedulingChoice::EnsembleScheduling(_)) if config.platform != ENSEMBLE_PLATFORM => {
            return Err(format!(
                "ensemble_scheduling is for models of platform '{ENSEMBLE_PLATFORM}', not '{}'",
                config.platform
            ));
        }
        Some(SchedulingChoice::EnsembleScheduling(_)) | None => {}
    }
    if config.platform == ENSEMBLE_PLATFORM {
        EnsemblePlan::from_config(config)?;
    }
    check_ragged_batching(config)?;
    for group in &config.instance_group {
        if matches!(group.kind(), Kind::Cpu | Kind::Model) && !group.gpus.is_empty() {
            return Err(format!(
                "instance_group '{}' has kind {} but lists gpus {:?}; only KIND_GPU and KIND_AUTO groups name GPUs",
                group.name,
                group.kind().as_str_name(),
                group.gpus
            ));
        }
    }
    Ok(())
}

/// Triton's checks of ragged batching: each `batch_input` and
/// `batch_output` derives from one configuration input, a batch input is
/// INT32 or FP32, and a batch output's targets are configuration outputs,
/// each named once. Beyond Triton's: a batch input may not take the name of
/// a configuration input (the model would get two tensors of that name), a
/// ragged input may not be optional (as Triton's ONNX Runtime backend
/// requires), and a batch output holds fixed-size elements, since its
/// shares are cut by byte size.
fn check_ragged_batching(config: &ModelConfig) -> Result<(), String> {
    let is_input = |name: &String| config.input.iter().any(|input| &input.name == name);
    if let Some(input) = config.input.iter().find(|input| input.allow_ragged_batch && input.optional) {
        return Err(format!("input '{}' cannot be both optional and allow_ragged_batch", input.name));
    }
    for batch_input in &config.batch_input {
        let kind = batch_input.kind().as_str_name();
        check_batch_source("batch_input", kind, &batch_input.source_input, config)?;
        if !matches!(DataType::from_config(batch_input.data_type), Some(DataType::Int32 | DataType::Fp32)) {
            return Err(format!("batch_input kind '{kind}': the data type must be TYPE_INT32 or TYPE_FP32"));
        }
        if batch_input.target_name.is_empty() {
            return Err(format!("batch_input kind '{kind}' names no target_name"));
        }
        if let Some(taken) = batch_input.target_name.iter().find(|&name| is_input(name)) {
            return Err(format!(
                "batch_input target '{taken}' is also a configuration input; the server computes a batch input, \
                 so clients do not send it"
            ));
        }
    }
    let mut targets = HashSet::new();
    for batch_output in &config.batch_output {
        let kind = batch_output.kind().as_str_name();
        check_batch_source("batch_output", kind, &batch_output.source_input, config)?;
        for target in &batch_output.target_name {
            let Some(output) = config.output.iter().find(|output| &output.name == target) else {
                return Err(format!("batch_output kind '{kind}': unknown target output name '{target}'"));
            };
            if !targets.insert(target) {
                return Err(format!("batch_output target output name '{target}' can only be specified once"));
            }
            if DataType::from_config(output.data_type) == Some(DataType::Bytes) {
                return Err(format!(
                    "batch_output target '{target}' is TYPE_STRING; a batch output must have fixed-size elements"
                ));
            }
        }
    }
    Ok(())
}

/// Triton's rule for the `source_input` of a batch input or output
/// (`section`): exactly one, and a configuration input.
fn check_batch_source(section: &str, kind: &str, sources: &[String], config: &ModelConfig) -> Result<(), String> {
    if sources.len() != 1 {
        return Err(format!("{section} kind '{kind}' expects 1 source input, got {}", sources.len()));
    }
    if let Some(unknown) = sources.iter().find(|&name| !config.input.iter().any(|input| &input.name == name)) {
        return Err(format!("{section} kind '{kind}': unknown source input name '{unknown}'"));
    }
    Ok(())
}

/// Triton's checks of `dynamic_batching`. A model that does not batch may
/// have it too: its requests then run one at a time, with the priority
/// levels and queue policies.
fn check_dynamic_batching(batching: &ModelDynamicBatching, max_batch_size: i32) -> Result<(), String> {
    if let Some(&size) = batching.preferred_batch_size.iter().find(|&&size| size < 1 || size > max_batch_size) {
        return Err(format!(
            "dynamic_batching preferred_batch_size {size} must be between 1 and max_batch_size {max_batch_size}"
        ));
    }
    let levels = batching.priority_levels;
    if levels > 0 && !(1..=levels).contains(&batching.default_priority_level) {
        return Err(format!(
            "dynamic_batching default_priority_level must be between 1 and priority_levels {levels}, not {}",
            batching.default_priority_level
        ));
    }
    // Without priority levels Triton ignores per-level policies.
    if levels > 0
        && let Some(level) = batching.priority_queue_policy.keys().find(|&&level| level < 1 || level > levels)
    {
        return Err(format!(
            "dynamic_batching priority_queue_policy names level {level}, outside 1 to priority_levels {levels}"
        ));
    }
    // Answers in arrival order would hold a prioritised or delayed
    // request's answer behind the requests it overtook; Triton refuses
    // these combinations for that reason, and so does this server.
    if batching.preserve_ordering {
        if levels > 1 {
            return Err(format!(
                "dynamic_batching preserve_ordering allows one priority level, not priority_levels {levels}"
            ));
        }
        let delays = |policy: &ModelQueuePolicy| {
            policy.default_timeout_microseconds != 0 && policy.timeout_action() == TimeoutAction::Delay
        };
        if batching.default_queue_policy.iter().chain(batching.priority_queue_policy.values()).any(delays) {
            return Err("dynamic_batching preserve_ordering cannot be combined with a queue policy whose \
                        timeout_action is DELAY"
                .to_string());
        }
    }
    Ok(())
}

fn check_tensors<'a>(
    what: &str,
    tensors: impl Iterator<Item = (&'a str, i32, &'a Vec<i64>, &'a Option<ModelTensorReshape>)>,
    max_batch_size: i32,
) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (name, data_type, dims, reshape) in tensors {
        if name.is_empty() {
            return Err(format!("an {what} has no name"));
        }
        if !seen.insert(name) {
            return Err(format!("{what} '{name}' is listed twice"));
        }
        if DataType::from_config(data_type).is_none() {
            return Err(format!("{what} '{name}' must set data_type to a valid TYPE_* value"));
        }
        if dims.is_empty() {
            return Err(format!("{what} '{name}' must specify dims"));
        }
        if dims.iter().any(|&dim| dim < 1 && dim != -1) {
            return Err(format!(
                "{what} '{name}' has dims {}; each dimension must be 1 or more, or -1 for a variable size",
                format_shape(dims)
            ));
        }
        if let Some(reshape) = reshape {
            check_reshape(what, name, dims, &reshape.shape, max_batch_size)?;
        }
    }
    Ok(())
}

fn check_reshape(what: &str, name: &str, dims: &[i64], reshape: &[i64], max_batch_size: i32) -> Result<(), String> {
    if reshape.is_empty() && max_batch_size == 0 {
        return Err(format!("{what} '{name}' cannot have an empty reshape in a model that does not batch"));
    }
    if reshape.iter().any(|&dim| dim < 1 && dim != -1) {
        return Err(format!(
            "{what} '{name}' has reshape {}; each dimension must be 1 or more, or -1",
            format_shape(reshape)
        ));
    }
    let variable = |shape: &[i64]| shape.contains(&-1);
    let size = |shape: &[i64]| shape.iter().product::<i64>();
    let consistent = match (variable(dims), variable(reshape)) {
        (false, false) => size(dims) == size(reshape),
        (true, true) => true,
        _ => false,
    };
    if !consistent {
        return Err(format!(
            "{what} '{name}' has dims {} and reshape {}, which hold different numbers of elements",
            format_shape(dims),
            format_shape(reshape)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    fn config(text: &str) -> ModelConfig {
        parse_text_format(text).unwrap()
    }

    const VALID: &str = r#"
        name: "m" max_batch_size: 4
        input { name: "x" data_type: TYPE_FP32 dims: [ 2, 3 ] reshape { shape: [ 6 ] } }
        output { name: "y" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } }
    "#;

    #[test]
    fn accepts_a_valid_config() {
        check_config(&config(VALID)).unwrap();
        let ragged = VALID.replace("reshape { shape: [ 6 ] }", "allow_ragged_batch: true")
            + "batch_input { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: [ \"ends\", \"ends2\" ] \
               data_type: TYPE_FP32 source_input: \"x\" } \
               batch_output { target_name: \"y\" source_input: \"x\" }";
        check_config(&config(&ragged)).unwrap();
    }

    #[test]
    fn names_each_kind_of_mistake() {
        let cases = [
            (VALID.replace("max_batch_size: 4", "max_batch_size: -1"), "max_batch_size must be 0 or more"),
            (VALID.replace("dims: [ 2, 3 ]", "dims: [ 2, 0 ]"), "input 'x' has dims [2,0]"),
            (VALID.replace("shape: [ 6 ]", "shape: [ 5 ]"), "hold different numbers of elements"),
            (VALID.replace("data_type: TYPE_FP32 dims: [ 1 ]", "dims: [ 1 ]"), "output 'y' must set data_type"),
            (
                VALID.replace("name: \"y\"", "name: \"x\" ") + "output { name: \"x\" data_type: TYPE_FP32 dims: [1] }",
                "output 'x' is listed twice",
            ),
            (VALID.replace("max_batch_size: 4", "max_batch_size: 0"), "cannot have an empty reshape"),
            (VALID.replace("dims: [ 2, 3 ] reshape { shape: [ 6 ] }", ""), "input 'x' must specify dims"),
            (
                VALID.to_string() + "dynamic_batching { preferred_batch_size: [ 8 ] }",
                "preferred_batch_size 8 must be between 1 and max_batch_size 4",
            ),
            (
                VALID.to_string() + "dynamic_batching { priority_levels: 2 }",
                "default_priority_level must be between 1 and priority_levels 2",
            ),
            (
                VALID.to_string()
                    + "dynamic_batching { priority_levels: 2 default_priority_level: 1 \
                                     priority_queue_policy { key: 3 value { } } }",
                "priority_queue_policy names level 3, outside 1 to priority_levels 2",
            ),
            (
                VALID.to_string()
                    + "sequence_batching { control_input [ { name: \"x\" control [ { kind: \
                                     CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ] }",
                "control input 'x' is also a configuration input",
            ),
            (
                VALID.to_string() + "sequence_batching { } response_cache { enable: true }",
                "response_cache cannot be enabled for a model with sequence_batching",
            ),
            (VALID.to_string() + "ensemble_scheduling { }", "ensemble_scheduling is for models of platform 'ensemble'"),
            (VALID.to_string() + "platform: \"ensemble\"", "an ensemble needs ensemble_scheduling"),
            (
                VALID.to_string()
                    + "platform: \"ensemble\" ensemble_scheduling { step { model_name: \"a\" \
                       input_map { key: \"i\" value: \"x\" } output_map { key: \"o\" value: \"z\" } } }",
                "ensemble output 'y' is not the output of any step",
            ),
            (
                VALID.replace("reshape { shape: [ 6 ] }", "allow_ragged_batch: true optional: true"),
                "input 'x' cannot be both optional and allow_ragged_batch",
            ),
            (
                VALID.to_string() + "batch_input { kind: BATCH_ELEMENT_COUNT target_name: \"n\" data_type: TYPE_FP32 }",
                "batch_input kind 'BATCH_ELEMENT_COUNT' expects 1 source input, got 0",
            ),
            (
                VALID.to_string()
                    + "batch_input { kind: BATCH_ITEM_SHAPE target_name: \"n\" data_type: TYPE_INT64 \
                       source_input: \"x\" }",
                "batch_input kind 'BATCH_ITEM_SHAPE': the data type must be TYPE_INT32 or TYPE_FP32",
            ),
            (
                VALID.to_string() + "batch_input { target_name: \"n\" data_type: TYPE_INT32 source_input: \"z\" }",
                "batch_input kind 'BATCH_ELEMENT_COUNT': unknown source input name 'z'",
            ),
            (
                VALID.to_string() + "batch_input { data_type: TYPE_INT32 source_input: \"x\" }",
                "batch_input kind 'BATCH_ELEMENT_COUNT' names no target_name",
            ),
            (
                VALID.to_string() + "batch_input { target_name: \"x\" data_type: TYPE_INT32 source_input: \"x\" }",
                "batch_input target 'x' is also a configuration input",
            ),
            (
                VALID.to_string() + "batch_output { target_name: \"y\" source_input: [ \"x\", \"x\" ] }",
                "batch_output kind 'BATCH_SCATTER_WITH_INPUT_SHAPE' expects 1 source input, got 2",
            ),
            (
                VALID.to_string() + "batch_output { target_name: \"y\" source_input: \"z\" }",
                "batch_output kind 'BATCH_SCATTER_WITH_INPUT_SHAPE': unknown source input name 'z'",
            ),
            (
                VALID.to_string() + "batch_output { target_name: \"x\" source_input: \"x\" }",
                "unknown target output name 'x'",
            ),
            (
                VALID.to_string() + "batch_output { target_name: [ \"y\", \"y\" ] source_input: \"x\" }",
                "target output name 'y' can only be specified once",
            ),
            (
                VALID.replace(
                    "output { name: \"y\" data_type: TYPE_FP32",
                    "output { name: \"y\" data_type: TYPE_STRING",
                ) + "batch_output { target_name: \"y\" source_input: \"x\" }",
                "batch_output target 'y' is TYPE_STRING",
            ),
            (
                VALID.to_string() + "instance_group { name: \"g\" kind: KIND_CPU gpus: [ 0 ] }",
                "instance_group 'g' has kind KIND_CPU but lists gpus [0]",
            ),
            (
                VALID.to_string()
                    + "dynamic_batching { preserve_ordering: true priority_levels: 2 default_priority_level: 1 }",
                "preserve_ordering allows one priority level, not priority_levels 2",
            ),
            (
                VALID.to_string()
                    + "dynamic_batching { preserve_ordering: true \
                       default_queue_policy { default_timeout_microseconds: 100 timeout_action: DELAY } }",
                "preserve_ordering cannot be combined with a queue policy whose timeout_action is DELAY",
            ),
        ];
        for (text, expected) in cases {
            let error = check_config(&config(&text)).unwrap_err();
            assert!(error.contains(expected), "expected '{expected}' in '{error}'");
        }
    }

    #[test]
    fn accepts_what_triton_accepts_without_batching() {
        // Requests of a model that does not batch still go through the
        // dynamic batcher's queue policies, one at a time; per-level
        // policies without levels are ignored.
        let unbatched = VALID.replace("max_batch_size: 4", "").replace("reshape { shape: [ ] }", "");
        check_config(&config(&(unbatched + "dynamic_batching { default_queue_policy { max_queue_size: 2 } }")))
            .unwrap();
        check_config(&config(
            &(VALID.to_string() + "dynamic_batching { priority_queue_policy { key: 5 value { max_queue_size: 1 } } }"),
        ))
        .unwrap();
    }

    #[test]
    fn requires_inputs_and_outputs() {
        let error = check_config(&config("name: \"m\"")).unwrap_err();
        assert!(error.contains("no inputs"), "{error}");
    }
}
