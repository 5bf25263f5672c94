//! Triton's first-response histogram
//! (`--metrics-config histogram_latencies=true`): how long requests took
//! from arrival to their first (here: only) response, in milliseconds,
//! counted into buckets whose bounds the model's `model_metrics` may set.

/// Triton's default bucket bounds, in milliseconds.
pub const DEFAULT_BOUNDS: [f64; 4] = [100.0, 500.0, 2000.0, 5000.0];

/// Counts of responses by time to first response.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHistogram {
    bounds: Vec<f64>,
    /// Per bucket, the last one for values above every bound.
    counts: Vec<u64>,
    sum: u64,
}

impl ResponseHistogram {
    /// An empty histogram with these upper bounds (sorted here).
    pub fn new(mut bounds: Vec<f64>) -> Self {
        bounds.retain(|bound| bound.is_finite());
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len() + 1];
        Self { bounds, counts, sum: 0 }
    }

    /// Records a response after `millis` milliseconds.
    pub fn observe(&mut self, millis: u64) {
        let bucket = self.bounds.iter().position(|bound| millis as f64 <= *bound).unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum = self.sum.saturating_add(millis);
    }

    /// The cumulative counts as Prometheus reports them: for each bound,
    /// how many took at most that long, then `+Inf` with all of them.
    pub fn cumulative(&self) -> Vec<(Option<f64>, u64)> {
        let mut total = 0;
        let bounds = self.bounds.iter().map(|bound| Some(*bound)).chain([None]);
        bounds
            .zip(&self.counts)
            .map(|(bound, count)| {
                total += count;
                (bound, total)
            })
            .collect()
    }

    /// The sum of the values, in milliseconds.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// How many responses were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_counted_at_or_below_each_bound() {
        let mut histogram = ResponseHistogram::new(DEFAULT_BOUNDS.to_vec());
        for millis in [5, 100, 101, 499, 7000] {
            histogram.observe(millis);
        }
        let expected = vec![(Some(100.0), 2), (Some(500.0), 4), (Some(2000.0), 4), (Some(5000.0), 4), (None, 5)];
        assert_eq!(histogram.cumulative(), expected);
        assert_eq!((histogram.count(), histogram.sum()), (5, 7705));
        let unsorted = ResponseHistogram::new(vec![50.0, 10.0, 50.0]);
        assert_eq!(unsorted.cumulative(), vec![(Some(10.0), 0), (Some(50.0), 0), (None, 0)]);
    }
}
