//! Rendering model metrics in Prometheus' text exposition format, with
//! the metric names, types and labels of Triton's per-model metrics, so
//! that dashboards and alerts written for Triton read them unchanged.

use std::fmt::Write;

use super::cpu::MemoryUsage;
use super::gpu::GpuReading;
use super::latency_config::LatencyMetricsConfig;
use crate::model_manager::VersionMetrics;
use crate::statistics::{Duration64, Summaries, SummarySnapshot};

/// The machine-wide figures of Triton's CPU metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuMetrics {
    /// Busy share of all cores over the last polling interval, 0 to 1.
    pub utilization: f64,
    /// The machine's memory, where it can be read.
    pub memory: Option<MemoryUsage>,
}

/// Triton's failure reasons, in its label spelling, with the count of
/// each. Triton labels an ensemble's failures `OTHER`, as here.
fn failures(metrics: &VersionMetrics) -> [(&'static str, u64); 4] {
    let failures = metrics.statistics.failures;
    [
        ("BACKEND", failures.backend),
        ("CANCELED", failures.canceled),
        ("OTHER", failures.other),
        ("REJECTED", failures.rejected),
    ]
}

/// Whole microseconds of a cumulative duration.
fn micros(duration: Duration64) -> u64 {
    duration.ns / 1_000
}

/// One metric family: its name, type, help text and how to read its value
/// off a model version.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// A latency counter, left out with `counter_latencies=false`.
    latency: bool,
    value: fn(&VersionMetrics) -> String,
}

const FAMILIES: [Family; 10] = [
    Family {
        name: "nv_inference_request_success",
        kind: "counter",
        help: "Inference requests answered successfully; a request counts once whatever its batch size",
        latency: false,
        value: |metrics| metrics.statistics.inference_stats.success.count.to_string(),
    },
    Family {
        name: "nv_inference_count",
        kind: "counter",
        help: "Inferences performed; a request of batch size n counts n",
        latency: false,
        value: |metrics| metrics.statistics.inference_count.to_string(),
    },
    Family {
        name: "nv_inference_exec_count",
        kind: "counter",
        help: "Model executions; a dynamically batched execution counts once",
        latency: false,
        value: |metrics| metrics.statistics.execution_count.to_string(),
    },
    Family {
        name: "nv_inference_request_duration_us",
        kind: "counter",
        help: "Total time of successful requests from arrival to answer, in microseconds",
        latency: true,
        value: |metrics| micros(metrics.statistics.inference_stats.success).to_string(),
    },
    Family {
        name: "nv_inference_queue_duration_us",
        kind: "counter",
        help: "Total time successful requests waited in the scheduler's queue, in microseconds",
        latency: true,
        value: |metrics| micros(metrics.statistics.inference_stats.queue).to_string(),
    },
    Family {
        name: "nv_inference_compute_input_duration_us",
        kind: "counter",
        help: "Total time spent preparing the inputs of successful requests, in microseconds",
        latency: true,
        value: |metrics| micros(metrics.statistics.inference_stats.compute_input).to_string(),
    },
    Family {
        name: "nv_inference_compute_infer_duration_us",
        kind: "counter",
        help: "Total time spent running the model for successful requests, in microseconds",
        latency: true,
        value: |metrics| micros(metrics.statistics.inference_stats.compute_infer).to_string(),
    },
    Family {
        name: "nv_inference_compute_output_duration_us",
        kind: "counter",
        help: "Total time spent extracting the outputs of successful requests, in microseconds",
        latency: true,
        value: |metrics| micros(metrics.statistics.inference_stats.compute_output).to_string(),
    },
    Family {
        name: "nv_inference_pending_request_count",
        kind: "gauge",
        help: "Requests waiting in the scheduler's queue for an instance now",
        latency: false,
        value: |metrics| metrics.pending_requests.to_string(),
    },
    Family {
        name: "nv_model_load_duration_secs",
        kind: "gauge",
        help: "Time the model version took to load, in seconds",
        latency: false,
        value: |metrics| metrics.load_duration.as_secs_f64().to_string(),
    },
];

