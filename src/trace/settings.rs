//! Trace settings as Triton's trace extension names them: what the
//! command line sets at start, what a client reads and changes, globally or
//! for one model.

use crate::error::{Error, ErrorKind, Result};

/// Where traces go: Triton's trace modes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TraceMode {
    /// Triton's JSON trace files.
    #[default]
    Triton,
    /// Spans sent to an OpenTelemetry collector over OTLP/HTTP.
    OpenTelemetry(OpenTelemetryConfig),
}

impl TraceMode {
    /// The mode's name, as `--trace-config mode=` and the trace extension
    /// spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Triton => "triton",
            Self::OpenTelemetry(_) => "opentelemetry",
        }
    }
}

/// Where and how spans are sent in mode `opentelemetry`
/// (`--trace-config opentelemetry,<setting>=<value>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTelemetryConfig {
    /// The collector's OTLP/HTTP traces endpoint (`url`).
    pub url: String,
    /// Resource attributes (`resource=<key>=<value>`, repeatable).
    pub resource: Vec<(String, String)>,
    /// The batch span processor's queue (`bsp_max_queue_size`).
    pub max_queue_size: usize,
    /// Milliseconds between two exports (`bsp_schedule_delay`).
    pub schedule_delay_ms: u64,
    /// Spans per export at most (`bsp_max_export_batch_size`).
    pub max_export_batch_size: usize,
}

impl Default for OpenTelemetryConfig {
    /// Triton's defaults.
    fn default() -> Self {
        Self {
            url: "http://localhost:4318/v1/traces".to_string(),
            resource: vec![("service.name".to_string(), "triton-inference-server".to_string())],
            max_queue_size: 2048,
            schedule_delay_ms: 5000,
            max_export_batch_size: 512,
        }
    }
}

/// Which details the trace of a sampled request records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceLevel {
    /// The moments a request passes through the server (`TIMESTAMPS`).
    pub timestamps: bool,
    /// The input tensors as queued and the outputs as the model produced
    /// them (`TENSORS`).
    pub tensors: bool,
}

impl TraceLevel {
    /// Nothing is traced.
    pub const OFF: Self = Self { timestamps: false, tensors: false };
    /// Timestamps only.
    pub const TIMESTAMPS: Self = Self { timestamps: true, tensors: false };
    /// Tensors only.
    pub const TENSORS: Self = Self { timestamps: false, tensors: true };

    /// Whether nothing is traced.
    pub fn is_off(self) -> bool {
        !self.timestamps && !self.tensors
    }

    /// Both levels' details.
    pub fn with(self, other: Self) -> Self {
        Self { timestamps: self.timestamps || other.timestamps, tensors: self.tensors || other.tensors }
    }

    /// Parses one level as the trace extension spells it (any case); the
    /// command line's synonyms for Triton's old flag values are accepted
    /// too.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "off" | "false" => Some(Self::OFF),
            "timestamps" | "true" | "on" | "min" | "max" => Some(Self::TIMESTAMPS),
            "tensors" => Some(Self::TENSORS),
            _ => None,
        }
    }

    /// The level as the trace extension reports it: `["OFF"]`, or the
    /// levels that are on.
    pub fn names(self) -> Vec<String> {
        if self.is_off() {
            return vec!["OFF".to_string()];
        }
        let mut names = Vec::new();
        if self.timestamps {
            names.push("TIMESTAMPS".to_string());
        }
        if self.tensors {
            names.push("TENSORS".to_string());
        }
        names
    }
}

/// The trace settings of the whole server or of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// What a trace records.
    pub level: TraceLevel,
    /// One request in `rate` is traced; 0 traces none.
    pub rate: u32,
    /// How many more requests to trace; -1 for no limit.
    pub count: i32,
    /// 0 appends each trace to `file`; N writes every N traces to a file
    /// of their own, `file.0`, `file.1`, ...
    pub log_frequency: u32,
    /// Where traces are written in mode `triton`; empty when none is set.
    pub file: String,
    /// Where traces go.
    pub mode: TraceMode,
}

impl Default for TraceSettings {
    /// Triton's defaults: off, one request in 1000, no limit, no file.
    fn default() -> Self {
        Self {
            level: TraceLevel::OFF,
            rate: 1000,
            count: -1,
            log_frequency: 0,
            file: String::new(),
            mode: TraceMode::Triton,
        }
    }
}

