//! The trace settings of Triton's command line: `--trace-config` and the
//! older `--trace-*` flags it replaced.

use super::settings::{OpenTelemetryConfig, TraceLevel, TraceMode, TraceSettings};

/// Triton's older trace flags, still accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OlderTraceFlags {
    /// `--trace-file`.
    pub file: Option<String>,
    /// `--trace-level`, as often as given.
    pub levels: Vec<String>,
    /// `--trace-rate`.
    pub rate: Option<u32>,
    /// `--trace-count`.
    pub count: Option<i32>,
    /// `--trace-log-frequency`.
    pub log_frequency: Option<u32>,
}

/// The settings that `--trace-config` values (`<setting>=<value>` for
/// `level`, `rate`, `count` and `mode`; `triton,<setting>=<value>` for
/// `file` and `log-frequency`) and the older flags give, with warnings for
/// what is ignored. As in Triton, `--trace-config` wins over an older flag,
/// levels add up, and a level of OFF anywhere turns tracing off. In mode
/// `opentelemetry` the `opentelemetry,<setting>=<value>` values (`url`,
/// `resource=<key>=<value>`, `bsp_max_queue_size`, `bsp_schedule_delay`,
/// `bsp_max_export_batch_size`) say where spans go, and the file settings
/// are ignored.
pub fn trace_settings(config: &[String], older: &OlderTraceFlags) -> Result<(TraceSettings, Vec<String>), String> {
    let mut settings = TraceSettings::default();
    let mut warnings = Vec::new();
    let mut disabled = false;
    let mut level_from_config = TraceLevel::OFF;
    let mut level_configured = false;
    let mut opentelemetry = false;
    let mut otel = OpenTelemetryConfig::default();
    let mut resource_given = false;
    for (given, flag, replacement) in [
        (older.file.is_some(), "--trace-file", "--trace-config triton,file=<path>"),
        (!older.levels.is_empty(), "--trace-level", "--trace-config level=<OFF|TIMESTAMPS|TENSORS>"),
        (older.rate.is_some(), "--trace-rate", "--trace-config rate=<rate>"),
        (older.count.is_some(), "--trace-count", "--trace-config count=<count>"),
        (older.log_frequency.is_some(), "--trace-log-frequency", "--trace-config triton,log-frequency=<frequency>"),
    ] {
        if given {
            warnings.push(format!("the {flag} flag is deprecated, as in Triton; use {replacement}"));
        }
    }
    settings.file = older.file.clone().unwrap_or_default();
    for level in &older.levels {
        let level = parse_level(level)?;
        disabled |= level.is_off();
        settings.level = settings.level.with(level);
    }
    settings.rate = older.rate.unwrap_or(settings.rate);
    settings.count = older.count.unwrap_or(settings.count);
    settings.log_frequency = older.log_frequency.unwrap_or(settings.log_frequency);

    for entry in config {
        let bad = |reason: String| format!("bad --trace-config {entry}: {reason}");
        let (mode, assignment) = match entry.split_once(',') {
            Some((mode, assignment)) if !mode.contains('=') => (Some(mode.to_ascii_lowercase()), assignment),
            _ => (None, entry.as_str()),
        };
        let Some((setting, value)) = assignment.split_once('=').filter(|(s, v)| !s.is_empty() && !v.is_empty()) else {
            return Err(bad("expected <setting>=<value> or <mode>,<setting>=<value>".to_string()));
        };
        match (mode.as_deref(), setting) {
            (None, "level") => {
                let level = parse_level(value).map_err(bad)?;
                disabled |= level.is_off();
                level_from_config = level_from_config.with(level);
                level_configured = true;
            }
            (None, "rate") => settings.rate = value.parse().map_err(|_| bad("the rate is a count from 0".into()))?,
            (None, "count") => {
                settings.count = value
                    .parse()
                    .ok()
                    .filter(|count| *count >= -1)
                    .ok_or_else(|| bad("the count is -1 (no limit) or a count from 0".into()))?;
            }
            (None, "mode") => match value.to_ascii_lowercase().as_str() {
                "triton" => opentelemetry = false,
                "opentelemetry" => opentelemetry = true,
                _ => return Err(bad("the modes are triton and opentelemetry".into())),
            },
            (Some("triton"), "file") => settings.file = value.to_string(),
            (Some("triton"), "log-frequency") => {
                settings.log_frequency =
                    value.parse().map_err(|_| bad("the log frequency is a count from 0".into()))?;
            }
            (Some("opentelemetry"), "url") => otel.url = value.to_string(),
            (Some("opentelemetry"), "resource") => {
                let (key, value) = value.split_once('=').ok_or_else(|| bad("a resource is <key>=<value>".into()))?;
                if !resource_given {
                    // Given ones replace the default service name.
                    otel.resource.clear();
                    resource_given = true;
                }
                otel.resource.push((key.to_string(), value.to_string()));
            }
            (Some("opentelemetry"), "bsp_max_queue_size") => {
                otel.max_queue_size = value.parse().map_err(|_| bad("the queue size is a count".into()))?;
            }
            (Some("opentelemetry"), "bsp_schedule_delay") => {
                otel.schedule_delay_ms = value.parse().map_err(|_| bad("the delay is in milliseconds".into()))?;
            }
            (Some("opentelemetry"), "bsp_max_export_batch_size") => {
                otel.max_export_batch_size = value.parse().map_err(|_| bad("the batch size is a count".into()))?;
            }
            (Some("opentelemetry"), _) => {
                return Err(bad(
                    "the opentelemetry mode's settings are url, resource, bsp_max_queue_size, bsp_schedule_delay \
                     and bsp_max_export_batch_size"
                        .into(),
                ));
            }
            (None, _) => return Err(bad("the settings without a mode are level, rate, count and mode".into())),
            (Some("triton"), _) => return Err(bad("the triton mode's settings are file and log-frequency".into())),
            (Some(other), _) => {
                return Err(bad(format!("unknown trace mode '{other}'; the modes are triton and opentelemetry")));
            }
        }
    }
    if level_configured {
        settings.level = level_from_config;
    }
    if disabled {
        settings.level = TraceLevel::OFF;
    }
    if opentelemetry {
        if otel.max_export_batch_size > otel.max_queue_size {
            return Err(format!(
                "bad --trace-config opentelemetry,bsp_max_export_batch_size={}: it must not exceed \
                 bsp_max_queue_size ({})",
                otel.max_export_batch_size, otel.max_queue_size
            ));
        }
        if settings.level.tensors {
            warnings.push("the TENSORS trace level is not traced in mode opentelemetry, as in Triton".to_string());
        }
        settings.mode = TraceMode::OpenTelemetry(otel);
    } else if !settings.level.is_off() && settings.file.is_empty() {
        warnings.push(
            "tracing is on but no trace file is given (--trace-config triton,file=<path>): nothing is traced until \
             one is"
                .to_string(),
        );
    }
    Ok((settings, warnings))
}