/// Triton's per-model response cache metrics, reported for the model
/// versions that use the cache.
const CACHE_FAMILIES: [Family; 4] = [
    Family {
        name: "nv_cache_num_hits_per_model",
        kind: "counter",
        help: "Requests answered from the response cache",
        latency: true,
        value: |metrics| metrics.statistics.inference_stats.cache_hit.count.to_string(),
    },
    Family {
        name: "nv_cache_num_misses_per_model",
        kind: "counter",
        help: "Requests that found no answer in the response cache and ran",
        latency: true,
        value: |metrics| metrics.statistics.inference_stats.cache_miss.count.to_string(),
    },
    Family {
        name: "nv_cache_hit_duration_per_model",
        kind: "counter",
        help: "Total time finding and taking answers from the response cache, in microseconds",
        latency: true,
        value: |metrics| micros(metrics.statistics.inference_stats.cache_hit).to_string(),
    },
    Family {
        name: "nv_cache_miss_duration_per_model",
        kind: "counter",
        help: "Total time looking in the response cache and storing answers there on a miss, in microseconds",
        latency: true,
        value: |metrics| micros(metrics.statistics.inference_stats.cache_miss).to_string(),
    },
];

/// Which model versions a summary family reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    Every,
    /// Triton leaves the request summary out for versions that use the
    /// response cache: a miss's time is not known when it is observed.
    WithoutCache,
    WithCache,
}

/// One summary family of Triton's `summary_latencies`.
struct SummaryFamily {
    name: &'static str,
    help: &'static str,
    reported: Reported,
    value: fn(&Summaries<SummarySnapshot>) -> &SummarySnapshot,
}

const SUMMARY_FAMILIES: [SummaryFamily; 7] = [
    SummaryFamily {
        name: "nv_inference_request_summary_us",
        help: "Time of successful requests from arrival to answer, in microseconds (quantiles over the last minute)",
        reported: Reported::WithoutCache,
        value: |summaries| &summaries.request,
    },
    SummaryFamily {
        name: "nv_inference_queue_summary_us",
        help: "Time successful requests waited in the scheduler's queue, in microseconds (quantiles over the last minute)",
        reported: Reported::Every,
        value: |summaries| &summaries.queue,
    },
    SummaryFamily {
        name: "nv_inference_compute_input_summary_us",
        help: "Time spent preparing the inputs of successful requests, in microseconds (quantiles over the last minute)",
        reported: Reported::Every,
        value: |summaries| &summaries.compute_input,
    },
    SummaryFamily {
        name: "nv_inference_compute_infer_summary_us",
        help: "Time spent running the model for successful requests, in microseconds (quantiles over the last minute)",
        reported: Reported::Every,
        value: |summaries| &summaries.compute_infer,
    },
    SummaryFamily {
        name: "nv_inference_compute_output_summary_us",
        help: "Time spent extracting the outputs of successful requests, in microseconds (quantiles over the last \
               minute)",
        reported: Reported::Every,
        value: |summaries| &summaries.compute_output,
    },
    SummaryFamily {
        name: "nv_cache_hit_summary_per_model",
        help: "Time finding and taking answers from the response cache, in microseconds (quantiles over the last \
               minute)",
        reported: Reported::WithCache,
        value: |summaries| &summaries.cache_hit,
    },
    SummaryFamily {
        name: "nv_cache_miss_summary_per_model",
        help: "Time looking in the response cache and storing answers there on a miss, in microseconds (quantiles \
               over the last minute)",
        reported: Reported::WithCache,
        value: |summaries| &summaries.cache_miss,
    },
];

/// The first-response histogram's family.
const FIRST_RESPONSE_HISTOGRAM: &str = "nv_inference_first_response_histogram_ms";

