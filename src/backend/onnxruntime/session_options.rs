//! Session settings from a model configuration, with the names and meanings
//! of Triton's ONNX Runtime backend (`parameters`,
//! `optimization.graph.level` and `model_operations`).

use std::path::PathBuf;

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use super::accelerators::{check_cpu_accelerators, cuda_provider_options};
use super::parameters;
use crate::backend::Device;
use crate::model_config::ModelConfig;

/// How to build the ONNX Runtime sessions of one model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// Threads inside one operator.
    pub intra_op_threads: usize,
    /// Threads across operators (parallel execution only); 0 keeps ONNX
    /// Runtime's default.
    pub inter_op_threads: usize,
    /// Run independent graph branches in parallel (`execution_mode: 1`).
    pub parallel_execution: bool,
    /// Graph optimization level.
    pub optimization: GraphOptimizationLevel,
    /// Memory pattern optimization; `None` keeps ONNX Runtime's default.
    pub memory_pattern: Option<bool>,
    /// Whether idle intra-op threads spin waiting for work. Off unless the
    /// configuration sets `session.intra_op.allow_spinning` to 1: spinning
    /// threads take the cores the request handling and the other
    /// instances need, and a server is rarely idle long enough to gain.
    pub intra_op_spinning: bool,
    /// Options for the CUDA execution provider, for a GPU instance (see
    /// [`cuda_provider_options`]); empty on the CPU.
    pub cuda_provider_options: Vec<(String, String)>,
    /// Libraries of custom operators to register, in order
    /// (`model_operations { op_library_filename: [...] }`).
    pub operator_libraries: Vec<PathBuf>,
}

impl SessionOptions {
    /// Reads the settings of `config` for an instance on `device`. Without
    /// `intra_op_thread_count`, the machine's cores are divided between the
    /// model's `instances` so that instances running side by side do not
    /// oversubscribe the CPU.
    pub fn from_config(config: &ModelConfig, instances: usize, device: Device) -> Result<Self, String> {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        // As in Triton, a count of 0 or less keeps the default.
        let positive = |count: Option<i64>| count.and_then(|count| usize::try_from(count).ok()).filter(|&n| n > 0);
        let intra_op_threads = positive(parameters::integer(config, "intra_op_thread_count")?)
            .unwrap_or_else(|| (cores / instances.max(1)).max(1));
        let inter_op_threads = positive(parameters::integer(config, "inter_op_thread_count")?).unwrap_or(0);
        check_cpu_accelerators(config)?;
        let parallel_execution = match parameters::integer::<i64>(config, "execution_mode")? {
            None | Some(0) => false,
            Some(1) => true,
            Some(other) => {
                return Err(format!("parameter execution_mode must be 0 (sequential) or 1 (parallel), not {other}"));
            }
        };
        let level = config
            .optimization
            .as_ref()
            .and_then(|optimization| optimization.graph.as_ref())
            .map_or(0, |graph| graph.level);
        let optimization = match level {
            -1 => GraphOptimizationLevel::Level1,
            1 => GraphOptimizationLevel::Level2,
            2 => GraphOptimizationLevel::Disable,
            _ => GraphOptimizationLevel::All,
        };
        let memory_pattern = parameters::boolean(config, "enable_mem_pattern")?;
        let intra_op_spinning =
            parameters::integer::<u8>(config, "session.intra_op.allow_spinning")?.is_some_and(|value| value != 0);
        Ok(Self {
            intra_op_threads,
            inter_op_threads,
            parallel_execution,
            optimization,
            memory_pattern,
            intra_op_spinning,
            cuda_provider_options: match device {
                Device::Cpu => Vec::new(),
                Device::Gpu(_) => cuda_provider_options(config)?,
            },
            operator_libraries: operator_libraries(config),
        })
    }

    /// Applies these settings to a session builder. The server and the
    /// benchmark's raw in-process limit both build sessions through here,
    /// so the raw limit runs with exactly the server's settings.
    pub fn apply(&self, builder: SessionBuilder) -> ort::Result<SessionBuilder> {
        let mut builder = builder
            .with_intra_threads(self.intra_op_threads)?
            .with_intra_op_spinning(self.intra_op_spinning)?
            .with_parallel_execution(self.parallel_execution)?
            .with_optimization_level(self.optimization)?;
        if self.inter_op_threads > 0 {
            builder = builder.with_inter_threads(self.inter_op_threads)?;
        }
        if let Some(enable) = self.memory_pattern {
            builder = builder.with_memory_pattern(enable)?;
        }
        with_operator_libraries(builder, &self.operator_libraries)
    }
}

