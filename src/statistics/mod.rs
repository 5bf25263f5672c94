//! Inference statistics per model version, with the fields and meanings of
//! Triton's statistics extension (which `perf_analyzer` reads to split
//! latency into queue and compute time).

mod latency_summary;
mod response_histogram;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use latency_summary::{LatencySummary, SummarySnapshot};
pub use response_histogram::{DEFAULT_BOUNDS as FIRST_RESPONSE_BOUNDS, ResponseHistogram};

/// A count and the total time those events took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Duration64 {
    /// How many times it happened.
    pub count: u64,
    /// Total nanoseconds.
    pub ns: u64,
}

impl Duration64 {
    fn add(&mut self, count: u64, elapsed: Duration) {
        self.count += count;
        self.ns += u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    }
}

/// Per-request figures: each request in a batch is charged the batch's
/// compute times, as Triton does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InferenceStatistics {
    /// Requests answered successfully, and their time from arrival to answer.
    pub success: Duration64,
    /// Requests that failed (including rejections), and their time.
    pub fail: Duration64,
    /// Time requests waited in the queue.
    pub queue: Duration64,
    /// Time preparing inputs.
    pub compute_input: Duration64,
    /// Time running the model.
    pub compute_infer: Duration64,
    /// Time extracting outputs.
    pub compute_output: Duration64,
    /// Requests answered from the response cache, and the time finding
    /// and taking their answers took.
    pub cache_hit: Duration64,
    /// Requests that looked in the response cache and had to run, and the
    /// time looking and then storing their answers took.
    pub cache_miss: Duration64,
}

/// Per executed batch size: how many executions of that size and their
/// compute times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStatistics {
    /// Time preparing inputs.
    pub compute_input: Duration64,
    /// Time running the model.
    pub compute_infer: Duration64,
    /// Time extracting outputs.
    pub compute_output: Duration64,
}

/// Why a request failed, as Triton's metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A queue policy refused it: it waited past its timeout (`REJECTED`).
    Rejected,
    /// Its client went away before it ran (`CANCELED`).
    Canceled,
    /// The model failed to execute it (`BACKEND`).
    Backend,
    /// Anything else; an ensemble's failures, as Triton labels them
    /// (`OTHER`).
    Other,
}

/// Failed requests by [`FailureReason`]; together they are the count of
/// [`InferenceStatistics::fail`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCounts {
    /// Refused by a queue policy.
    pub rejected: u64,
    /// Dropped because the client went away.
    pub canceled: u64,
    /// Failed in the model.
    pub backend: u64,
    /// Failed otherwise (an ensemble's failures).
    pub other: u64,
}

/// A snapshot of one model version's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelStatistics {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: i64,
    /// Milliseconds since the Unix epoch of the last successful inference;
    /// 0 if none.
    pub last_inference: u64,
    /// Successful inferences, counting every item of a batch.
    pub inference_count: u64,
    /// Successful model executions; a batch counts once.
    pub execution_count: u64,
    /// Per-request figures.
    pub inference_stats: InferenceStatistics,
    /// Per executed batch size, ascending.
    pub batch_stats: BTreeMap<u64, BatchStatistics>,
    /// Failed requests by reason (Triton's metrics report them; its
    /// statistics extension only counts them).
    pub failures: FailureCounts,
}

/// How long the phases of one execution took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutionTimes {
    /// Preparing inputs (merging requests, making backend tensors).
    pub input: Duration,
    /// Running the model.
    pub infer: Duration,
    /// Extracting outputs and splitting them per request.
    pub output: Duration,
}

impl std::iter::Sum for ExecutionTimes {
    /// Phase by phase: the times of several executions one after another.
    fn sum<I: Iterator<Item = Self>>(times: I) -> Self {
        times.fold(Self::default(), |sum, next| Self {
            input: sum.input + next.input,
            infer: sum.infer + next.infer,
            output: sum.output + next.output,
        })
    }
}

/// Which latency distributions the server's model versions keep
/// (Triton's `summary_latencies` and `histogram_latencies`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyDistributions {
    /// Summaries of request, queue, compute and cache times.
    pub summaries: bool,
    /// The first-response histogram.
    pub first_response_histogram: bool,
}

