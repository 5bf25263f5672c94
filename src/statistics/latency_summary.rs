//! The distribution of one latency over the last minute, for Triton's
//! summary metrics (`--metrics-config summary_latencies=true`): quantiles
//! over a sliding 60-second window, count and sum over all time, as a
//! Prometheus summary reports them.
//!
//! Values are kept in buckets: exact below 1,024 µs, and above that within
//! 0.5 % of the value, so a quantile is never further than that from the
//! observed one and memory stays bounded whatever the request rate. The
//! window moves in five 12-second steps, as Prometheus' client libraries
//! age their summaries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How far back quantiles look.
const WINDOW: Duration = Duration::from_secs(60);
/// Steps in which the window moves.
const SLOTS: usize = 5;
/// Values below this many microseconds have a bucket each.
const EXACT_BELOW: u64 = 1024;
/// Above [`EXACT_BELOW`], each bucket is this factor wider than the last.
const GROWTH: f64 = 1.01;

/// The bucket of a value in microseconds.
fn bucket_of(micros: u64) -> u32 {
    if micros < EXACT_BELOW {
        return micros as u32;
    }
    let steps = ((micros as f64) / EXACT_BELOW as f64).ln() / GROWTH.ln();
    EXACT_BELOW as u32 + steps.floor() as u32
}

/// The value a bucket stands for: its own value when exact, else the
/// geometric middle of its range.
fn value_of(bucket: u32) -> f64 {
    if u64::from(bucket) < EXACT_BELOW {
        return f64::from(bucket);
    }
    let steps = f64::from(bucket - EXACT_BELOW as u32) + 0.5;
    (EXACT_BELOW as f64 * GROWTH.powf(steps)).round()
}

/// The observations of one step of the window.
#[derive(Debug, Clone, Default)]
struct Slot {
    started: Option<Instant>,
    buckets: BTreeMap<u32, u64>,
}

/// One latency's summary.
#[derive(Debug, Clone, Default)]
pub struct LatencySummary {
    slots: [Slot; SLOTS],
    current: usize,
    count: u64,
    sum: u64,
}

impl LatencySummary {
    /// Records a value in microseconds observed at `now`.
    pub fn observe(&mut self, micros: u64, now: Instant) {
        let step = WINDOW / SLOTS as u32;
        let slot = &self.slots[self.current];
        if slot.started.is_none_or(|started| now.saturating_duration_since(started) >= step) {
            self.current = (self.current + 1) % SLOTS;
            self.slots[self.current] = Slot { started: Some(now), buckets: BTreeMap::new() };
        }
        *self.slots[self.current].buckets.entry(bucket_of(micros)).or_default() += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(micros);
    }

    /// What the summary reports at `now`.
    pub fn snapshot(&self, now: Instant) -> SummarySnapshot {
        let mut recent: BTreeMap<u32, u64> = BTreeMap::new();
        let live = self
            .slots
            .iter()
            .filter(|slot| slot.started.is_some_and(|started| now.saturating_duration_since(started) < WINDOW));
        for slot in live {
            for (bucket, count) in &slot.buckets {
                *recent.entry(*bucket).or_default() += count;
            }
        }
        SummarySnapshot { count: self.count, sum: self.sum, recent: recent.into_iter().collect() }
    }
}

/// A summary as reported at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummarySnapshot {
    /// Observations since the model version loaded.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum: u64,
    /// The last minute's observations: (bucket, count), by bucket.
    recent: Vec<(u32, u64)>,
}

impl SummarySnapshot {
    /// The `quantile` (0 to 1) of the last minute's values in
    /// microseconds; `None` when nothing was observed in it.
    pub fn quantile(&self, quantile: f64) -> Option<f64> {
        let observed: u64 = self.recent.iter().map(|(_, count)| count).sum();
        if observed == 0 {
            return None;
        }
        // The smallest value with at least that share of values at or
        // below it.
        let rank = ((quantile.clamp(0.0, 1.0) * observed as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in &self.recent {
            seen += count;
            if seen >= rank {
                return Some(value_of(*bucket));
            }
        }
        self.recent.last().map(|(bucket, _)| value_of(*bucket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_values_within_half_a_percent() {
        for micros in [0, 1, 999, 1023, 1024, 1500, 12_345, 987_654, 3_600_000_000] {
            let value = value_of(bucket_of(micros));
            let error = (value - micros as f64).abs() / (micros as f64).max(1.0);
            assert!(error <= 0.005, "{micros} µs read back as {value}");
        }
        assert!(bucket_of(2000) < bucket_of(2100));
    }

    #[test]
    fn quantiles_come_from_the_last_minute_and_totals_from_all_time() {
        let start = Instant::now();
        let mut summary = LatencySummary::default();
        for micros in 1..=100 {
            summary.observe(micros, start);
        }
        let snapshot = summary.snapshot(start);
        assert_eq!((snapshot.count, snapshot.sum), (100, 5050));
        assert_eq!(snapshot.quantile(0.5), Some(50.0));
        assert_eq!(snapshot.quantile(0.99), Some(99.0));
        assert_eq!(snapshot.quantile(1.0), Some(100.0));
        assert_eq!(snapshot.quantile(0.0), Some(1.0));
        // Later values push the first ones out of the window once they are
        // over a minute old; the totals keep them.
        let later = start + Duration::from_secs(61);
        summary.observe(5000, later);
        let snapshot = summary.snapshot(later);
        assert_eq!((snapshot.count, snapshot.sum), (101, 10050));
        assert_eq!(snapshot.quantile(0.5), Some(value_of(bucket_of(5000))));
        // A minute of silence leaves no quantile.
        let quiet = later + Duration::from_secs(70);
        assert_eq!(summary.snapshot(quiet).quantile(0.5), None);
        assert_eq!(summary.snapshot(quiet).count, 101);
    }

    #[test]
    fn the_window_moves_in_steps() {
        let start = Instant::now();
        let mut summary = LatencySummary::default();
        summary.observe(10, start);
        summary.observe(20, start + Duration::from_secs(30));
        // At 65 s the first step (0-12 s) has left the window; the second
        // (30 s on) has not.
        let snapshot = summary.snapshot(start + Duration::from_secs(65));
        assert_eq!(snapshot.quantile(0.0), Some(20.0));
        assert_eq!(summary.snapshot(start + Duration::from_secs(40)).quantile(0.0), Some(10.0));
    }
}