/// A label value with the characters the text format reserves escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The text exposition of the metrics of `versions`: every family, one
/// sample per model version (and per failure reason), labelled `model` and
/// `version` as in Triton; then the GPU metrics (one sample per GPU,
/// labelled `gpu_uuid`) and the CPU metrics, when they are on.
pub fn render(
    versions: &[VersionMetrics],
    gpus: &[GpuReading],
    cpu: Option<&CpuMetrics>,
    latency: &LatencyMetricsConfig,
) -> String {
    let mut text = String::new();
    write_header(
        &mut text,
        "nv_inference_request_failure",
        "counter",
        "Failed inference requests by reason; a request counts once whatever its batch size",
    );
    for metrics in versions {
        let (model, version) = (model_labels(metrics), metrics.statistics.version);
        for (reason, count) in failures(metrics) {
            let _ = writeln!(
                text,
                "nv_inference_request_failure{{{model},reason=\"{reason}\",version=\"{version}\"}} {count}"
            );
        }
    }
    let every: Vec<&VersionMetrics> = versions.iter().collect();
    let caching: Vec<&VersionMetrics> = versions.iter().filter(|metrics| metrics.caches_responses).collect();
    let cache_families = CACHE_FAMILIES.iter().filter(|_| !caching.is_empty());
    let families = FAMILIES
        .iter()
        .map(|family| (family, &every))
        .chain(cache_families.map(|family| (family, &caching)))
        .filter(|(family, _)| latency.counters || !family.latency);
    for (family, reported) in families {
        write_header(&mut text, family.name, family.kind, family.help);
        for metrics in reported {
            let _ = writeln!(text, "{}{{{}}} {}", family.name, series_labels(metrics), (family.value)(metrics));
        }
    }
    if latency.summaries {
        render_summaries(&mut text, versions, &latency.quantiles);
    }
    if latency.histograms {
        render_first_response_histogram(&mut text, versions);
    }
    render_gpus(&mut text, gpus);
    if let Some(cpu) = cpu {
        write_header(
            &mut text,
            "nv_cpu_utilization",
            "gauge",
            "Busy share of all CPU cores over the last polling interval, 0 to 1",
        );
        let _ = writeln!(text, "nv_cpu_utilization {}", cpu.utilization);
        if let Some(memory) = cpu.memory {
            write_header(&mut text, "nv_cpu_memory_total_bytes", "gauge", "The machine's memory, in bytes");
            let _ = writeln!(text, "nv_cpu_memory_total_bytes {}", memory.total_bytes);
            write_header(
                &mut text,
                "nv_cpu_memory_used_bytes",
                "gauge",
                "The machine's memory in use (total less available), in bytes",
            );
            let _ = writeln!(text, "nv_cpu_memory_used_bytes {}", memory.used_bytes);
        }
    }
    text
}

/// A GPU family: its name, type, help and the figure of a reading.
struct GpuFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&GpuReading) -> Option<f64>,
}

/// Triton's GPU families, in its order, with its units.
const GPU_FAMILIES: [GpuFamily; 6] = [
    GpuFamily {
        name: "nv_gpu_utilization",
        kind: "gauge",
        help: "GPU utilization rate [0.0 - 1.0)",
        value: |gpu| gpu.utilization,
    },
    GpuFamily {
        name: "nv_gpu_memory_total_bytes",
        kind: "gauge",
        help: "GPU total memory, in bytes",
        value: |gpu| gpu.memory.map(|memory| memory.total_bytes as f64),
    },
    GpuFamily {
        name: "nv_gpu_memory_used_bytes",
        kind: "gauge",
        help: "GPU used memory, in bytes",
        value: |gpu| gpu.memory.map(|memory| memory.used_bytes as f64),
    },
    GpuFamily {
        name: "nv_gpu_power_usage",
        kind: "gauge",
        help: "GPU power usage in watts",
        value: |gpu| gpu.power_usage_watts,
    },
    GpuFamily {
        name: "nv_gpu_power_limit",
        kind: "gauge",
        help: "GPU power management limit in watts",
        value: |gpu| gpu.power_limit_watts,
    },
    GpuFamily {
        name: "nv_energy_consumption",
        kind: "counter",
        help: "GPU energy consumption in joules since the server started",
        value: |gpu| gpu.energy_joules,
    },
];

/// The GPU families that at least one GPU reports, a sample per GPU that
/// reports it.
fn render_gpus(text: &mut String, gpus: &[GpuReading]) {
    for family in &GPU_FAMILIES {
        let samples: Vec<(&str, f64)> =
            gpus.iter().filter_map(|gpu| Some((gpu.uuid.as_str(), (family.value)(gpu)?))).collect();
        if samples.is_empty() {
            continue;
        }
        write_header(text, family.name, family.kind, family.help);
        for (uuid, value) in samples {
            let _ = writeln!(text, "{}{{gpu_uuid=\"{}\"}} {value}", family.name, escape(uuid));
        }
    }
}

/// A model version's labels, `model="<name>",version="<version>"` (with
/// model namespacing, `namespace="<repository>"` between them, as Triton
/// orders its labels), as its samples carry them.
fn series_labels(metrics: &VersionMetrics) -> String {
    format!("{},version=\"{}\"", model_labels(metrics), metrics.statistics.version)
}

