//! Model control, Triton's model repository extension: which models load at
//! start, and how clients list, load and unload them while the server runs.
//! The frontends decode their wire parameters into [`ControlParameters`];
//! the rules on what a load or unload accepts live here, once.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::inference::{ParameterValue, Parameters};

/// The prefix of Triton's load parameters that carry a model file:
/// `file:<version>/<file name>`, the path inside the model directory.
pub const FILE_PARAMETER_PREFIX: &str = "file:";

/// The parameters of a load or unload request as a frontend decoded them:
/// typed values, and byte strings (gRPC's `bytes_param`; over HTTP, the
/// decoded base64 text of a `file:` parameter), by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlParameters {
    /// Booleans, numbers and strings.
    pub values: Parameters,
    /// Byte strings.
    pub bytes: BTreeMap<String, Bytes>,
}

/// Triton's `--model-control-mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelControlMode {
    /// Every model of the repositories loads at start; load and unload
    /// requests are refused.
    #[default]
    None,
    /// Only the `--load-model` models load at start; clients load, reload and
    /// unload models with the repository API.
    Explicit,
    /// Every model of the repositories loads at start, and the server
    /// follows the repositories: it loads added models, reloads changed ones
    /// and unloads removed ones every `--repository-poll-secs`. Load and
    /// unload requests are refused.
    Poll,
}

/// The message of a load or unload request in a mode that refuses them. It
/// starts with Triton's own words, which client scripts look for.
pub fn control_refusal(mode: ModelControlMode) -> String {
    let how = match mode {
        ModelControlMode::Poll => "runs with --model-control-mode=poll and follows the model repository",
        ModelControlMode::None | ModelControlMode::Explicit => "runs with --model-control-mode=none",
    };
    format!(
        "explicit model load / unload is not allowed if polling is enabled: this server {how}; start it with \
         --model-control-mode=explicit to load and unload models"
    )
}

/// Which models load when the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupModels {
    /// Every model of the repositories.
    All,
    /// These models, by name, in the order given.
    Named(Vec<String>),
}

impl StartupModels {
    /// What `mode` and the `--load-model` values ask for: everything in
    /// modes `none` and `poll`; in mode `explicit` the named models, all of
    /// them when one of the names is `*`, as in Triton.
    pub fn new(mode: ModelControlMode, load_model: &[String]) -> Self {
        match mode {
            ModelControlMode::None | ModelControlMode::Poll => Self::All,
            ModelControlMode::Explicit if load_model.iter().any(|name| name == "*") => Self::All,
            ModelControlMode::Explicit => {
                let mut names: Vec<String> = Vec::new();
                for name in load_model {
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
                Self::Named(names)
            }
        }
    }
}

/// One row of the repository index: a model directory of the repositories
/// or a model the server has loaded, with a version and state once it has
/// been asked to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryIndexEntry {
    /// Model name.
    pub name: String,
    /// Version, when the row is about one.
    pub version: Option<i64>,
    /// Triton's state name (`READY`, `LOADING`, `UNAVAILABLE`); `None` for
    /// a model that has never been asked to load.
    pub state: Option<&'static str>,
    /// Why the model is in that state, empty when there is nothing to say.
    pub reason: String,
}

/// What a load request asks for beyond the model's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// A configuration in Triton's JSON form that replaces the model's
    /// `config.pbtxt` for this load.
    pub config: Option<String>,
    /// Model files sent with the request, by their path inside the model
    /// directory (`1/model.onnx`): when there are any, they are the whole
    /// model directory for this load, in place of the repository's.
    pub files: BTreeMap<PathBuf, Bytes>,
}

