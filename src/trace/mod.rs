//! Triton's request tracing, in its `triton` mode: one request in `rate`
//! is traced, and its trace (timestamps, and tensors at the `TENSORS`
//! level) is written to a JSON trace file that Triton's tools read. The
//! settings are global, optionally overridden per model, and can be read
//! and changed while the server runs (the trace extension).
//!
//! The frontends sample a request once they know its model, stamp their own
//! moments on its [`RequestTrace`] and hand it to the core, which stamps the
//! rest. While nothing can be traced, sampling costs one atomic load.

mod clock;
mod command_line;
mod otlp_export;
mod output;
mod request_trace;
mod scope;
mod settings;
mod traced_body;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

pub use command_line::{OlderTraceFlags, trace_settings};
pub use request_trace::{Activity, RequestTrace, TensorActivity};
pub use settings::{Change, OpenTelemetryConfig, SettingsUpdate, TraceLevel, TraceMode, TraceSettings};
pub use traced_body::TracedBody;

use self::clock::MonotonicClock;
use self::otlp_export::{OtlpExport, parse_traceparent};
use self::output::TraceOutput;
use self::scope::{ActiveScope, TraceSink};
use crate::error::{Error, Result};

/// Which settings a scope sets itself; the rest follow the scope above.
#[derive(Debug, Clone, Copy, Default)]
struct Overrides {
    level: Option<TraceLevel>,
    rate: Option<u32>,
    count: Option<i32>,
    log_frequency: Option<u32>,
}

impl Overrides {
    fn apply(&mut self, update: &SettingsUpdate) {
        fn change<T: Copy>(setting: &mut Option<T>, change: Change<T>) {
            match change {
                Change::Keep => {}
                Change::Clear => *setting = None,
                Change::Set(value) => *setting = Some(value),
            }
        }
        change(&mut self.level, update.level);
        change(&mut self.rate, update.rate);
        change(&mut self.count, update.count);
        change(&mut self.log_frequency, update.log_frequency);
    }

    fn over(&self, base: &TraceSettings) -> TraceSettings {
        TraceSettings {
            level: self.level.unwrap_or(base.level),
            rate: self.rate.unwrap_or(base.rate),
            count: self.count.unwrap_or(base.count),
            log_frequency: self.log_frequency.unwrap_or(base.log_frequency),
            file: base.file.clone(),
            mode: base.mode.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.level.is_none() && self.rate.is_none() && self.count.is_none() && self.log_frequency.is_none()
    }
}

/// One scope's own settings and the settings in force for it.
struct Scope {
    overrides: Overrides,
    active: Arc<ActiveScope>,
}

struct Scopes {
    /// The command line's settings, which the global ones fall back to.
    startup: TraceSettings,
    global: Scope,
    models: HashMap<String, Scope>,
    /// The outputs in use, by file, so that scopes writing to one file
    /// share it.
    outputs: HashMap<String, Weak<TraceOutput>>,
    /// The collector's exporter, in mode `opentelemetry`.
    collector: Option<Arc<OtlpExport>>,
}

impl Scopes {
    fn activate(&mut self, settings: TraceSettings) -> Arc<ActiveScope> {
        let sink = sink_for(self.collector.as_ref(), &mut self.outputs, &settings.file);
        Arc::new(ActiveScope::new(settings, sink))
    }

    fn any_can_sample(&self) -> bool {
        self.global.active.can_sample() || self.models.values().any(|scope| scope.active.can_sample())
    }
}

/// Where traces of settings naming `file` go: the collector in mode
/// `opentelemetry`, else the file, shared with the other scopes writing to
/// it (`outputs` holds the files in use).
fn sink_for(
    collector: Option<&Arc<OtlpExport>>,
    outputs: &mut HashMap<String, Weak<TraceOutput>>,
    file: &str,
) -> TraceSink {
    if let Some(collector) = collector {
        return TraceSink::Collector(Arc::clone(collector));
    }
    if let Some(output) = outputs.get(file).and_then(Weak::upgrade) {
        return TraceSink::File(output);
    }
    let output = Arc::new(TraceOutput::new(file));
    outputs.retain(|_, output| output.strong_count() > 0);
    outputs.insert(file.to_string(), Arc::downgrade(&output));
    TraceSink::File(output)
}

/// The header (gRPC metadata key) in which a request names its caller's
/// span, W3C trace context's.
pub const TRACEPARENT: &str = "traceparent";

/// The server's tracing: settings per scope, sampling, and trace ids.
pub struct Tracer {
    /// Whether any scope can sample; while none can, requests are not
    /// looked at further.
    sampling: AtomicBool,
    /// Mode `opentelemetry`, where a request naming its caller's span is
    /// traced whatever the rate.
    opentelemetry: bool,
    scopes: Mutex<Scopes>,
    next_id: Arc<AtomicU64>,
    clock: MonotonicClock,
}

impl Tracer {
    /// Tracing with the command line's settings in force globally; in mode
    /// `opentelemetry`, with the collector's exporter started.
    pub fn new(startup: TraceSettings) -> std::result::Result<Self, String> {
        let collector = match &startup.mode {
            TraceMode::OpenTelemetry(config) => Some(Arc::new(OtlpExport::start(config)?)),
            TraceMode::Triton => None,
        };
        let mut outputs = HashMap::new();
        let sink = sink_for(collector.as_ref(), &mut outputs, &startup.file);
        let global =
            Scope { overrides: Overrides::default(), active: Arc::new(ActiveScope::new(startup.clone(), sink)) };
        let opentelemetry = collector.is_some();
        let scopes = Scopes { startup, outputs, collector, global, models: HashMap::new() };
        let sampling = AtomicBool::new(scopes.any_can_sample());
        Ok(Self {
            sampling,
            opentelemetry,
            scopes: Mutex::new(scopes),
            next_id: Arc::new(AtomicU64::new(1)),
            clock: MonotonicClock::new(),
        })
    }

