//! Model control, Triton's model repository extension: which models load at
//! start, and how clients list, load and unload them while the server runs.
//! The frontends decode their wire parameters into [`Parameters`]; the rules
//! on what a load or unload accepts live here, once.

use crate::error::{Error, Result};
use crate::inference::{ParameterValue, Parameters};

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
}

impl LoadOptions {
    /// Reads the parameters of a load request for `model`: `config`, a JSON
    /// string. Triton's `file:<path>` parameters (model files sent with the
    /// request) and anything else are refused, naming the parameter.
    pub fn from_parameters(model: &str, parameters: &Parameters) -> Result<Self> {
        let mut options = Self::default();
        for (key, value) in parameters {
            match (key.as_str(), value) {
                ("config", ParameterValue::String(config)) => options.config = Some(config.clone()),
                ("config", other) => {
                    return Err(Error::invalid_argument(format!(
                        "load of model '{model}': the 'config' parameter must be a string of JSON, not {other}"
                    )));
                }
                (file, _) if file.starts_with("file:") => {
                    return Err(Error::invalid_argument(format!(
                        "load of model '{model}': parameter '{file}': this server loads model files from the model \
                         repository only, not from the request"
                    )));
                }
                (other, _) => {
                    return Err(Error::invalid_argument(format!(
                        "load of model '{model}': unknown parameter '{other}'; a load takes only 'config'"
                    )));
                }
            }
        }
        Ok(options)
    }
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
    pub fn from_parameters(model: &str, parameters: &Parameters) -> Result<Self> {
        let mut options = Self::default();
        for (key, value) in parameters {
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

    fn parameters(entries: &[(&str, ParameterValue)]) -> Parameters {
        entries.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
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
    fn load_parameters_take_a_json_config_only() {
        let config = ParameterValue::String("{\"max_batch_size\": 4}".into());
        let options = LoadOptions::from_parameters("m", &parameters(&[("config", config)])).unwrap();
        assert_eq!(options.config.as_deref(), Some("{\"max_batch_size\": 4}"));
        assert_eq!(LoadOptions::from_parameters("m", &Parameters::new()).unwrap(), LoadOptions::default());

        let error =
            LoadOptions::from_parameters("m", &parameters(&[("config", ParameterValue::Int64(1))])).unwrap_err();
        assert!(error.message().contains("'config' parameter must be a string of JSON, not 1"), "{error}");
        let file = parameters(&[("file:1/model.onnx", ParameterValue::String("AAAA".into()))]);
        let error = LoadOptions::from_parameters("m", &file).unwrap_err();
        assert!(error.message().contains("parameter 'file:1/model.onnx'"), "{error}");
        let error = LoadOptions::from_parameters("m", &parameters(&[("x", ParameterValue::Bool(true))])).unwrap_err();
        assert!(error.message().contains("load of model 'm': unknown parameter 'x'"), "{error}");
    }

    #[test]
    fn unload_parameters_take_unload_dependents_only() {
        let asked = parameters(&[("unload_dependents", ParameterValue::Bool(true))]);
        assert_eq!(UnloadOptions::from_parameters("m", &asked).unwrap(), UnloadOptions { unload_dependents: true });
        assert_eq!(UnloadOptions::from_parameters("m", &Parameters::new()).unwrap(), UnloadOptions::default());
        let wrong = parameters(&[("unload_dependents", ParameterValue::String("yes".into()))]);
        let error = UnloadOptions::from_parameters("m", &wrong).unwrap_err();
        assert!(error.message().contains("must be a boolean, not \"yes\""), "{error}");
        let unknown = parameters(&[("force", ParameterValue::Bool(true))]);
        let error = UnloadOptions::from_parameters("m", &unknown).unwrap_err();
        assert!(error.message().contains("unknown parameter 'force'"), "{error}");
    }
}