impl LoadOptions {
    /// Reads the parameters of a load request for `model`: `config`, a JSON
    /// string, and Triton's `file:<path>` byte strings, which need `config`
    /// (the files replace the model directory, its `config.pbtxt` too).
    /// Anything else is refused, naming the parameter.
    pub fn from_parameters(model: &str, parameters: &ControlParameters) -> Result<Self> {
        let invalid = |message: String| Error::invalid_argument(format!("load of model '{model}': {message}"));
        let mut options = Self::default();
        for (key, value) in &parameters.values {
            match (key.as_str(), value) {
                ("config", ParameterValue::String(config)) => options.config = Some(config.clone()),
                ("config", other) => {
                    return Err(invalid(format!("the 'config' parameter must be a string of JSON, not {other}")));
                }
                (file, _) if file.starts_with(FILE_PARAMETER_PREFIX) => {
                    return Err(invalid(format!(
                        "parameter '{file}' must be bytes (bytes_param), the file's contents"
                    )));
                }
                (other, _) => {
                    return Err(invalid(format!(
                        "unknown parameter '{other}'; a load takes 'config' and 'file:<version>/<file name>'"
                    )));
                }
            }
        }
        for (key, contents) in &parameters.bytes {
            let Some(path) = key.strip_prefix(FILE_PARAMETER_PREFIX) else {
                return Err(invalid(format!(
                    "parameter '{key}' is bytes; only 'file:<version>/<file name>' parameters carry bytes"
                )));
            };
            let path = model_file_path(path).map_err(|why| invalid(format!("parameter '{key}': {why}")))?;
            options.files.insert(path, contents.clone());
        }
        if !options.files.is_empty() && options.config.is_none() {
            return Err(invalid(
                "model files sent with a load need the 'config' parameter too: they replace the model directory, \
                 its config.pbtxt included"
                    .to_string(),
            ));
        }
        Ok(options)
    }
}

/// A `file:` parameter's path, checked to stay inside the model directory
/// it is written to: relative, without `..`, naming a file.
fn model_file_path(path: &str) -> std::result::Result<PathBuf, String> {
    let path = Path::new(path);
    let mut checked = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => checked.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "the path '{}' must stay within the model directory (relative, without '..')",
                    path.display()
                ));
            }
        }
    }
    if checked.as_os_str().is_empty() || path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(format!("the path '{}' names no file", path.display()));
    }
    Ok(checked)
}

/// What an unload request asks for beyond the model's name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnloadOptions {
    /// Triton's `unload_dependents`: unloading an ensemble also unloads the
    /// composing models that were loaded only because it was, and that no
    /// other ensemble needs.
    pub unload_dependents: bool,
}

