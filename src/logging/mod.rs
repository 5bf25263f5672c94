//! The server's log and Triton's logging extension: which levels are
//! written (`--log-info`, `--log-warning`, `--log-error`, `--log-verbose`),
//! in which of Triton's record formats (`--log-format`, `record.rs`) and
//! where (`--log-file`, else information on standard output and warnings
//! and errors on standard error, as Triton writes them), changeable while
//! the server runs through `LogSettings` and `/v2/logging`, so an operator
//! can turn on verbose logging on a live server without restarting it.

mod record;

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use self::record::TritonRecords;
pub use self::record::{ESCAPE_VARIABLE, LogFormat, TABLE_FIELD};
use crate::error::{Error, ErrorKind, Result};
use crate::inference::{ParameterValue, Parameters};

/// What is logged, and where, as Triton's logging extension reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The file the log goes to; empty for standard error.
    pub file: String,
    /// Whether INFO messages are written.
    pub info: bool,
    /// Whether WARNING messages are written.
    pub warning: bool,
    /// Whether ERROR messages are written.
    pub error: bool,
    /// 0 for none, 1 for debug messages, 2 and up for trace messages too.
    pub verbose_level: u32,
    /// The record format.
    pub format: LogFormat,
}

impl LogSettings {
    /// Whether messages of `level` are written.
    fn allows(&self, level: &Level) -> bool {
        match *level {
            Level::ERROR => self.error,
            Level::WARN => self.warning,
            Level::INFO => self.info,
            Level::DEBUG => self.verbose_level >= 1,
            Level::TRACE => self.verbose_level >= 2,
        }
    }

    /// The most verbose level written, so that tracing skips the rest at
    /// their call sites.
    fn most_verbose(&self) -> LevelFilter {
        [Level::TRACE, Level::DEBUG, Level::INFO, Level::WARN, Level::ERROR]
            .into_iter()
            .find(|level| self.allows(level))
            .map_or(LevelFilter::OFF, LevelFilter::from_level)
    }
}

/// Libraries whose debug and trace messages would drown the server's own,
/// and the most they may write.
const CHATTY_LIBRARIES: [(&str, Level); 4] =
    [("h2", Level::INFO), ("hyper", Level::INFO), ("tower", Level::INFO), ("ort", Level::WARN)];

/// The global filter that applies the current [`LogSettings`]. Its answer
/// per call site is cached by tracing, and its level hint sets tracing's
/// global maximum, so messages of disabled levels cost a comparison at
/// their call site, on the request path too; a change of the settings
/// rebuilds both (see [`LogControl::update`]). The chatty libraries are
/// capped unless `RUST_LOG` chooses by module itself.
struct LevelSwitches {
    settings: Arc<RwLock<LogSettings>>,
    cap_libraries: bool,
}

/// Whether a message of `level` from module `target` is within the cap of
/// the library it comes from, if that library is a chatty one.
fn within_library_cap(target: &str, level: &Level) -> bool {
    CHATTY_LIBRARIES.iter().all(|(library, most)| {
        let from_library =
            target == *library || target.strip_prefix(library).is_some_and(|rest| rest.starts_with("::"));
        !from_library || level <= most
    })
}

impl LevelSwitches {
    fn allows(&self, metadata: &Metadata<'_>) -> bool {
        (!self.cap_libraries || within_library_cap(metadata.target(), metadata.level()))
            && self.settings.read().unwrap_or_else(|poisoned| poisoned.into_inner()).allows(metadata.level())
    }
}

impl<S: Subscriber> Layer<S> for LevelSwitches {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.allows(metadata) { Interest::always() } else { Interest::never() }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.allows(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.settings.read().unwrap_or_else(|poisoned| poisoned.into_inner()).most_verbose())
    }
}

/// The log's current settings, and the way to change them.
pub struct LogControl {
    settings: Arc<RwLock<LogSettings>>,
    /// Settings changes happen one at a time.
    updating: Mutex<()>,
}

