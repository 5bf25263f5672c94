//! Inference statistics per model version, with the fields and meanings of
//! Triton's statistics extension (which `perf_analyzer` reads to split
//! latency into queue and compute time).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The live statistics of one model version.
#[derive(Debug)]
pub struct StatisticsRecorder {
    inner: Mutex<ModelStatistics>,
}

impl StatisticsRecorder {
    /// Empty statistics for a model version.
    pub fn new(name: &str, version: i64) -> Self {
        Self { inner: Mutex::new(ModelStatistics { name: name.to_string(), version, ..Default::default() }) }
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