impl UnloadOptions {
    /// Reads the parameters of an unload request for `model`:
    /// `unload_dependents`, a boolean; anything else is refused, naming it.
    pub fn from_parameters(model: &str, parameters: &ControlParameters) -> Result<Self> {
        if let Some((key, contents)) = parameters.bytes.iter().next() {
            return Err(Error::invalid_argument(format!(
                "unload of model '{model}': unknown parameter '{key}' ({} bytes); an unload takes only \
                 'unload_dependents'",
                contents.len()
            )));
        }
        let mut options = Self::default();
        for (key, value) in &parameters.values {
            match (key.as_str(), value) {
                ("unload_dependents", ParameterValue::Bool(unload_dependents)) => {
                    options.unload_dependents = *unload_dependents;
                }
                ("unload_dependents", other) => {
                    return Err(Error::invalid_argument(format!(
                        "unload of model '{model}': the 'unload_dependents' parameter must be a boolean, not {other}"
                    )));
                }
                (other, _) => {
                    return Err(Error::invalid_argument(format!(
                        "unload of model '{model}': unknown parameter '{other}'; an unload takes only \
                         'unload_dependents'"
                    )));
                }
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(entries: &[(&str, ParameterValue)]) -> ControlParameters {
        let values = entries.iter().map(|(key, value)| (key.to_string(), value.clone())).collect();
        ControlParameters { values, bytes: BTreeMap::new() }
    }

    fn with_files(mut parameters: ControlParameters, files: &[(&str, &'static [u8])]) -> ControlParameters {
        for (key, contents) in files {
            parameters.bytes.insert(key.to_string(), Bytes::from_static(contents));
        }
        parameters
    }

    #[test]
    fn startup_models_follow_the_mode() {
        let names = ["b".to_string(), "a".to_string(), "b".to_string()];
        assert_eq!(StartupModels::new(ModelControlMode::None, &names), StartupModels::All);
        assert_eq!(
            StartupModels::new(ModelControlMode::Explicit, &names),
            StartupModels::Named(vec!["b".into(), "a".into()])
        );
        assert_eq!(StartupModels::new(ModelControlMode::Explicit, &["*".to_string()]), StartupModels::All);
        assert_eq!(StartupModels::new(ModelControlMode::Explicit, &[]), StartupModels::Named(vec![]));
    }

    #[test]
    fn load_parameters_take_a_json_config() {
        let config = ParameterValue::String("{\"max_batch_size\": 4}".into());
        let options = LoadOptions::from_parameters("m", &parameters(&[("config", config)])).unwrap();
        assert_eq!(options.config.as_deref(), Some("{\"max_batch_size\": 4}"));
        assert!(options.files.is_empty());
        assert_eq!(LoadOptions::from_parameters("m", &ControlParameters::default()).unwrap(), LoadOptions::default());

        let error =
            LoadOptions::from_parameters("m", &parameters(&[("config", ParameterValue::Int64(1))])).unwrap_err();
        assert!(error.message().contains("'config' parameter must be a string of JSON, not 1"), "{error}");
        let error = LoadOptions::from_parameters("m", &parameters(&[("x", ParameterValue::Bool(true))])).unwrap_err();
        assert!(error.message().contains("load of model 'm': unknown parameter 'x'"), "{error}");
    }

    #[test]
    fn load_parameters_take_model_files_with_a_config() {
        let config = parameters(&[("config", ParameterValue::String("{}".into()))]);
        let files = with_files(config.clone(), &[("file:1/model.onnx", b"onnx"), ("file:./1/labels.txt", b"a")]);
        let options = LoadOptions::from_parameters("m", &files).unwrap();
        let paths: Vec<&Path> = options.files.keys().map(PathBuf::as_path).collect();
        assert_eq!(paths, [Path::new("1/labels.txt"), Path::new("1/model.onnx")]);
        assert_eq!(options.files[Path::new("1/model.onnx")], Bytes::from_static(b"onnx"));

        let error =
            LoadOptions::from_parameters("m", &with_files(ControlParameters::default(), &[("file:1/model.onnx", b"")]))
                .unwrap_err();
        assert!(error.message().contains("need the 'config' parameter too"), "{error}");
        for escaping in ["file:../1/model.onnx", "file:1/../../x", "file:/etc/passwd"] {
            let error = LoadOptions::from_parameters("m", &with_files(config.clone(), &[(escaping, b"")])).unwrap_err();
            assert!(error.message().contains("must stay within the model directory"), "{escaping}: {error}");
        }
        for empty in ["file:", "file:.", "file:1/"] {
            let error = LoadOptions::from_parameters("m", &with_files(config.clone(), &[(empty, b"")])).unwrap_err();
            assert!(error.message().contains("names no file"), "{empty}: {error}");
        }
        let text = parameters(&[("file:1/model.onnx", ParameterValue::String("AAAA".into()))]);
        let error = LoadOptions::from_parameters("m", &text).unwrap_err();
        assert!(error.message().contains("parameter 'file:1/model.onnx' must be bytes"), "{error}");
        let error = LoadOptions::from_parameters("m", &with_files(config, &[("blob", b"x")])).unwrap_err();
        assert!(error.message().contains("parameter 'blob' is bytes"), "{error}");
    }

    #[test]
    fn unload_parameters_take_unload_dependents_only() {
        let asked = parameters(&[("unload_dependents", ParameterValue::Bool(true))]);
        assert_eq!(UnloadOptions::from_parameters("m", &asked).unwrap(), UnloadOptions { unload_dependents: true });
        assert_eq!(
            UnloadOptions::from_parameters("m", &ControlParameters::default()).unwrap(),
            UnloadOptions::default()
        );
        let wrong = parameters(&[("unload_dependents", ParameterValue::String("yes".into()))]);
        let error = UnloadOptions::from_parameters("m", &wrong).unwrap_err();
        assert!(error.message().contains("must be a boolean, not \"yes\""), "{error}");
        let unknown = parameters(&[("force", ParameterValue::Bool(true))]);
        let error = UnloadOptions::from_parameters("m", &unknown).unwrap_err();
        assert!(error.message().contains("unknown parameter 'force'"), "{error}");
        let bytes = with_files(ControlParameters::default(), &[("file:1/model.onnx", b"abc")]);
        let error = UnloadOptions::from_parameters("m", &bytes).unwrap_err();
        assert!(error.message().contains("unknown parameter 'file:1/model.onnx' (3 bytes)"), "{error}");
    }
}