/// Which latency distributions a recorder keeps beside its counters, for
/// the summary and histogram metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyObservations {
    /// Summaries of request, queue, compute and cache times.
    pub summaries: bool,
    /// The bucket bounds of the first-response histogram, when it is kept.
    pub first_response_bounds: Option<Vec<f64>>,
}

/// One summary per latency that Triton summarises.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summaries<T> {
    /// From arrival to answer.
    pub request: T,
    /// Waiting in the scheduler's queue.
    pub queue: T,
    /// Preparing inputs.
    pub compute_input: T,
    /// Running the model.
    pub compute_infer: T,
    /// Extracting outputs.
    pub compute_output: T,
    /// Taking an answer from the response cache.
    pub cache_hit: T,
    /// Looking in the response cache in vain and storing the answer.
    pub cache_miss: T,
}

/// The latency distributions of one model version at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    /// The summaries, when kept.
    pub summaries: Option<Summaries<SummarySnapshot>>,
    /// The first-response histogram, when kept.
    pub first_response: Option<ResponseHistogram>,
}

#[derive(Debug, Default)]
struct LatencyRecorders {
    summaries: Option<Summaries<LatencySummary>>,
    first_response: Option<ResponseHistogram>,
}

impl LatencyRecorders {
    fn observe_response(&mut self, total: Duration) {
        if let Some(histogram) = &mut self.first_response {
            histogram.observe(u64::try_from(total.as_millis()).unwrap_or(u64::MAX));
        }
    }
}

/// Whole microseconds, as Triton observes its latencies.
fn whole_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The live statistics of one model version.
#[derive(Debug)]
pub struct StatisticsRecorder {
    inner: Mutex<ModelStatistics>,
    /// `None` unless summaries or histograms are on, so that recording
    /// costs nothing more by default.
    latency: Option<Mutex<LatencyRecorders>>,
}

impl StatisticsRecorder {
    /// Empty statistics for a model version.
    pub fn new(name: &str, version: i64) -> Self {
        Self::observing(name, version, &LatencyObservations::default())
    }

    /// Empty statistics for a model version that also keep the latency
    /// distributions `observations` asks for.
    pub fn observing(name: &str, version: i64, observations: &LatencyObservations) -> Self {
        let recorders = LatencyRecorders {
            summaries: observations.summaries.then(Summaries::default),
            first_response: observations.first_response_bounds.clone().map(ResponseHistogram::new),
        };
        let keeps_any = recorders.summaries.is_some() || recorders.first_response.is_some();
        Self {
            inner: Mutex::new(ModelStatistics { name: name.to_string(), version, ..Default::default() }),
            latency: keeps_any.then(|| Mutex::new(recorders)),
        }
    }

    fn observe(&self, change: impl FnOnce(&mut LatencyRecorders)) {
        if let Some(latency) = &self.latency {
            change(&mut latency.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        }
    }

    /// The latency distributions, when any are kept.
    pub fn latency_snapshot(&self) -> Option<LatencySnapshot> {
        let latency = self.latency.as_ref()?.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let summaries = latency.summaries.as_ref().map(|summaries| Summaries {
            request: summaries.request.snapshot(now),
            queue: summaries.queue.snapshot(now),
            compute_input: summaries.compute_input.snapshot(now),
            compute_infer: summaries.compute_infer.snapshot(now),
            compute_output: summaries.compute_output.snapshot(now),
            cache_hit: summaries.cache_hit.snapshot(now),
            cache_miss: summaries.cache_miss.snapshot(now),
        });
        Some(LatencySnapshot { summaries, first_response: latency.first_response.clone() })
    }

    fn update(&self, change: impl FnOnce(&mut ModelStatistics)) {
        // Counters stay meaningful even if a panic interrupted an earlier
        // update, so a poisoned lock is used as it is.
        let mut statistics = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut statistics);
    }