impl TraceSettings {
    /// Why no request would be traced under these settings, if none would
    /// be (Triton's reasons).
    pub fn inactive_reason(&self) -> Option<&'static str> {
        if self.level.is_off() {
            Some("tracing is disabled")
        } else if self.rate == 0 {
            Some("sample rate must be non-zero")
        } else if self.mode == TraceMode::Triton && self.file.is_empty() {
            Some("trace file name is not given")
        } else {
            None
        }
    }

    /// The settings as the trace extension reports them, by name, each
    /// with its values: the file settings in mode `triton`, the collector's
    /// address in mode `opentelemetry`, as Triton reports them.
    pub fn to_protocol(&self) -> Vec<(String, Vec<String>)> {
        let mut settings = vec![
            ("trace_level".to_string(), self.level.names()),
            ("trace_rate".to_string(), vec![self.rate.to_string()]),
            ("trace_count".to_string(), vec![self.count.to_string()]),
        ];
        match &self.mode {
            TraceMode::Triton => {
                settings.push(("log_frequency".to_string(), vec![self.log_frequency.to_string()]));
                settings.push(("trace_file".to_string(), vec![self.file.clone()]));
            }
            TraceMode::OpenTelemetry(config) => settings.push(("url".to_string(), vec![config.url.clone()])),
        }
        settings.push(("trace_mode".to_string(), vec![self.mode.name().to_string()]));
        settings
    }
}

/// What a trace-setting request does to one setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Change<T> {
    /// Not named: stays as it is.
    #[default]
    Keep,
    /// Named with no value: follows the scope above again (a model's
    /// setting the global one, the global one the command line's).
    Clear,
    /// Named with a value.
    Set(T),
}

/// The changes of one trace-setting request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsUpdate {
    /// `trace_level`.
    pub level: Change<TraceLevel>,
    /// `trace_rate`.
    pub rate: Change<u32>,
    /// `trace_count`.
    pub count: Change<i32>,
    /// `log_frequency`.
    pub log_frequency: Change<u32>,
}

impl SettingsUpdate {
    /// Reads the settings of a trace-setting request, each name with its
    /// values (none clears it). The trace file cannot be changed over the
    /// network, as in Triton; an unknown name or a malformed value changes
    /// nothing and says why.
    pub fn parse(settings: &[(String, Vec<String>)]) -> Result<Self> {
        let mut update = Self::default();
        for (name, values) in settings {
            match name.as_str() {
                "trace_file" => {
                    return Err(Error::new(
                        ErrorKind::Unimplemented,
                        "trace file location can not be updated through network protocol; start the server with \
                         --trace-config triton,file=<path>",
                    ));
                }
                "trace_level" => update.level = parse_level(values)?,
                "trace_rate" => update.rate = parse_number(name, values, "a number from 0 to 4294967295")?,
                "trace_count" => {
                    update.count = parse_number(name, values, "-1 (no limit) or a count from 0")?;
                    if let Change::Set(count) = update.count
                        && count < -1
                    {
                        return Err(Error::invalid_argument(format!(
                            "trace setting 'trace_count' must be -1 (no limit) or a count from 0, not {count}"
                        )));
                    }
                }
                "log_frequency" => update.log_frequency = parse_number(name, values, "a number from 0")?,
                other => {
                    return Err(Error::invalid_argument(format!(
                        "unknown trace setting '{other}'; the settings are trace_level, trace_rate, trace_count, \
                         log_frequency and trace_file"
                    )));
                }
            }
        }
        Ok(update)
    }
}

fn parse_level(values: &[String]) -> Result<Change<TraceLevel>> {
    if values.is_empty() {
        return Ok(Change::Clear);
    }
    let mut level = TraceLevel::OFF;
    for value in values {
        match value.to_ascii_uppercase().as_str() {
            "OFF" if values.len() == 1 => {}
            "OFF" => {
                return Err(Error::invalid_argument(
                    "trace setting 'trace_level': OFF cannot be combined with other levels",
                ));
            }
            "TIMESTAMPS" => level = level.with(TraceLevel::TIMESTAMPS),
            "TENSORS" => level = level.with(TraceLevel::TENSORS),
            _ => {
                return Err(Error::invalid_argument(format!(
                    "trace setting 'trace_level' must be OFF, TIMESTAMPS or TENSORS, not '{value}'"
                )));
            }
        }
    }
    Ok(Change::Set(level))
}

