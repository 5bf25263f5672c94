//! Backends run models. The core talks to them through two small traits: a
//! [`Backend`] inspects model files and creates [`ModelInstance`]s, and each
//! instance executes batches on the thread the scheduler gives it.

pub mod onnxruntime;

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::model_config::ModelConfig;
use crate::statistics::ExecutionTimes;
use crate::tensor::{DataType, Tensor};

/// An input or output as the model file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type; `None` when the model uses a type the protocol lacks.
    pub datatype: Option<DataType>,
    /// Full shape including any batch dimension; -1 marks a dynamic
    /// dimension.
    pub dims: Vec<i64>,
}

/// The inputs and outputs a model file declares, used to auto-complete and
/// check its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelSignature {
    /// Inputs in the model's order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs in the model's order.
    pub outputs: Vec<TensorSpec>,
}

/// Where an instance executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// Host CPU.
    Cpu,
    /// The CUDA device with this index.
    Gpu(i32),
}

/// Everything a backend needs to create one execution instance.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    /// Instance name, `<group name>_<index>` as Triton names them.
    pub name: String,
    /// The model file of this version.
    pub model_path: PathBuf,
    /// The completed configuration.
    pub config: Arc<ModelConfig>,
    /// Where to execute.
    pub device: Device,
    /// How many instances of this model version run side by side, so a
    /// backend can divide the machine's cores between them.
    pub instances_of_model: usize,
}

/// A kind of model runtime, such as ONNX Runtime.
pub trait Backend: Send + Sync {
    /// The backend name used in model configurations (`backend: "..."`).
    fn name(&self) -> &'static str;

    /// How many GPUs instances can run on, as device ids 0 to count - 1;
    /// decides what `KIND_AUTO` and a `KIND_GPU` group without `gpus` mean.
    fn gpu_count(&self) -> u32 {
        0
    }

    /// Reads the inputs and outputs that a model file declares, with what
    /// `config` says about loading it (custom operator libraries) so far.
    fn signature(&self, model_path: &std::path::Path, config: &ModelConfig) -> Result<ModelSignature>;

    /// Loads one execution instance of a model version.
    fn create_instance(&self, settings: &InstanceSettings) -> Result<Box<dyn ModelInstance>>;
}

/// One loaded copy of a model that executes one batch at a time.
pub trait ModelInstance: Send {
    /// Runs the model. `inputs` have passed validation and carry the shapes
    /// the model expects; the result holds the outputs named in `outputs`, in
    /// that order, with the shapes the model produced. The time spent making
    /// backend inputs, running, and reading outputs is added to `times`.
    fn execute(&mut self, inputs: &[Tensor], outputs: &[String], times: &mut ExecutionTimes) -> Result<Vec<Tensor>>;
}