/// `model="<name>"`, and with model namespacing `,namespace="<repository>"`.
fn model_labels(metrics: &VersionMetrics) -> String {
    let model = escape(&metrics.statistics.name);
    match &metrics.namespace {
        Some(namespace) => format!("model=\"{model}\",namespace=\"{}\"", escape(namespace)),
        None => format!("model=\"{model}\""),
    }
}

/// Writes a family's HELP and TYPE lines (writing to a String cannot
/// fail).
fn write_header(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The summaries of `summary_latencies`: per version, a sample per
/// quantile (`NaN` when nothing was observed in the last minute), then its
/// count and sum over all time, as Prometheus summaries have them.
fn render_summaries(text: &mut String, versions: &[VersionMetrics], quantiles: &[(f64, f64)]) {
    let caching = versions.iter().any(|metrics| metrics.caches_responses);
    for family in &SUMMARY_FAMILIES {
        if family.reported == Reported::WithCache && !caching {
            continue;
        }
        write_header(text, family.name, "summary", family.help);
        for metrics in versions {
            let reported = match family.reported {
                Reported::Every => true,
                Reported::WithoutCache => !metrics.caches_responses,
                Reported::WithCache => metrics.caches_responses,
            };
            let Some(summaries) = metrics.latency.as_ref().and_then(|latency| latency.summaries.as_ref()) else {
                continue;
            };
            if !reported {
                continue;
            }
            let summary = (family.value)(summaries);
            let labels = series_labels(metrics);
            for (quantile, _) in quantiles {
                let value = summary.quantile(*quantile).unwrap_or(f64::NAN);
                let _ = writeln!(text, "{}{{{labels},quantile=\"{quantile}\"}} {value}", family.name);
            }
            let _ = writeln!(text, "{}_count{{{labels}}} {}", family.name, summary.count);
            let _ = writeln!(text, "{}_sum{{{labels}}} {}", family.name, summary.sum);
        }
    }
}

/// The first-response histogram of `histogram_latencies`: per version,
/// its cumulative buckets, count and sum.
fn render_first_response_histogram(text: &mut String, versions: &[VersionMetrics]) {
    write_header(
        text,
        FIRST_RESPONSE_HISTOGRAM,
        "histogram",
        "Time from a request's arrival to its first response, in milliseconds",
    );
    for metrics in versions {
        let Some(histogram) = metrics.latency.as_ref().and_then(|latency| latency.first_response.as_ref()) else {
            continue;
        };
        let labels = series_labels(metrics);
        for (bound, count) in histogram.cumulative() {
            let bound = bound.map_or_else(|| "+Inf".to_string(), |bound| bound.to_string());
            let _ = writeln!(text, "{FIRST_RESPONSE_HISTOGRAM}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(text, "{FIRST_RESPONSE_HISTOGRAM}_count{{{labels}}} {}", histogram.count());
        let _ = writeln!(text, "{FIRST_RESPONSE_HISTOGRAM}_sum{{{labels}}} {}", histogram.sum());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::gpu::GpuMemory;
    use crate::statistics::{FailureCounts, InferenceStatistics, LatencySnapshot, ModelStatistics};

    fn version(name: &str, version: i64) -> VersionMetrics {
        VersionMetrics {
            namespace: None,
            statistics: ModelStatistics { name: name.to_string(), version, ..Default::default() },
            latency: None,
            pending_requests: 0,
            load_duration: Duration::from_millis(250),
            caches_responses: false,
        }
    }

    fn counters() -> LatencyMetricsConfig {
        LatencyMetricsConfig::default()
    }

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn every_family_has_a_sample_per_version() {
        let mut busy = version("mlp", 2);
        busy.statistics.inference_count = 40;
        busy.statistics.execution_count = 3;
        busy.statistics.inference_stats = InferenceStatistics {
            success: Duration64 { count: 7, ns: 9_000_999 },
            queue: Duration64 { count: 7, ns: 2_000_000 },
            compute_infer: Duration64 { count: 7, ns: 5_500_000 },
            ..Default::default()
        };
        busy.statistics.failures = FailureCounts { rejected: 1, canceled: 2, backend: 3, other: 4 };
        busy.pending_requests = 5;
        let text = render(&[version("simple", 1), busy], &[], None, &counters());
        let mlp = r#"{model="mlp",version="2"}"#;
        assert_eq!(sample(&text, &format!("nv_inference_request_success{mlp}")), Some("7"));
        assert_eq!(sample(&text, &format!("nv_inference_count{mlp}")), Some("40"));
        assert_eq!(sample(&text, &format!("nv_inference_exec_count{mlp}")), Some("3"));
        assert_eq!(sample(&text, &format!("nv_inference_request_duration_us{mlp}")), Some("9000"));
        assert_eq!(sample(&text, &format!("nv_inference_queue_duration_us{mlp}")), Some("2000"));
        assert_eq!(sample(&text, &format!("nv_inference_compute_infer_duration_us{mlp}")), Some("5500"));
        assert_eq!(sample(&text, &format!("nv_inference_pending_request_count{mlp}")), Some("5"));
        assert_eq!(sample(&text, &format!("nv_model_load_duration_secs{mlp}")), Some("0.25"));
        for (reason, count) in [("BACKEND", "3"), ("CANCELED", "2"), ("OTHER", "4"), ("REJECTED", "1")] {
            let series = format!(r#"nv_inference_request_failure{{model="mlp",reason="{reason}",version="2"}}"#);
            assert_eq!(sample(&text, &series), Some(count), "{series}");
        }
        assert_eq!(sample(&text, r#"nv_inference_count{model="simple",version="1"}"#), Some("0"));
        // One HELP and one TYPE line per family, samples only for families
        // declared before them.
        assert_eq!(text.lines().filter(|line| line.starts_with("# TYPE ")).count(), FAMILIES.len() + 1);
        assert_eq!(text.lines().filter(|line| !line.starts_with('#')).count(), 2 * (FAMILIES.len() + 4));
        assert!(text.contains("# TYPE nv_inference_pending_request_count gauge\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn cache_metrics_only_for_versions_that_use_the_cache() {
        assert!(!render(&[version("simple", 1)], &[], None, &counters()).contains("nv_cache"));
        let mut cached = version("mlp", 1);
        cached.caches_responses = true;
        cached.statistics.inference_stats.cache_hit = Duration64 { count: 3, ns: 4_500 };
        cached.statistics.inference_stats.cache_miss = Duration64 { count: 2, ns: 12_000 };
        let text = render(&[version("simple", 1), cached], &[], None, &counters());
        let mlp = r#"{model="mlp",version="1"}"#;
        assert_eq!(sample(&text, &format!("nv_cache_num_hits_per_model{mlp}")), Some("3"));
        assert_eq!(sample(&text, &format!("nv_cache_num_misses_per_model{mlp}")), Some("2"));
        assert_eq!(sample(&text, &format!("nv_cache_hit_duration_per_model{mlp}")), Some("4"));
        assert_eq!(sample(&text, &format!("nv_cache_miss_duration_per_model{mlp}")), Some("12"));
        assert!(text.contains("# TYPE nv_cache_num_hits_per_model counter\n"));
        assert!(!text.contains(r#"nv_cache_num_hits_per_model{model="simple""#));
    }

    #[test]
    fn latency_counters_can_be_left_out() {
        let config = LatencyMetricsConfig { counters: false, ..counters() };
        let mut cached = version("mlp", 1);
        cached.caches_responses = true;
        let text = render(&[cached], &[], None, &config);
        assert!(!text.contains("_duration_us") && !text.contains("nv_cache"), "{text}");
        assert!(text.contains("nv_inference_request_success{"), "{text}");
        assert!(text.contains("nv_inference_pending_request_count{"), "{text}");
    }

    /// A version whose recorder kept summaries and the first-response
    /// histogram: two requests of 100 and 300 µs, one compute of 50 µs.
    fn observed(name: &str, caches_responses: bool) -> VersionMetrics {
        use crate::statistics::{ExecutionTimes, LatencyObservations, StatisticsRecorder};
        let observations = LatencyObservations { summaries: true, first_response_bounds: Some(vec![1.0, 10.0]) };
        let recorder = StatisticsRecorder::observing(name, 1, &observations);
        let times = ExecutionTimes { infer: Duration::from_micros(50), ..Default::default() };
        let us = Duration::from_micros;
        recorder.record_execution(2, times, &[us(10), us(30)], &[us(100), us(300)]);
        if caches_responses {
            recorder.record_cache_hit(us(20), us(8));
        }
        VersionMetrics { latency: recorder.latency_snapshot(), caches_responses, ..version(name, 1) }
    }

    #[test]
    fn summaries_report_quantiles_count_and_sum() {
        let config =
            LatencyMetricsConfig { summaries: true, quantiles: vec![(0.5, 0.05), (0.99, 0.001)], ..counters() };
        let text = render(&[observed("mlp", false), version("idle", 1)], &[], None, &config);
        let mlp = r#"model="mlp",version="1""#;
        assert_eq!(sample(&text, &format!(r#"nv_inference_request_summary_us{{{mlp},quantile="0.5"}}"#)), Some("100"));
        assert_eq!(sample(&text, &format!(r#"nv_inference_request_summary_us{{{mlp},quantile="0.99"}}"#)), Some("300"));
        assert_eq!(sample(&text, &format!("nv_inference_request_summary_us_count{{{mlp}}}")), Some("2"));
        assert_eq!(sample(&text, &format!("nv_inference_request_summary_us_sum{{{mlp}}}")), Some("400"));
        assert_eq!(sample(&text, &format!(r#"nv_inference_queue_summary_us{{{mlp},quantile="0.99"}}"#)), Some("30"));
        assert_eq!(sample(&text, &format!("nv_inference_compute_infer_summary_us_sum{{{mlp}}}")), Some("100"));
        // Nothing observed yet: no quantile to give.
        let nothing_yet = LatencySnapshot { summaries: Some(Summaries::default()), first_response: None };
        let idle = VersionMetrics { latency: Some(nothing_yet), ..version("idle", 1) };
        let text = render(&[idle], &[], None, &config);
        assert!(
            text.contains(r#"nv_inference_queue_summary_us{model="idle",version="1",quantile="0.5"} NaN"#),
            "{text}"
        );
        assert!(text.contains("# TYPE nv_inference_queue_summary_us summary\n"));
        assert!(!text.contains("nv_cache_hit_summary_per_model"), "{text}");
        // The counters stay, unless turned off.
        assert!(text.contains("nv_inference_request_duration_us{"));
    }

    #[test]
    fn versions_that_cache_get_cache_summaries_and_no_request_summary() {
        let config = LatencyMetricsConfig { summaries: true, quantiles: vec![(0.5, 0.05)], ..counters() };
        let text = render(&[observed("cached", true), observed("plain", false)], &[], None, &config);
        assert_eq!(
            sample(&text, r#"nv_cache_hit_summary_per_model{model="cached",version="1",quantile="0.5"}"#),
            Some("8")
        );
        assert!(!text.contains(r#"nv_cache_hit_summary_per_model{model="plain""#), "{text}");
        assert!(!text.contains(r#"nv_inference_request_summary_us{model="cached""#), "{text}");
        assert!(text.contains(r#"nv_inference_request_summary_us{model="plain""#), "{text}");
        // The cache hit waited in no queue: three observations, 40 µs.
        assert_eq!(sample(&text, r#"nv_inference_queue_summary_us_count{model="cached",version="1"}"#), Some("3"));
    }

    #[test]
    fn the_first_response_histogram_has_cumulative_buckets() {
        let config = LatencyMetricsConfig { histograms: true, ..counters() };
        let text = render(&[observed("mlp", false)], &[], None, &config);
        let family = "nv_inference_first_response_histogram_ms";
        assert!(text.contains(&format!("# TYPE {family} histogram\n")));
        let bucket = |le: &str| sample(&text, &format!(r#"{family}_bucket{{model="mlp",version="1",le="{le}"}}"#));
        assert_eq!((bucket("1"), bucket("10"), bucket("+Inf")), (Some("2"), Some("2"), Some("2")));
        assert_eq!(sample(&text, &format!(r#"{family}_count{{model="mlp",version="1"}}"#)), Some("2"));
        assert_eq!(sample(&text, &format!(r#"{family}_sum{{model="mlp",version="1"}}"#)), Some("0"));
        assert!(!text.contains("_summary_us"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&[version("a\"b\\c", 1)], &[], None, &counters());
        assert!(text.contains(r#"nv_inference_count{model="a\"b\\c",version="1"} 0"#), "{text}");
    }

    #[test]
    fn with_namespacing_every_series_names_its_repository() {
        let mut failed = version("addsub", 1);
        failed.statistics.failures.backend = 2;
        let namespaced = VersionMetrics { namespace: Some("/models/a".to_string()), ..failed };
        let text = render(&[namespaced], &[], None, &counters());
        let labels = r#"model="addsub",namespace="/models/a""#;
        assert_eq!(sample(&text, &format!(r#"nv_inference_count{{{labels},version="1"}}"#)), Some("0"));
        let failure = format!(r#"nv_inference_request_failure{{{labels},reason="BACKEND",version="1"}}"#);
        assert_eq!(sample(&text, &failure), Some("2"), "{text}");
    }

    #[test]
    fn no_models_gives_the_families_without_samples() {
        let text = render(&[], &[], None, &counters());
        assert!(text.lines().all(|line| line.starts_with('#')), "{text}");
        assert!(text.contains("# TYPE nv_inference_request_success counter\n"));
    }

    #[test]
    fn cpu_metrics_follow_the_models_when_on() {
        let memory = MemoryUsage { total_bytes: 2048, used_bytes: 1024 };
        let text = render(
            &[version("simple", 1)],
            &[],
            Some(&CpuMetrics { utilization: 0.25, memory: Some(memory) }),
            &counters(),
        );
        assert_eq!(sample(&text, "nv_cpu_utilization"), Some("0.25"));
        assert_eq!(sample(&text, "nv_cpu_memory_total_bytes"), Some("2048"));
        assert_eq!(sample(&text, "nv_cpu_memory_used_bytes"), Some("1024"));
        assert!(text.contains("# TYPE nv_cpu_utilization gauge\n"));
        let without_memory = render(&[], &[], Some(&CpuMetrics { utilization: 0.0, memory: None }), &counters());
        assert_eq!(sample(&without_memory, "nv_cpu_utilization"), Some("0"));
        assert!(!without_memory.contains("nv_cpu_memory"));
        assert!(!render(&[], &[], None, &counters()).contains("nv_cpu"));
    }

    #[test]
    fn gpu_metrics_carry_the_gpu_uuid_and_leave_out_what_a_gpu_cannot_report() {
        let full = GpuReading {
            uuid: "GPU-1".to_string(),
            utilization: Some(0.37),
            memory: Some(GpuMemory { total_bytes: 4096, used_bytes: 1024 }),
            power_usage_watts: Some(123.5),
            power_limit_watts: Some(700.0),
            energy_joules: Some(2.5),
        };
        let partial =
            GpuReading { uuid: "GPU-2".to_string(), power_usage_watts: None, energy_joules: None, ..full.clone() };
        let cpu = CpuMetrics { utilization: 0.5, memory: None };
        let text = render(&[], &[full, partial], Some(&cpu), &counters());
        let lines: Vec<&str> =
            text.lines().filter(|line| line.starts_with("nv_gpu") || line.starts_with("nv_energy")).collect();
        assert_eq!(
            lines,
            [
                "nv_gpu_utilization{gpu_uuid=\"GPU-1\"} 0.37",
                "nv_gpu_utilization{gpu_uuid=\"GPU-2\"} 0.37",
                "nv_gpu_memory_total_bytes{gpu_uuid=\"GPU-1\"} 4096",
                "nv_gpu_memory_total_bytes{gpu_uuid=\"GPU-2\"} 4096",
                "nv_gpu_memory_used_bytes{gpu_uuid=\"GPU-1\"} 1024",
                "nv_gpu_memory_used_bytes{gpu_uuid=\"GPU-2\"} 1024",
                "nv_gpu_power_usage{gpu_uuid=\"GPU-1\"} 123.5",
                "nv_gpu_power_limit{gpu_uuid=\"GPU-1\"} 700",
                "nv_gpu_power_limit{gpu_uuid=\"GPU-2\"} 700",
                "nv_energy_consumption{gpu_uuid=\"GPU-1\"} 2.5",
            ]
        );
        assert!(text.contains("# TYPE nv_energy_consumption counter\n"));
        // As in Triton, the GPU families come before the CPU ones.
        assert!(text.find("nv_energy_consumption").unwrap() < text.find("nv_cpu_utilization").unwrap());
        assert!(!render(&[], &[], None, &counters()).contains("nv_gpu"));
    }
}
