//! The ONNX Runtime backend, through the `ort` crate with the library
//! loaded at run time.

mod accelerators;
mod cuda;
mod global_thread_pool;
mod library;
mod parameters;
mod session_options;
mod values;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::{Outlet, ValueType};

pub use global_thread_pool::GlobalThreadPool;
pub use library::{LIBRARY_ENV, LIBRARY_FILENAME, locate_library};
pub use parameters::parse_bool;
pub use session_options::SessionOptions;

use super::{Backend, Device, InstanceSettings, ModelInstance, ModelSignature, TensorSpec};
use crate::error::{Error, Result};
use crate::model_config::{ModelConfig, ONNX_BACKEND, check_against_signature};
use crate::statistics::ExecutionTimes;
use crate::tensor::Tensor;

/// Runs ONNX models on ONNX Runtime.
pub struct OnnxRuntimeBackend {
    environment: Environment,
    library: PathBuf,
}

impl OnnxRuntimeBackend {
    /// Loads the ONNX Runtime library (see [`locate_library`]) and creates
    /// the process's ONNX Runtime environment, with a thread pool that every
    /// session shares when `global_thread_pool` is given. Only one backend
    /// may exist per process.
    pub fn load(explicit_library: Option<&Path>, global_thread_pool: Option<GlobalThreadPool>) -> Result<Self, String> {
        let library = locate_library(explicit_library)?;
        let builder = ort::init_from(&library)
            .map_err(|error| format!("cannot load the ONNX Runtime library '{}': {error}", library.display()))?;
        let mut builder = builder.with_name("tritonrs").with_telemetry(false);
        if let Some(pool) = global_thread_pool {
            let options =
                pool.options().map_err(|error| format!("cannot configure the global thread pool: {error}"))?;
            builder = builder.with_global_thread_pool(options);
        }
        let environment =
            builder.build().map_err(|error| format!("cannot create the ONNX Runtime environment: {error}"))?;
        Ok(Self { environment, library })
    }

    /// The library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    fn session_builder(&self) -> ort::Result<SessionBuilder> {
        Session::builder(&self.environment)
    }
}

impl Backend for OnnxRuntimeBackend {
    fn name(&self) -> &'static str {
        ONNX_BACKEND
    }

    fn gpu_count(&self) -> u32 {
        cuda::usable_gpu_count()
    }

    fn signature(&self, model_path: &Path, config: &ModelConfig) -> Result<ModelSignature> {
        // Only the declared inputs and outputs are needed: skip the graph
        // optimizations that make a full load slow. A model of custom
        // operators loads only with their libraries.
        let load = || -> ort::Result<Session> {
            let builder = self
                .session_builder()?
                .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable)?;
            session_options::with_operator_libraries(builder, &session_options::operator_libraries(config))?
                .commit_from_file(model_path)
        };
        let session = load().map_err(|error| load_error(model_path, error))?;
        signature_of(&session).map_err(|message| Error::internal(format!("'{}': {message}", model_path.display())))
    }

    fn create_instance(&self, settings: &InstanceSettings) -> Result<Box<dyn ModelInstance>> {
        let options = SessionOptions::from_config(&settings.config, settings.instances_of_model, settings.device)
            .map_err(Error::invalid_argument)?;
        let session = self
            .build_session(&options, settings.device, &settings.model_path)
            .map_err(|error| Error::new(error.kind(), format!("instance '{}': {}", settings.name, error.message())))?;
        let signature = signature_of(&session).map_err(Error::internal)?;
        check_against_signature(&settings.config, &signature).map_err(Error::invalid_argument)?;
        tracing::debug!(instance = %settings.name, ?options, "created ONNX Runtime session");
        Ok(Box::new(OnnxRuntimeInstance { session }))
    }
}

impl OnnxRuntimeBackend {
    /// Builds one session of `model_path` the way every instance is built:
    /// `options` applied, and on `Device::Gpu` the CUDA execution provider
    /// (an error, never a silent CPU fallback, when it is missing). Public so
    /// that the benchmark's raw limit runs exactly what an instance runs.
    pub fn build_session(&self, options: &SessionOptions, device: Device, model_path: &Path) -> Result<Session> {
        let execution_provider = match device {
            Device::Cpu => None,
            Device::Gpu(gpu) => Some(cuda::execution_provider(gpu, &self.library, &options.cuda_provider_options)?),
        };
        let configure = || -> ort::Result<Session> {
            let mut builder = options.apply(self.session_builder()?)?;
            if let Some(provider) = &execution_provider {
                builder = builder.with_execution_providers([provider.clone()])?;
            }
            builder.commit_from_file(model_path)
        };
        configure().map_err(|error| load_error(model_path, error))
    }
}

fn load_error(model_path: &Path, error: impl std::fmt::Display) -> Error {
    Error::internal(format!("ONNX Runtime cannot load '{}': {error}", model_path.display()))
}

fn signature_of(session: &Session) -> Result<ModelSignature, String> {
    let specs = |outlets: &[Outlet]| -> Result<Vec<TensorSpec>, String> {
        outlets
            .iter()
            .map(|outlet| match outlet.dtype() {
                ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
                    name: outlet.name().to_string(),
                    datatype: values::datatype_of(*ty),
                    dims: shape.to_vec(),
                }),
                other => Err(format!("'{}' is a {other}; only tensors are supported", outlet.name())),
            })
            .collect()
    };
    Ok(ModelSignature { inputs: specs(session.inputs())?, outputs: specs(session.outputs())? })
}

/// One ONNX Runtime session.
struct OnnxRuntimeInstance {
    session: Session,
}

impl ModelInstance for OnnxRuntimeInstance {
    fn execute(&mut self, inputs: &[Tensor], outputs: &[String], times: &mut ExecutionTimes) -> Result<Vec<Tensor>> {
        let phase = Instant::now();
        let values = inputs
            .iter()
            .map(|tensor| {
                values::input_value(tensor)
                    .map(|value| (tensor.name.as_str(), value))
                    .map_err(|error| Error::invalid_argument(format!("input '{}': {error}", tensor.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        times.input += phase.elapsed();
        let phase = Instant::now();
        let produced = self
            .session
            .run(values)
            .map_err(|error| Error::internal(format!("ONNX Runtime failed to run the model: {error}")))?;
        times.infer += phase.elapsed();
        let phase = Instant::now();
        let tensors = outputs
            .iter()
            .map(|name| {
                let value = produced
                    .get(name)
                    .ok_or_else(|| Error::internal(format!("the model did not produce output '{name}'")))?;
                values::output_tensor(name, value).map_err(Error::internal)
            })
            .collect();
        times.output += phase.elapsed();
        tensors
    }
}
