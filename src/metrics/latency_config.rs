//! Triton's `--metrics-config <setting>=<value>`: which kinds of latency
//! metric the per-model metrics carry. Counters (the default) can be
//! turned off with `counter_latencies=false`; summaries
//! (`summary_latencies=true`, at `summary_quantiles`) and the
//! first-response histogram (`histogram_latencies=true`) turned on.

use crate::statistics::LatencyDistributions;

/// Triton's default quantiles, each with the rank error Prometheus'
/// summaries allow it.
const DEFAULT_QUANTILES: [(f64, f64); 5] = [(0.5, 0.05), (0.9, 0.01), (0.95, 0.001), (0.99, 0.001), (0.999, 0.001)];

/// The latency metrics to report.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyMetricsConfig {
    /// The cumulative `*_duration_us` counters (and the cache counters).
    pub counters: bool,
    /// The `*_summary_us` summaries.
    pub summaries: bool,
    /// `nv_inference_first_response_histogram_ms`.
    pub histograms: bool,
    /// The quantiles the summaries report, with their allowed error
    /// (read, as Triton reads it; the estimate here is within 0.5 % of
    /// the value, whatever the error asked).
    pub quantiles: Vec<(f64, f64)>,
}

impl Default for LatencyMetricsConfig {
    fn default() -> Self {
        Self { counters: true, summaries: false, histograms: false, quantiles: DEFAULT_QUANTILES.to_vec() }
    }
}

impl LatencyMetricsConfig {
    /// Reads the `--metrics-config` settings. A malformed setting is an
    /// error, as in Triton; a setting this server has no use for, or a
    /// quantile that does not read, is returned as a warning.
    pub fn from_settings(settings: &[String]) -> Result<(Self, Vec<String>), String> {
        let mut config = Self::default();
        let mut warnings = Vec::new();
        for setting in settings {
            let malformed = || format!("--metrics-config takes <setting>=<value>, not '{setting}'");
            let (name, value) = setting.split_once('=').ok_or_else(malformed)?;
            if name.contains(',') {
                return Err(malformed());
            }
            match name {
                // Triton turns a kind on or off only for these exact words.
                "counter_latencies" => config.counters = value != "false",
                "summary_latencies" => config.summaries = value == "true",
                "histogram_latencies" => config.histograms = value == "true",
                "summary_quantiles" => {
                    let (quantiles, bad) = parse_quantiles(value);
                    warnings.extend(bad.into_iter().map(|pair| {
                        format!("ignoring quantile '{pair}' of --metrics-config summary_quantiles: expected <quantile>:<error>")
                    }));
                    if !quantiles.is_empty() {
                        config.quantiles = quantiles;
                    }
                }
                _ => warnings.push(format!("ignoring --metrics-config {setting}: not a setting this server uses")),
            }
        }
        Ok((config, warnings))
    }

    /// The distributions the model versions must keep for these metrics.
    pub fn distributions(&self) -> LatencyDistributions {
        LatencyDistributions { summaries: self.summaries, first_response_histogram: self.histograms }
    }
}

/// The `<quantile>:<error>` pairs of a comma-separated list, and the pairs
/// that do not read as two numbers with a quantile between 0 and 1.
fn parse_quantiles(list: &str) -> (Vec<(f64, f64)>, Vec<String>) {
    let mut quantiles = Vec::new();
    let mut bad = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let parsed = pair.split_once(':').and_then(|(quantile, error)| {
            let (quantile, error) = (quantile.trim().parse::<f64>().ok()?, error.trim().parse::<f64>().ok()?);
            (0.0..=1.0).contains(&quantile).then_some((quantile, error))
        });
        match parsed {
            Some(quantile) => quantiles.push(quantile),
            None => bad.push(pair.to_string()),
        }
    }
    (quantiles, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(settings: &[&str]) -> Result<(LatencyMetricsConfig, Vec<String>), String> {
        LatencyMetricsConfig::from_settings(&settings.iter().map(|setting| setting.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn settings_are_read_as_triton_reads_them() {
        let (config, warnings) = read(&[]).unwrap();
        assert_eq!(config, LatencyMetricsConfig::default());
        assert!(config.counters && !config.summaries && !config.histograms && warnings.is_empty());
        let (config, warnings) = read(&[
            "counter_latencies=false",
            "summary_latencies=true",
            "histogram_latencies=true",
            "summary_quantiles=0.5:0.05, 0.99:0.001,oops,2:0.1",
            "model_namespacing=true",
        ])
        .unwrap();
        assert!(!config.counters && config.summaries && config.histograms);
        assert_eq!(config.quantiles, [(0.5, 0.05), (0.99, 0.001)]);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("'oops'") && warnings[1].contains("'2:0.1'"), "{warnings:?}");
        assert!(warnings[2].contains("model_namespacing=true"), "{warnings:?}");
        // Only the exact words switch a kind.
        let (config, _) = read(&["summary_latencies=yes", "counter_latencies=no"]).unwrap();
        assert!(config.counters && !config.summaries);
        // No quantile that reads keeps the defaults.
        let (config, _) = read(&["summary_quantiles=x"]).unwrap();
        assert_eq!(config.quantiles, DEFAULT_QUANTILES);
        for malformed in ["summary_latencies", "a,b=c"] {
            assert!(read(&[malformed]).unwrap_err().contains(malformed));
        }
    }
}