fn parse_level(value: &str) -> Result<TraceLevel, String> {
    TraceLevel::parse(value).ok_or_else(|| format!("'{value}' is not a trace level (OFF, TIMESTAMPS or TENSORS)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|entry| entry.to_string()).collect()
    }

    #[test]
    fn tritons_documented_example() {
        let (settings, warnings) = trace_settings(
            &config(&[
                "triton,file=/tmp/trace.json",
                "triton,log-frequency=50",
                "rate=100",
                "level=TIMESTAMPS",
                "count=100",
            ]),
            &OlderTraceFlags::default(),
        )
        .unwrap();
        assert_eq!(
            settings,
            TraceSettings {
                level: TraceLevel::TIMESTAMPS,
                rate: 100,
                count: 100,
                log_frequency: 50,
                file: "/tmp/trace.json".into(),
                mode: TraceMode::Triton,
            }
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn older_flags_work_with_a_warning_and_trace_config_wins() {
        let older = OlderTraceFlags {
            file: Some("/tmp/a.json".into()),
            levels: vec!["TIMESTAMPS".into(), "TENSORS".into()],
            rate: Some(5),
            ..Default::default()
        };
        let (settings, warnings) = trace_settings(&config(&["rate=7"]), &older).unwrap();
        assert_eq!(settings.level, TraceLevel { timestamps: true, tensors: true });
        assert_eq!((settings.rate, settings.file.as_str()), (7, "/tmp/a.json"));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("--trace-file flag is deprecated"), "{warnings:?}");
    }

    #[test]
    fn off_anywhere_turns_tracing_off() {
        let (settings, _) =
            trace_settings(&config(&["level=TIMESTAMPS", "level=OFF", "triton,file=/tmp/t"]), &Default::default())
                .unwrap();
        assert!(settings.level.is_off());
    }

    #[test]
    fn opentelemetry_settings_say_where_spans_go() {
        let (settings, warnings) = trace_settings(
            &config(&[
                "mode=opentelemetry",
                "opentelemetry,url=http://collector:4318/v1/traces",
                "opentelemetry,resource=service.name=edge",
                "opentelemetry,resource=deployment=blue",
                "opentelemetry,bsp_schedule_delay=100",
                "level=TIMESTAMPS",
                "rate=1",
            ]),
            &Default::default(),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(settings.level, TraceLevel::TIMESTAMPS);
        let TraceMode::OpenTelemetry(otel) = &settings.mode else { panic!("{:?}", settings.mode) };
        assert_eq!(otel.url, "http://collector:4318/v1/traces");
        assert_eq!(otel.resource, [("service.name".into(), "edge".into()), ("deployment".into(), "blue".into())]);
        assert_eq!((otel.schedule_delay_ms, otel.max_queue_size), (100, 2048));
        assert_eq!(settings.inactive_reason(), None, "no file is needed");
    }

    #[test]
    fn a_level_without_a_file_warns() {
        let (_, warnings) = trace_settings(&config(&["level=TIMESTAMPS"]), &Default::default()).unwrap();
        assert!(warnings[0].contains("no trace file is given"), "{warnings:?}");
    }

    #[test]
    fn malformed_settings_are_refused() {
        for (entry, expected) in [
            ("level", "expected <setting>=<value>"),
            ("level=LOUD", "'LOUD' is not a trace level"),
            ("rate=-1", "the rate is a count from 0"),
            ("count=-5", "the count is -1 (no limit)"),
            ("mode=jaeger", "the modes are triton and opentelemetry"),
            ("file=/tmp/x", "the settings without a mode are level, rate, count and mode"),
            ("triton,url=x", "the triton mode's settings are file and log-frequency"),
            ("zipkin,url=x", "unknown trace mode 'zipkin'"),
            ("opentelemetry,endpoint=x", "the opentelemetry mode's settings are url"),
            ("opentelemetry,resource=x", "a resource is <key>=<value>"),
        ] {
            let error = trace_settings(&config(&[entry]), &Default::default()).unwrap_err();
            assert!(error.starts_with(&format!("bad --trace-config {entry}: ")), "{error}");
            assert!(error.contains(expected), "{entry}: {error}");
        }
    }
}
