//! Model configurations: Triton's `ModelConfig` message, read from
//! `config.pbtxt` (or a load request's JSON), completed from the model file and checked before load.

mod autocomplete;
mod check;
mod json_format;
mod text_format;

pub use autocomplete::{AutocompleteOptions, autocomplete, check_against_signature};
pub use check::check_config;
pub use json_format::parse_json_config;
pub use text_format::{model_config_descriptor, parse_text_format};

pub use crate::proto::inference::ModelConfig;

/// Platform name of ONNX models, as Triton reports it.
pub const ONNX_PLATFORM: &str = "onnxruntime_onnx";
/// Backend name of ONNX models.
pub const ONNX_BACKEND: &str = "onnxruntime";
/// Model file looked for in each version directory unless the configuration
/// names another.
pub const DEFAULT_ONNX_FILENAME: &str = "model.onnx";
