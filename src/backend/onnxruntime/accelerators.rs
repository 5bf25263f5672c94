//! Execution accelerators and CUDA provider options from a model
//! configuration, read as Triton's ONNX Runtime backend reads them: the
//! `cuda` GPU accelerator passes its parameters to ONNX Runtime's CUDA
//! execution provider, as do the older `parameters` keys
//! `cudnn_conv_algo_search`, `gpu_mem_limit`, `arena_extend_strategy` and
//! `do_copy_in_default_stream`.

use super::parameters::{self, parse_bool};
use crate::model_config::ModelConfig;
use crate::proto::inference::model_optimization_policy::ExecutionAccelerators;

/// The GPU accelerator whose parameters are CUDA provider options.
const CUDA: &str = "cuda";
/// Accelerators Triton knows that this server's ONNX Runtime builds lack:
/// a configuration naming them loads and runs without them, with a
/// warning, rather than failing a model that loads on Triton.
const NOT_BUILT_IN: [&str; 2] = ["tensorrt", "openvino"];
/// CUDA provider options that take a boolean.
const BOOLEAN_OPTIONS: [&str; 2] = ["do_copy_in_default_stream", "use_ep_level_unified_stream"];

fn accelerators(config: &ModelConfig) -> Option<&ExecutionAccelerators> {
    config.optimization.as_ref().and_then(|optimization| optimization.execution_accelerators.as_ref())
}

/// Checks the CPU accelerators of `config`, for every instance: an
/// accelerator Triton would refuse too is an error.
pub fn check_cpu_accelerators(config: &ModelConfig) -> Result<(), String> {
    for accelerator in accelerators(config).iter().flat_map(|accelerators| &accelerators.cpu_execution_accelerator) {
        match accelerator.name.as_str() {
            name if NOT_BUILT_IN.contains(&name) => warn_not_built_in(config, name, "ONNX Runtime's CPU provider"),
            name => return Err(format!("unknown cpu_execution_accelerator '{name}'; known: openvino")),
        }
    }
    Ok(())
}

/// The CUDA execution provider options `config` asks for, read for GPU
/// instances only (as in Triton), as (key, value) pairs for ONNX Runtime;
/// or why the configuration cannot be used: an accelerator name Triton
/// would refuse too, or a malformed value.
pub fn cuda_provider_options(config: &ModelConfig) -> Result<Vec<(String, String)>, String> {
    let mut options = Vec::new();
    for accelerator in accelerators(config).iter().flat_map(|accelerators| &accelerators.gpu_execution_accelerator) {
        match accelerator.name.as_str() {
            CUDA => {
                let mut parameters: Vec<_> = accelerator.parameters.iter().collect();
                parameters.sort();
                for (key, value) in parameters {
                    if BOOLEAN_OPTIONS.contains(&key.as_str()) {
                        parse_bool(value).ok_or_else(|| {
                            format!("cuda accelerator parameter {key} must be true or false, not '{value}'")
                        })?;
                    }
                    options.push((key.clone(), value.clone()));
                }
            }
            name if NOT_BUILT_IN.contains(&name) => warn_not_built_in(config, name, "the CUDA provider"),
            name => return Err(format!("unknown gpu_execution_accelerator '{name}'; known: cuda, tensorrt")),
        }
    }
    legacy_parameters(config, &mut options)?;
    Ok(options)
}

fn warn_not_built_in(config: &ModelConfig, accelerator: &str, instead: &str) {
    tracing::warn!(
        model = %config.name,
        accelerator,
        "this server's ONNX Runtime has no {accelerator} execution provider; the model runs on {instead} without it"
    );
}