    /// Records one successful execution of `batch_size` items made of
    /// requests that waited `queue_times` and took `totals` from arrival to
    /// answer.
    pub fn record_execution(
        &self,
        batch_size: u64,
        times: ExecutionTimes,
        queue_times: &[Duration],
        totals: &[Duration],
    ) {
        let requests = queue_times.len() as u64;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
        self.update(|statistics| {
            // Instances finish out of order: keep the latest.
            statistics.last_inference = statistics.last_inference.max(now_ms);
            statistics.inference_count += batch_size;
            statistics.execution_count += 1;
            let batch = statistics.batch_stats.entry(batch_size).or_default();
            batch.compute_input.add(1, times.input);
            batch.compute_infer.add(1, times.infer);
            batch.compute_output.add(1, times.output);
            let stats = &mut statistics.inference_stats;
            queue_times.iter().for_each(|&queued| stats.queue.add(1, queued));
            totals.iter().for_each(|&total| stats.success.add(1, total));
            stats.compute_input.add(requests, times.input * requests as u32);
            stats.compute_infer.add(requests, times.infer * requests as u32);
            stats.compute_output.add(requests, times.output * requests as u32);
        });
        self.observe(|latency| {
            let now = Instant::now();
            if let Some(summaries) = &mut latency.summaries {
                for (&queued, &total) in queue_times.iter().zip(totals) {
                    summaries.request.observe(whole_micros(total), now);
                    summaries.queue.observe(whole_micros(queued), now);
                    summaries.compute_input.observe(whole_micros(times.input), now);
                    summaries.compute_infer.observe(whole_micros(times.infer), now);
                    summaries.compute_output.observe(whole_micros(times.output), now);
                }
            }
            totals.iter().for_each(|&total| latency.observe_response(total));
        });
    }

    /// Records a request answered from the response cache: `total` from
    /// its arrival to its answer, `lookup` of it finding the answer. As in
    /// Triton, it counts as a success with no queue time, and not as an
    /// inference or execution.
    pub fn record_cache_hit(&self, total: Duration, lookup: Duration) {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
        self.update(|statistics| {
            statistics.last_inference = statistics.last_inference.max(now_ms);
            let stats = &mut statistics.inference_stats;
            stats.success.add(1, total);
            stats.queue.add(1, Duration::ZERO);
            stats.cache_hit.add(1, lookup);
        });
        self.observe(|latency| {
            if let Some(summaries) = &mut latency.summaries {
                let now = Instant::now();
                summaries.queue.observe(0, now);
                summaries.cache_hit.observe(whole_micros(lookup), now);
            }
            latency.observe_response(total);
        });
    }

    /// Records a successful request that missed the response cache and
    /// spent `elapsed` looking there and storing its answer; that time is
    /// added to its success time too, which its execution recorded
    /// without it, as Triton does.
    pub fn record_cache_miss(&self, elapsed: Duration) {
        self.update(|statistics| {
            let stats = &mut statistics.inference_stats;
            stats.success.add(0, elapsed);
            stats.cache_miss.add(1, elapsed);
        });
        self.observe(|latency| {
            if let Some(summaries) = &mut latency.summaries {
                summaries.cache_miss.observe(whole_micros(elapsed), Instant::now());
            }
        });
    }

    /// Records a request that failed for `reason` after `elapsed`.
    pub fn record_failure(&self, elapsed: Duration, reason: FailureReason) {
        self.update(|statistics| {
            statistics.inference_stats.fail.add(1, elapsed);
            let failures = &mut statistics.failures;
            match reason {
                FailureReason::Rejected => failures.rejected += 1,
                FailureReason::Canceled => failures.canceled += 1,
                FailureReason::Backend => failures.backend += 1,
                FailureReason::Other => failures.other += 1,
            }
        });
    }

