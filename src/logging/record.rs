//! The log record as Triton writes it, so that log pipelines and parsers
//! written for Triton's log read this server's too:
//!
//! ```text
//! I1123 20:05:41.824479 4242 server.rs:97] "Started HTTPService at 0.0.0.0:8000"
//! 2026-11-23T20:05:41Z I 4242 server.rs:97] "Started HTTPService at 0.0.0.0:8000"
//! ```
//!
//! The first is Triton's `default` format, the second its `ISO8601`: a
//! level letter (E, W, I; verbose messages are I, as in Triton), the UTC
//! time, the process id, the source file and line, then the message as a
//! JSON string, so that no message can forge a record of its own. As in
//! Triton, `TRITON_SERVER_ESCAPE_LOG_MESSAGES=0` writes messages as they
//! are, and a table (the server's own output, never a client's) follows
//! its record's first line unescaped.

use std::fmt::{self, Write as _};
use std::sync::{Arc, RwLock};

use crate::utc_time::UtcTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::LogSettings;

/// The environment variable with which Triton's escaping of log messages
/// is turned off (`0`).
pub const ESCAPE_VARIABLE: &str = "TRITON_SERVER_ESCAPE_LOG_MESSAGES";

/// The field whose value a record writes as a table after its first line.
pub const TABLE_FIELD: &str = "table";

/// Triton's log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `I1123 20:05:41.824479 ...`: month, day and microseconds.
    #[default]
    Default,
    /// `2026-11-23T20:05:41Z I ...`: the date in full, whole seconds.
    Iso8601,
}

impl LogFormat {
    /// Triton's name for the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Iso8601 => "ISO8601",
        }
    }

    /// The format of Triton's name, spelled exactly as Triton spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Default, Self::Iso8601].into_iter().find(|format| format.name() == name)
    }
}

/// Triton's level letter: verbose messages are information to it.
fn level_letter(level: &Level) -> char {
    match *level {
        Level::ERROR => 'E',
        Level::WARN => 'W',
        _ => 'I',
    }
}

/// Writes the part of a record before its message.
fn write_preamble(
    out: &mut impl fmt::Write,
    format: LogFormat,
    level: char,
    time: UtcTime,
    pid: u32,
    file: &str,
    line: u32,
) -> fmt::Result {
    let UtcTime { year, month, day, hour, minute, second, microsecond } = time;
    match format {
        LogFormat::Default => {
            write!(out, "{level}{month:02}{day:02} {hour:02}:{minute:02}:{second:02}.{microsecond:06}")?
        }
        LogFormat::Iso8601 => write!(out, "{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z {level}")?,
    }
    write!(out, " {pid} {file}:{line}] ")
}

/// The message of an event, its other fields after it as `name=value`,
/// and its table, if it has one.
#[derive(Default)]
struct Message {
    text: String,
    fields: String,
    table: Option<String>,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.text.push_str(value),
            TABLE_FIELD => self.table = Some(value.to_string()),
            name => {
                let _ = write!(self.fields, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.text, "{value:?}");
            }
            TABLE_FIELD => self.table = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }
}

/// Formats every event as a Triton log record, in the format the current
/// settings name.
pub struct TritonRecords {
    settings: Arc<RwLock<LogSettings>>,
    escape: bool,
    pid: u32,
}

impl TritonRecords {
    /// Records in the format of `settings`, escaped unless `escape` is
    /// false.
    pub fn new(settings: Arc<RwLock<LogSettings>>, escape: bool) -> Self {
        Self { settings, escape, pid: std::process::id() }
    }

    fn write_record(&self, out: &mut impl fmt::Write, event: &Event<'_>, time: UtcTime) -> fmt::Result {
        let format = self.settings.read().unwrap_or_else(|poisoned| poisoned.into_inner()).format;
        let metadata = event.metadata();
        // Triton names the source file without its directory.
        let file = metadata.file().map_or(metadata.target(), |path| path.rsplit('/').next().unwrap_or(path));
        write_preamble(
            out,
            format,
            level_letter(metadata.level()),
            time,
            self.pid,
            file,
            metadata.line().unwrap_or(0),
        )?;
        let mut message = Message::default();
        event.record(&mut message);
        let text = message.text + &message.fields;
        if self.escape && !(text.is_empty() && message.table.is_some()) {
            // Serialising a string to JSON cannot fail.
            out.write_str(&serde_json::to_string(&text).unwrap_or_default())?;
        } else {
            out.write_str(&text)?;
        }
        if let Some(table) = message.table {
            write!(out, "\n{table}")?;
        }
        writeln!(out)
    }
}

impl<S, N> FormatEvent<S, N> for TritonRecords
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        self.write_record(&mut writer, event, UtcTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preambles_in_both_formats() {
        // 2026-11-23T20:05:41.000042Z
        let time = UtcTime::from_unix(1_795_464_341, 42);
        let preamble = |format, level| {
            let mut out = String::new();
            write_preamble(&mut out, format, level, time, 4242, "server.rs", 97).unwrap();
            out
        };
        assert_eq!(preamble(LogFormat::Default, 'I'), "I1123 20:05:41.000042 4242 server.rs:97] ");
        assert_eq!(preamble(LogFormat::Iso8601, 'W'), "2026-11-23T20:05:41Z W 4242 server.rs:97] ");
    }

    #[test]
    fn formats_by_triton_names_only() {
        assert_eq!(LogFormat::from_name("ISO8601"), Some(LogFormat::Iso8601));
        assert_eq!(LogFormat::from_name("default"), Some(LogFormat::Default));
        assert_eq!(LogFormat::from_name("iso8601"), None);
        assert_eq!(LogFormat::from_name("json"), None);
    }

    #[test]
    fn levels_are_tritons_letters() {
        let letters: String =
            [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE].iter().map(level_letter).collect();
        assert_eq!(letters, "EWIII");
    }
}