fn parse_number<T: std::str::FromStr>(name: &str, values: &[String], expected: &str) -> Result<Change<T>> {
    match values {
        [] => Ok(Change::Clear),
        [value] => {
            value.trim().parse().map(Change::Set).map_err(|_| {
                Error::invalid_argument(format!("trace setting '{name}' must be {expected}, not '{value}'"))
            })
        }
        _ => Err(Error::invalid_argument(format!("trace setting '{name}' takes one value, not {}", values.len()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(name, values)| (name.to_string(), values.iter().map(|value| value.to_string()).collect()))
            .collect()
    }

    #[test]
    fn requests_set_clear_or_keep_each_setting() {
        let update = SettingsUpdate::parse(&settings(&[
            ("trace_level", &["TIMESTAMPS", "TENSORS"]),
            ("trace_rate", &["5"]),
            ("trace_count", &[]),
        ]))
        .unwrap();
        assert_eq!(update.level, Change::Set(TraceLevel { timestamps: true, tensors: true }));
        assert_eq!(update.rate, Change::Set(5));
        assert_eq!(update.count, Change::Clear);
        assert_eq!(update.log_frequency, Change::Keep);
        let off = SettingsUpdate::parse(&settings(&[("trace_level", &["OFF"])])).unwrap();
        assert_eq!(off.level, Change::Set(TraceLevel::OFF));
    }

    /// A request's settings, the kind of error and a part of its message.
    type BadCase<'a> = (&'a [(&'a str, &'a [&'a str])], ErrorKind, &'a str);

    #[test]
    fn bad_requests_say_what_was_expected() {
        let cases: [BadCase; 7] = [
            (&[("trace_file", &["/tmp/x"])], ErrorKind::Unimplemented, "trace file location can not be updated"),
            (&[("trace_level", &["OFF", "TIMESTAMPS"])], ErrorKind::InvalidArgument, "OFF cannot be combined"),
            (
                &[("trace_level", &["LOUD"])],
                ErrorKind::InvalidArgument,
                "must be OFF, TIMESTAMPS or TENSORS, not 'LOUD'",
            ),
            (&[("trace_rate", &["-1"])], ErrorKind::InvalidArgument, "'trace_rate' must be a number from 0"),
            (&[("trace_rate", &["1", "2"])], ErrorKind::InvalidArgument, "'trace_rate' takes one value, not 2"),
            (&[("trace_count", &["-2"])], ErrorKind::InvalidArgument, "-1 (no limit) or a count from 0, not -2"),
            (&[("trace_mode", &["triton"])], ErrorKind::InvalidArgument, "unknown trace setting 'trace_mode'"),
        ];
        for (request, kind, expected) in cases {
            let error = SettingsUpdate::parse(&settings(request)).unwrap_err();
            assert_eq!(error.kind(), kind, "{request:?}");
            assert!(error.message().contains(expected), "{request:?}: {}", error.message());
        }
    }

    #[test]
    fn settings_are_reported_by_tritons_names() {
        let reported = TraceSettings { file: "/tmp/t.json".into(), ..TraceSettings::default() }.to_protocol();
        let value = |name: &str| reported.iter().find(|(key, _)| key == name).map(|(_, values)| values.clone());
        assert_eq!(value("trace_level"), Some(vec!["OFF".to_string()]));
        assert_eq!(value("trace_rate"), Some(vec!["1000".to_string()]));
        assert_eq!(value("trace_count"), Some(vec!["-1".to_string()]));
        assert_eq!(value("log_frequency"), Some(vec!["0".to_string()]));
        assert_eq!(value("trace_file"), Some(vec!["/tmp/t.json".to_string()]));
        assert_eq!(value("trace_mode"), Some(vec!["triton".to_string()]));
    }

    #[test]
    fn settings_that_cannot_trace_say_why() {
        let on = TraceSettings { level: TraceLevel::TIMESTAMPS, file: "/tmp/t".into(), ..TraceSettings::default() };
        assert_eq!(on.inactive_reason(), None);
        assert_eq!(TraceSettings { rate: 0, ..on.clone() }.inactive_reason(), Some("sample rate must be non-zero"));
        assert_eq!(TraceSettings { file: String::new(), ..on }.inactive_reason(), Some("trace file name is not given"));
    }
}