    /// The statistics so far.
    pub fn snapshot(&self) -> ModelStatistics {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_once_per_execution_and_once_per_item() {
        let recorder = StatisticsRecorder::new("m", 1);
        let ms = Duration::from_millis;
        let times = ExecutionTimes { input: ms(1), infer: ms(10), output: ms(2) };
        recorder.record_execution(5, times, &[ms(3), ms(4)], &[ms(20), ms(21)]);
        recorder.record_execution(1, times, &[ms(0)], &[ms(13)]);
        recorder.record_failure(ms(7), FailureReason::Backend);
        recorder.record_failure(ms(1), FailureReason::Canceled);
        let snapshot = recorder.snapshot();
        assert_eq!(snapshot.inference_count, 6);
        assert_eq!(snapshot.execution_count, 2);
        assert!(snapshot.last_inference > 0);
        let stats = snapshot.inference_stats;
        assert_eq!(stats.success, Duration64 { count: 3, ns: 54_000_000 });
        assert_eq!(stats.queue, Duration64 { count: 3, ns: 7_000_000 });
        assert_eq!(stats.compute_infer, Duration64 { count: 3, ns: 30_000_000 });
        assert_eq!(stats.fail, Duration64 { count: 2, ns: 8_000_000 });
        assert_eq!(snapshot.failures, FailureCounts { rejected: 0, canceled: 1, backend: 1, other: 0 });
        assert_eq!(snapshot.batch_stats[&5].compute_infer, Duration64 { count: 1, ns: 10_000_000 });
        assert_eq!(snapshot.batch_stats.keys().copied().collect::<Vec<_>>(), vec![1, 5]);
    }

    #[test]
    fn latency_distributions_are_kept_only_when_asked_for() {
        let us = Duration::from_micros;
        let times = ExecutionTimes { input: us(1), infer: us(10), output: us(2) };
        let plain = StatisticsRecorder::new("m", 1);
        plain.record_execution(2, times, &[us(3), us(4)], &[us(20), us(21)]);
        assert!(plain.latency_snapshot().is_none());

        let observations = LatencyObservations { summaries: true, first_response_bounds: Some(vec![1.0, 10.0]) };
        let recorder = StatisticsRecorder::observing("m", 1, &observations);
        recorder.record_execution(2, times, &[us(3), us(4)], &[us(20), Duration::from_millis(5)]);
        recorder.record_cache_hit(us(6), us(5));
        recorder.record_cache_miss(us(7));
        let snapshot = recorder.latency_snapshot().unwrap();
        let summaries = snapshot.summaries.unwrap();
        assert_eq!((summaries.request.count, summaries.request.sum), (2, 5020));
        assert_eq!(summaries.request.quantile(0.5), Some(20.0));
        // A cache hit waits in no queue.
        assert_eq!((summaries.queue.count, summaries.queue.sum), (3, 7));
        assert_eq!((summaries.compute_infer.count, summaries.compute_infer.sum), (2, 20));
        assert_eq!((summaries.cache_hit.count, summaries.cache_miss.sum), (1, 7));
        // Two answers under a millisecond, one of 5 ms.
        let histogram = snapshot.first_response.unwrap();
        assert_eq!(histogram.cumulative(), vec![(Some(1.0), 2), (Some(10.0), 3), (None, 3)]);
    }

    #[test]
    fn cache_hits_are_successes_without_executions_and_misses_add_their_time() {
        let recorder = StatisticsRecorder::new("m", 1);
        let us = Duration::from_micros;
        let times = ExecutionTimes { input: us(1), infer: us(10), output: us(2) };
        recorder.record_execution(1, times, &[us(3)], &[us(20)]);
        recorder.record_cache_miss(us(4));
        recorder.record_cache_hit(us(6), us(5));
        recorder.record_cache_hit(us(7), us(5));
        let snapshot = recorder.snapshot();
        assert_eq!((snapshot.inference_count, snapshot.execution_count), (1, 1));
        assert!(snapshot.last_inference > 0);
        let stats = snapshot.inference_stats;
        assert_eq!(stats.success, Duration64 { count: 3, ns: 37_000 });
        assert_eq!(stats.queue, Duration64 { count: 3, ns: 3_000 });
        assert_eq!(stats.compute_infer, Duration64 { count: 1, ns: 10_000 });
        assert_eq!(stats.cache_hit, Duration64 { count: 2, ns: 10_000 });
        assert_eq!(stats.cache_miss, Duration64 { count: 1, ns: 4_000 });
    }
}