    fn scopes(&self) -> MutexGuard<'_, Scopes> {
        // Changed only by short sections that cannot panic half-way.
        self.scopes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether some request may be traced now: frontends note the moments
    /// before a request's model is known only then.
    pub fn may_sample(&self) -> bool {
        self.sampling.load(Ordering::Relaxed)
    }

    /// Whether a request's W3C `traceparent` matters (mode
    /// `opentelemetry`): frontends look for the header only then, since
    /// the lookup costs every request.
    pub fn follows_callers(&self) -> bool {
        self.opentelemetry
    }

    /// Counts a request for `model` and returns its trace if it is to be
    /// traced. In mode `opentelemetry` a request that names its caller's
    /// span (a W3C `traceparent`) is always traced, as a child of it, as in
    /// Triton.
    pub fn sample(&self, model: &str, traceparent: Option<&str>) -> Option<Arc<RequestTrace>> {
        let traceparent = traceparent.filter(|_| self.opentelemetry);
        if !self.may_sample() && traceparent.is_none() {
            return None;
        }
        let scope = {
            let scopes = self.scopes();
            Arc::clone(&scopes.models.get(model).unwrap_or(&scopes.global).active)
        };
        let parent = traceparent.and_then(parse_traceparent);
        let forced = parent.is_some() && !scope.settings().level.is_off();
        if !scope.sample() && !forced {
            return None;
        }
        Some(Arc::new(RequestTrace::new(Arc::clone(&self.next_id), self.clock, scope, parent)))
    }

    /// The settings in force for `model`, or the global ones; the count is
    /// what is left of it.
    pub fn settings(&self, model: Option<&str>) -> TraceSettings {
        let scopes = self.scopes();
        let scope = model.and_then(|model| scopes.models.get(model)).unwrap_or(&scopes.global);
        scope.active.current()
    }

    /// Applies a client's changes to the global settings (`model` `None`)
    /// or to one model's, and returns the settings now in force there. A
    /// model's settings start as copies of the global ones; those it does
    /// not set follow later global changes, and once it sets none, it
    /// follows the global settings entirely. Settings that enable tracing
    /// but cannot trace are refused with Triton's reason.
    pub fn update(&self, model: Option<&str>, update: SettingsUpdate) -> Result<TraceSettings> {
        let mut scopes = self.scopes();
        let (mut overrides, base) = match model {
            None => (scopes.global.overrides, scopes.startup.clone()),
            Some(model) => (
                scopes.models.get(model).map(|scope| scope.overrides).unwrap_or_default(),
                scopes.global.active.settings().clone(),
            ),
        };
        overrides.apply(&update);
        let settings = overrides.over(&base);
        if let Some(reason) = settings.inactive_reason()
            && !settings.level.is_off()
        {
            return Err(Error::invalid_argument(format!("Attempting to set invalid trace setting: {reason}")));
        }
        match model {
            None => {
                let active = scopes.activate(settings);
                scopes.global = Scope { overrides, active };
                // The models' own settings stay; the rest follow.
                let global = scopes.global.active.settings().clone();
                let models: Vec<(String, Overrides)> =
                    scopes.models.iter().map(|(name, scope)| (name.clone(), scope.overrides)).collect();
                for (name, overrides) in models {
                    let active = scopes.activate(overrides.over(&global));
                    scopes.models.insert(name, Scope { overrides, active });
                }
            }
            Some(model) if overrides.is_empty() => {
                scopes.models.remove(model);
            }
            Some(model) => {
                let active = scopes.activate(settings);
                scopes.models.insert(model.to_string(), Scope { overrides, active });
            }
        }
        self.sampling.store(scopes.any_can_sample(), Ordering::Relaxed);
        let scope = model.and_then(|model| scopes.models.get(model)).unwrap_or(&scopes.global);
        Ok(scope.active.current())
    }

