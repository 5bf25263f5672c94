//! The settings in force for one scope (the whole server or one model):
//! which requests they sample, and where the traces they sampled go.

use std::sync::{Arc, Mutex, MutexGuard};

use super::otlp_export::OtlpExport;
use super::output::TraceOutput;
use super::request_trace::RequestTrace;
use super::settings::TraceSettings;

/// Where the traces of a scope go.
#[derive(Clone)]
pub enum TraceSink {
    /// A trace file (mode `triton`).
    File(Arc<TraceOutput>),
    /// An OpenTelemetry collector (mode `opentelemetry`).
    Collector(Arc<OtlpExport>),
}

/// Settings in force, with their sampling progress. A change of settings
/// replaces the whole scope, so traces in flight finish under the settings
/// that sampled them, as in Triton.
pub struct ActiveScope {
    settings: TraceSettings,
    sink: TraceSink,
    progress: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    /// Requests this scope has seen.
    seen: u64,
    /// Traces still to take; negative for no limit.
    remaining: i32,
    /// Traces taken, and traces written or waiting to be.
    sampled: u64,
    collected: u64,
    /// Traces waiting for a numbered file (with a log frequency).
    waiting: Vec<String>,
}

impl ActiveScope {
    /// Puts `settings` in force, sending traces to `sink`.
    pub fn new(settings: TraceSettings, sink: TraceSink) -> Self {
        let progress = Progress { remaining: settings.count, ..Progress::default() };
        Self { settings, sink, progress: Mutex::new(progress) }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The settings, as configured.
    pub fn settings(&self) -> &TraceSettings {
        &self.settings
    }

    /// The settings as the trace extension reports them: the count is what
    /// is left of it.
    pub fn current(&self) -> TraceSettings {
        TraceSettings { count: self.progress().remaining, ..self.settings.clone() }
    }

    /// Whether these settings can sample at all.
    pub fn can_sample(&self) -> bool {
        self.settings.inactive_reason().is_none() && self.progress().remaining != 0
    }

    /// Takes a trace the server is done with: written to the file, or sent
    /// to the collector as spans.
    pub fn finish(&self, trace: &RequestTrace) {
        match &self.sink {
            TraceSink::File(_) => self.collect(trace.entries()),
            TraceSink::Collector(export) => export.export(trace),
        }
    }

    /// Counts a request and says whether to trace it: every `rate`-th
    /// request while the count lasts.
    pub fn sample(&self) -> bool {
        if self.settings.inactive_reason().is_some() {
            return false;
        }
        let mut progress = self.progress();
        if progress.remaining == 0 {
            return false;
        }
        progress.seen += 1;
        if !progress.seen.is_multiple_of(u64::from(self.settings.rate)) {
            return false;
        }
        if progress.remaining > 0 {
            progress.remaining -= 1;
        }
        progress.sampled += 1;
        true
    }

    /// Takes a finished trace's entries: appended to the file at once, or,
    /// with a log frequency, gathered until that many make a numbered file
    /// (or until the count is used up and every sampled trace is in).
    fn collect(&self, entries: String) {
        let TraceSink::File(output) = &self.sink else { return };
        if self.settings.log_frequency == 0 {
            output.append(&entries);
            return;
        }
        let mut progress = self.progress();
        progress.collected += 1;
        progress.waiting.push(entries);
        let full = progress.waiting.len() as u64 >= u64::from(self.settings.log_frequency);
        let last = progress.remaining == 0 && progress.collected == progress.sampled;
        if full || last {
            let traces = std::mem::take(&mut progress.waiting);
            drop(progress);
            output.write_numbered(&traces);
        }
    }

    /// Writes the traces still waiting for a numbered file.
    pub fn flush(&self) {
        let traces = std::mem::take(&mut self.progress().waiting);
        if let TraceSink::File(output) = &self.sink
            && !traces.is_empty()
        {
            output.write_numbered(&traces);
        }
    }
}

impl Drop for ActiveScope {
    /// Settings replaced, or the server stopping: what waits is written.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::settings::TraceLevel;

    fn scope(rate: u32, count: i32) -> ActiveScope {
        let settings = TraceSettings {
            level: TraceLevel::TIMESTAMPS,
            rate,
            count,
            file: "/unused".into(),
            ..TraceSettings::default()
        };
        ActiveScope::new(settings, TraceSink::File(Arc::new(TraceOutput::new("/unused"))))
    }

    #[test]
    fn every_rate_th_request_is_sampled_while_the_count_lasts() {
        let scope = scope(3, 2);
        let sampled: Vec<bool> = (0..9).map(|_| scope.sample()).collect();
        assert_eq!(sampled, [false, false, true, false, false, true, false, false, false]);
        assert_eq!(scope.current().count, 0);
        assert!(!scope.can_sample());
    }

    #[test]
    fn without_a_count_sampling_goes_on() {
        let scope = scope(1, -1);
        assert!((0..100).all(|_| scope.sample()));
        assert_eq!(scope.current().count, -1);
    }

    #[test]
    fn disabled_settings_sample_nothing() {
        let off = ActiveScope::new(TraceSettings::default(), TraceSink::File(Arc::new(TraceOutput::new("/unused"))));
        assert!(!off.sample());
        assert!(!off.can_sample());
    }
}
