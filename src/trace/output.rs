//! Trace files: a JSON array of Triton's trace entries.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Mutex;

/// One trace file and the numbered files beside it. Scopes whose settings
/// name the same file share one of these, so that their traces interleave
/// rather than overwrite each other.
pub struct TraceOutput {
    path: PathBuf,
    state: Mutex<OutputState>,
}

#[derive(Default)]
struct OutputState {
    /// The file traces are appended to, once the first one came.
    appending: Option<File>,
    /// The number of the next numbered file.
    next_index: u64,
    /// Whether a failure to write was logged already (once is enough).
    failure_logged: bool,
}

impl TraceOutput {
    /// The output for `path`; nothing is created until a trace comes.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), state: Mutex::new(OutputState::default()) }
    }

    /// Adds traces (comma-separated JSON entries) to the file. The first
    /// write replaces what the file held; after every write the file is a
    /// complete JSON array, so it can be read while the server runs and
    /// survives a server that is killed.
    pub fn append(&self, entries: &str) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // One write each, so that a reader sees either the array before
        // or the array after.
        let written = match &mut state.appending {
            Some(file) => {
                // Over the closing bracket of the previous write.
                file.seek(SeekFrom::End(-1)).and_then(|_| file.write_all(format!(",{entries}]").as_bytes()))
            }
            None => File::create(&self.path).and_then(|mut file| {
                file.write_all(format!("[{entries}]").as_bytes())?;
                state.appending = Some(file);
                Ok(())
            }),
        };
        if let Err(error) = written {
            self.log_failure(&mut state, &self.path, error);
        }
    }

    /// Writes traces to the next numbered file, `<file>.0`, `<file>.1`, ...
    /// as one JSON array.
    pub fn write_numbered(&self, traces: &[String]) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = PathBuf::from(format!("{}.{}", self.path.display(), state.next_index));
        state.next_index += 1;
        let written =
            File::create(&path).and_then(|mut file| file.write_all(format!("[{}]", traces.join(",")).as_bytes()));
        if let Err(error) = written {
            self.log_failure(&mut state, &path, error);
        }
    }

    fn log_failure(&self, state: &mut OutputState, path: &std::path::Path, error: std::io::Error) {
        if !state.failure_logged {
            state.failure_logged = true;
            tracing::error!("cannot write traces to {}: {error}; traces are lost until it can", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace file path in a folder removed when the folder is dropped.
    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("trace.json");
        (folder, path)
    }

    #[test]
    fn the_file_is_a_json_array_after_every_trace() {
        let (_folder, path) = scratch();
        std::fs::write(&path, "left from an earlier run").unwrap();
        let output = TraceOutput::new(&path);
        output.append(r#"{"id":1}"#);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"[{"id":1}]"#);
        output.append(r#"{"id":2},{"id":2,"timestamps":[]}"#);
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.as_array().map(Vec::len), Some(3), "{text}");
    }

    #[test]
    fn numbered_files_count_up() {
        let (_folder, path) = scratch();
        let output = TraceOutput::new(&path);
        output.write_numbered(&[r#"{"id":1}"#.to_string(), r#"{"id":2}"#.to_string()]);
        output.write_numbered(&[r#"{"id":3}"#.to_string()]);
        let read = |index: u32| std::fs::read_to_string(format!("{}.{index}", path.display())).unwrap();
        assert_eq!(read(0), r#"[{"id":1},{"id":2}]"#);
        assert_eq!(read(1), r#"[{"id":3}]"#);
    }
}