    /// Writes the traces still waiting for a numbered file, or sends the
    /// spans still queued for the collector; the server calls it as it
    /// stops.
    pub fn flush(&self) {
        let scopes = self.scopes();
        scopes.global.active.flush();
        for scope in scopes.models.values() {
            scope.active.flush();
        }
        if let Some(collector) = &scopes.collector {
            collector.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracing_to(file: &str) -> Tracer {
        Tracer::new(TraceSettings { level: TraceLevel::TIMESTAMPS, rate: 1, file: file.into(), ..Default::default() })
            .unwrap()
    }

    fn set_rate(rate: u32) -> SettingsUpdate {
        SettingsUpdate { rate: Change::Set(rate), ..Default::default() }
    }

    #[test]
    fn nothing_is_sampled_while_tracing_is_off() {
        let tracer = Tracer::new(TraceSettings::default()).unwrap();
        assert!(tracer.sample("m", None).is_none());
        assert!(!tracer.sampling.load(Ordering::Relaxed));
    }

    #[test]
    fn model_settings_override_the_global_ones_and_follow_the_rest() {
        let tracer = tracing_to("/unused/trace.json");
        let model = tracer.update(Some("m"), set_rate(7)).unwrap();
        assert_eq!((model.rate, model.level), (7, TraceLevel::TIMESTAMPS));
        // A global change reaches what the model does not set itself.
        let update =
            SettingsUpdate { level: Change::Set(TraceLevel::TENSORS), rate: Change::Set(3), ..Default::default() };
        tracer.update(None, update).unwrap();
        let model = tracer.settings(Some("m"));
        assert_eq!((model.rate, model.level), (7, TraceLevel::TENSORS));
        assert_eq!(tracer.settings(Some("other")).rate, 3);
        // Cleared, the model follows the global settings again.
        tracer.update(Some("m"), SettingsUpdate { rate: Change::Clear, ..Default::default() }).unwrap();
        assert_eq!(tracer.settings(Some("m")).rate, 3);
        // Cleared globally, the command line's value returns.
        tracer.update(None, SettingsUpdate { rate: Change::Clear, ..Default::default() }).unwrap();
        assert_eq!(tracer.settings(None).rate, 1);
    }

    #[test]
    fn enabling_without_a_file_is_refused_with_the_reason() {
        let tracer = Tracer::new(TraceSettings::default()).unwrap();
        let update = SettingsUpdate { level: Change::Set(TraceLevel::TIMESTAMPS), ..Default::default() };
        let error = tracer.update(None, update).unwrap_err();
        assert_eq!(error.message(), "Attempting to set invalid trace setting: trace file name is not given");
        assert_eq!(tracer.settings(None).level, TraceLevel::OFF);
        // Turning it off is always allowed.
        let off = SettingsUpdate { level: Change::Set(TraceLevel::OFF), ..Default::default() };
        assert!(tracer.update(None, off).is_ok());
    }

    #[test]
    fn an_ensembles_step_traces_are_written_with_it_naming_it_as_parent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trace.json");
        let tracer = tracing_to(file.to_str().unwrap());
        let ensemble = tracer.sample("e", None).unwrap();
        ensemble.identify("e", 1, "r");
        ensemble.stamp(Activity::RequestStart);
        for _ in 0..2 {
            let step = ensemble.step();
            step.identify("m", 3, "");
            step.stamp(Activity::RequestStart);
        }
        // The steps' traces go with the ensemble's, once it is done.
        assert!(!file.exists());
        drop(ensemble);
        let entries: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let headers: Vec<_> = entries
            .iter()
            .filter(|entry| entry.get("model_name").is_some())
            .map(|entry| {
                (entry["id"].as_u64(), entry["model_name"].as_str(), entry.get("parent_id").and_then(|id| id.as_u64()))
            })
            .collect();
        assert_eq!(headers, [(Some(1), Some("e"), None), (Some(2), Some("m"), Some(1)), (Some(3), Some("m"), Some(1))]);
    }

    #[test]
    fn traces_are_sampled_per_scope_and_numbered_from_one() {
        let tracer = tracing_to("/unused/trace.json");
        tracer.update(Some("rare"), set_rate(2)).unwrap();
        let ids: Vec<Option<u64>> = (0..2).map(|_| tracer.sample("m", None).map(|trace| trace.id())).collect();
        assert_eq!(ids, [Some(1), Some(2)]);
        assert!(tracer.sample("rare", None).is_none());
        assert_eq!(tracer.sample("rare", None).map(|trace| trace.id()), Some(3));
        // Counting down: the settings report what is left.
        tracer.update(None, SettingsUpdate { count: Change::Set(1), ..Default::default() }).unwrap();
        assert!(tracer.sample("m", None).is_some());
        assert!(tracer.sample("m", None).is_none());
        assert_eq!(tracer.settings(None).count, 0);
    }
}