/// The CUDA settings Triton still reads from `parameters`; where both
/// give a key, these win, as in Triton.
fn legacy_parameters(config: &ModelConfig, options: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut set = |key: &str, value: String| {
        options.retain(|(existing, _)| existing != key);
        options.push((key.to_string(), value));
    };
    let numbered = |key: &str, names: &[&'static str]| {
        parameters::text(config, key).map(|text| name_of(key, text, names)).transpose()
    };
    if let Some(search) = numbered("cudnn_conv_algo_search", &["EXHAUSTIVE", "HEURISTIC", "DEFAULT"])? {
        set("cudnn_conv_algo_search", search.to_string());
    }
    if let Some(text) = parameters::text(config, "gpu_mem_limit") {
        let bytes: u64 =
            text.parse().map_err(|_| format!("parameter gpu_mem_limit must be a number of bytes, not '{text}'"))?;
        set("gpu_mem_limit", bytes.to_string());
    }
    if let Some(strategy) = numbered("arena_extend_strategy", &["kNextPowerOfTwo", "kSameAsRequested"])? {
        set("arena_extend_strategy", strategy.to_string());
    }
    if let Some(copy) = parameters::boolean(config, "do_copy_in_default_stream")? {
        set("do_copy_in_default_stream", u8::from(copy).to_string());
    }
    Ok(())
}

/// ONNX Runtime's name for the value of a parameter that Triton numbers:
/// `names` lists the names of 0, 1, ...
fn name_of(key: &str, text: &str, names: &[&'static str]) -> Result<&'static str, String> {
    let name = text.parse::<usize>().ok().and_then(|number| names.get(number).copied());
    name.ok_or_else(|| {
        let choices: Vec<String> =
            names.iter().enumerate().map(|(number, name)| format!("{number} ({name})")).collect();
        format!("parameter {key} must be one of {}, not '{text}'", choices.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    fn options(text: &str) -> Result<Vec<(String, String)>, String> {
        cuda_provider_options(&parse_text_format(text).unwrap())
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|&(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn reads_the_cuda_accelerator_and_the_older_parameters() {
        let read = options(
            r#"optimization { execution_accelerators { gpu_execution_accelerator: [
                 { name: "cuda" parameters { key: "gpu_mem_limit" value: "1024" }
                                parameters { key: "use_tf32" value: "0" } } ] } }
               parameters { key: "gpu_mem_limit" value { string_value: "2048" } }
               parameters { key: "cudnn_conv_algo_search" value { string_value: "1" } }
               parameters { key: "arena_extend_strategy" value { string_value: "1" } }
               parameters { key: "do_copy_in_default_stream" value { string_value: "False" } }"#,
        );
        assert_eq!(
            read,
            Ok(pairs(&[
                ("use_tf32", "0"),
                ("cudnn_conv_algo_search", "HEURISTIC"),
                ("gpu_mem_limit", "2048"),
                ("arena_extend_strategy", "kSameAsRequested"),
                ("do_copy_in_default_stream", "0"),
            ]))
        );
        assert_eq!(options(""), Ok(vec![]));
    }

    #[test]
    fn accelerators_this_build_lacks_are_skipped_and_unknown_ones_refused() {
        let skipped = r#"optimization { execution_accelerators {
              gpu_execution_accelerator: [ { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ]
              cpu_execution_accelerator: [ { name: "openvino" } ] } }"#;
        assert_eq!(options(skipped), Ok(vec![]));
        assert_eq!(check_cpu_accelerators(&parse_text_format(skipped).unwrap()), Ok(()));
        let unknown = r#"optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "rocm" } ] } }"#;
        assert!(options(unknown).unwrap_err().contains("unknown gpu_execution_accelerator 'rocm'"));
        let unknown = r#"optimization { execution_accelerators { cpu_execution_accelerator: [ { name: "cuda" } ] } }"#;
        let error = check_cpu_accelerators(&parse_text_format(unknown).unwrap()).unwrap_err();
        assert!(error.contains("unknown cpu_execution_accelerator 'cuda'"), "{error}");
    }

    #[test]
    fn malformed_values_name_the_parameter() {
        let cases = [
            (r#"parameters { key: "cudnn_conv_algo_search" value { string_value: "3" } }"#, "cudnn_conv_algo_search"),
            (r#"parameters { key: "gpu_mem_limit" value { string_value: "4GB" } }"#, "gpu_mem_limit"),
            (r#"parameters { key: "arena_extend_strategy" value { string_value: "2" } }"#, "arena_extend_strategy"),
            (
                r#"optimization { execution_accelerators { gpu_execution_accelerator: [
                     { name: "cuda" parameters { key: "do_copy_in_default_stream" value: "maybe" } } ] } }"#,
                "do_copy_in_default_stream",
            ),
        ];
        for (text, key) in cases {
            let error = options(text).unwrap_err();
            assert!(error.contains(key), "{error}");
        }
    }
}