impl LogControl {
    /// The current settings.
    pub fn settings(&self) -> LogSettings {
        self.settings.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Applies the settings a client sent (Triton's names: `log_info`,
    /// `log_warning`, `log_error` booleans, `log_verbose_level` a count,
    /// `log_format` `default` or `ISO8601`) and returns them all. The log
    /// file cannot be changed over the network, as in Triton; an unknown
    /// name or a value of the wrong type changes nothing and says why.
    pub fn update(&self, changes: &Parameters) -> Result<LogSettings> {
        let _one_at_a_time = self.updating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut settings = self.settings();
        let invalid = |key: &str, expected: &str, value: &ParameterValue| {
            Error::invalid_argument(format!("log setting '{key}' must be {expected}, not {value}"))
        };
        for (key, value) in changes {
            match (key.as_str(), value) {
                ("log_file", _) => {
                    return Err(Error::new(
                        ErrorKind::Unimplemented,
                        "log file location can not be updated through network protocol; start the server with \
                         --log-file",
                    ));
                }
                ("log_info", ParameterValue::Bool(on)) => settings.info = *on,
                ("log_warning", ParameterValue::Bool(on)) => settings.warning = *on,
                ("log_error", ParameterValue::Bool(on)) => settings.error = *on,
                ("log_info" | "log_warning" | "log_error", other) => return Err(invalid(key, "true or false", other)),
                ("log_verbose_level", ParameterValue::Int64(level)) => {
                    settings.verbose_level =
                        u32::try_from(*level).map_err(|_| invalid(key, "a level from 0 up", value))?;
                }
                ("log_verbose_level", ParameterValue::Uint64(level)) => {
                    settings.verbose_level =
                        u32::try_from(*level).map_err(|_| invalid(key, "a level from 0 up", value))?;
                }
                ("log_verbose_level", other) => return Err(invalid(key, "a level from 0 up", other)),
                ("log_format", ParameterValue::String(name)) if LogFormat::from_name(name).is_some() => {
                    settings.format = LogFormat::from_name(name).unwrap_or_default();
                }
                ("log_format", other) => return Err(invalid(key, "\"default\" or \"ISO8601\"", other)),
                (other, _) => {
                    return Err(Error::invalid_argument(format!(
                        "unknown log setting '{other}'; the settings are log_file, log_info, log_warning, \
                         log_error, log_verbose_level and log_format"
                    )));
                }
            }
        }
        *self.settings.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = settings.clone();
        // Call sites cached as on or off follow the new settings.
        tracing::callsite::rebuild_interest_cache();
        Ok(settings)
    }
}

/// Where the log goes: the standard streams (information on standard
/// output, warnings and errors on standard error, as in Triton, so that a
/// platform that takes standard error for errors sees only those), or the
/// `--log-file` file.
#[derive(Clone)]
enum Destination {
    StandardStreams,
    File(Arc<File>),
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Destination {
    type Writer = Box<dyn std::io::Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match self {
            Destination::StandardStreams => Box::new(std::io::stderr()),
            Destination::File(file) => Box::new(file.as_ref()),
        }
    }

    fn make_writer_for(&'a self, metadata: &Metadata<'_>) -> Self::Writer {
        match self {
            Destination::StandardStreams if *metadata.level() > Level::WARN => Box::new(std::io::stdout()),
            _ => self.make_writer(),
        }
    }
}

/// Starts logging with `settings`; `file`, when given, is appended to
/// instead of the standard streams. `RUST_LOG`, when set, chooses what is logged
/// by module and level, as tracing's filter directives say, and the
/// verbose level starts at 2 so that the settings do not hide what it asks
/// for; otherwise the chattiest libraries are kept to their warnings or
/// information.
pub fn init(mut settings: LogSettings, file: Option<PathBuf>) -> std::result::Result<Arc<LogControl>, String> {
    let destination = match &file {
        Some(path) => Destination::File(Arc::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|error| format!("cannot open the log file '{}': {error}", path.display()))?,
        )),
        None => Destination::StandardStreams,
    };
    let escape = std::env::var(ESCAPE_VARIABLE).map_or(true, |value| value != "0");
    let directives = EnvFilter::try_from_default_env().ok();
    if directives.is_some() {
        settings.verbose_level = settings.verbose_level.max(2);
    }
    let settings = Arc::new(RwLock::new(settings));
    tracing_subscriber::registry()
        .with(LevelSwitches { settings: Arc::clone(&settings), cap_libraries: directives.is_none() })
        .with(directives)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(destination)
                .event_format(TritonRecords::new(Arc::clone(&settings), escape)),
        )
        .try_init()
        .map_err(|error| format!("cannot start logging: {error}"))?;
    Ok(Arc::new(LogControl { settings, updating: Mutex::new(()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> LogControl {
        let settings = LogSettings {
            file: String::new(),
            info: true,
            warning: true,
            error: true,
            verbose_level: 0,
            format: LogFormat::Default,
        };
        LogControl { settings: Arc::new(RwLock::new(settings)), updating: Mutex::new(()) }
    }

    fn changes(entries: &[(&str, ParameterValue)]) -> Parameters {
        entries.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
    }

    #[test]
    fn settings_change_and_report_themselves() {
        let control = control();
        let updated = control
            .update(&changes(&[
                ("log_info", ParameterValue::Bool(false)),
                ("log_verbose_level", ParameterValue::Uint64(2)),
                ("log_format", ParameterValue::String("ISO8601".into())),
            ]))
            .unwrap();
        assert_eq!(updated.format, LogFormat::Iso8601);
        assert_eq!((updated.info, updated.warning, updated.verbose_level), (false, true, 2));
        assert_eq!(control.settings(), updated);
        assert!(updated.allows(&Level::TRACE) && !updated.allows(&Level::INFO));
        assert_eq!(updated.most_verbose(), LevelFilter::TRACE);
    }

    #[test]
    fn bad_changes_say_why_and_change_nothing() {
        let control = control();
        let before = control.settings();
        let cases = [
            (changes(&[("log_file", ParameterValue::String("/tmp/x".into()))]), "can not be updated"),
            (changes(&[("log_info", ParameterValue::Int64(1))]), "'log_info' must be true or false, not 1"),
            (changes(&[("log_verbose_level", ParameterValue::Int64(-1))]), "must be a level from 0 up, not -1"),
            (changes(&[("log_format", ParameterValue::String("json".into()))]), "\"default\" or \"ISO8601\""),
            (changes(&[("log_colour", ParameterValue::Bool(true))]), "unknown log setting 'log_colour'"),
            (
                changes(&[
                    ("log_error", ParameterValue::Bool(false)),
                    ("log_info", ParameterValue::String("no".into())),
                ]),
                "'log_info' must be true or false",
            ),
        ];
        for (change, expected) in cases {
            let error = control.update(&change).unwrap_err();
            assert!(error.message().contains(expected), "expected '{expected}' in '{error}'");
            assert_eq!(control.settings(), before);
        }
    }

    #[test]
    fn chatty_libraries_keep_to_their_caps() {
        assert!(within_library_cap("tritonrs::scheduler", &Level::TRACE));
        assert!(!within_library_cap("h2::proto", &Level::DEBUG));
        assert!(within_library_cap("hyper", &Level::INFO));
        assert!(!within_library_cap("ort::session", &Level::INFO));
        // tower_http is not tower.
        assert!(within_library_cap("tower_http::compression", &Level::DEBUG));
    }

    #[test]
    fn everything_off_is_off() {
        let settings = LogSettings {
            file: String::new(),
            info: false,
            warning: false,
            error: false,
            verbose_level: 0,
            format: LogFormat::Default,
        };
        assert_eq!(settings.most_verbose(), LevelFilter::OFF);
    }
}