/// Registers the custom operator `libraries` with a session, in order.
pub fn with_operator_libraries(mut builder: SessionBuilder, libraries: &[PathBuf]) -> ort::Result<SessionBuilder> {
    for library in libraries {
        builder = builder.with_operator_library(library)?;
    }
    Ok(builder)
}

/// The custom operator libraries a configuration names, as ONNX Runtime
/// opens them (a bare file name is looked up where the system's loader
/// looks).
pub fn operator_libraries(config: &ModelConfig) -> Vec<PathBuf> {
    config
        .model_operations
        .iter()
        .flat_map(|operations| operations.op_library_filename.iter().map(PathBuf::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    #[test]
    fn reads_triton_parameters() {
        let config = parse_text_format(
            r#"optimization { graph { level: 2 } }
               parameters { key: "intra_op_thread_count" value { string_value: "3" } }
               parameters { key: "inter_op_thread_count" value { string_value: "2" } }
               parameters { key: "execution_mode" value { string_value: "1" } }
               parameters { key: "enable_mem_pattern" value { string_value: "false" } }
               parameters { key: "session.intra_op.allow_spinning" value { string_value: "1" } }
               model_operations { op_library_filename: [ "/opt/ops/libcustom.so", "libmore.so" ] }"#,
        )
        .unwrap();
        let options = SessionOptions::from_config(&config, 2, Device::Cpu).unwrap();
        assert_eq!(
            options,
            SessionOptions {
                intra_op_threads: 3,
                inter_op_threads: 2,
                parallel_execution: true,
                optimization: GraphOptimizationLevel::Disable,
                memory_pattern: Some(false),
                intra_op_spinning: true,
                cuda_provider_options: vec![],
                operator_libraries: vec![PathBuf::from("/opt/ops/libcustom.so"), PathBuf::from("libmore.so")],
            }
        );
    }

    #[test]
    fn divides_cores_between_instances_by_default() {
        let cores = std::thread::available_parallelism().unwrap().get();
        let options = SessionOptions::from_config(&ModelConfig::default(), 1, Device::Cpu).unwrap();
        assert_eq!(options.intra_op_threads, cores);
        assert_eq!(options.optimization, GraphOptimizationLevel::All);
        assert!(!options.intra_op_spinning);
        let many = SessionOptions::from_config(&ModelConfig::default(), cores * 4, Device::Cpu).unwrap();
        assert_eq!(many.intra_op_threads, 1);
        // As in Triton, a count of 0 or less means the default.
        let config =
            parse_text_format(r#"parameters { key: "intra_op_thread_count" value { string_value: "-1" } }"#).unwrap();
        assert_eq!(SessionOptions::from_config(&config, 1, Device::Cpu).unwrap().intra_op_threads, cores);
    }

    #[test]
    fn only_gpu_instances_read_the_gpu_settings() {
        // As in Triton, a CPU instance ignores the GPU accelerators, even
        // one it would refuse.
        let config = parse_text_format(
            r#"parameters { key: "gpu_mem_limit" value { string_value: "1024" } }
               optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "cuda" } ] } }"#,
        )
        .unwrap();
        assert_eq!(SessionOptions::from_config(&config, 1, Device::Cpu).unwrap().cuda_provider_options, vec![]);
        assert_eq!(
            SessionOptions::from_config(&config, 1, Device::Gpu(0)).unwrap().cuda_provider_options,
            vec![("gpu_mem_limit".to_string(), "1024".to_string())]
        );
        let unknown = parse_text_format(
            r#"optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "rocm" } ] } }"#,
        )
        .unwrap();
        assert!(SessionOptions::from_config(&unknown, 1, Device::Cpu).is_ok());
        assert!(SessionOptions::from_config(&unknown, 1, Device::Gpu(0)).unwrap_err().contains("'rocm'"));
    }

    #[test]
    fn rejects_malformed_values() {
        let config =
            parse_text_format(r#"parameters { key: "intra_op_thread_count" value { string_value: "many" } }"#).unwrap();
        let error = SessionOptions::from_config(&config, 1, Device::Cpu).unwrap_err();
        assert!(error.contains("intra_op_thread_count") && error.contains("many"), "{error}");
    }
}
