//! The dynamic batcher's decision: given the waiting requests, send a batch
//! now, wait until a moment for more requests, or do nothing.
//!
//! The rules are those of Triton's dynamic batcher: requests are taken in
//! queue order while their non-batch shapes match and the batch stays
//! within max_batch_size. Unless its oldest request has already waited
//! max_queue_delay, a batch that reaches a preferred size (the largest one
//! reachable) goes at once, and so does a batch that the next request
//! would grow past the largest preferred size without reaching one. Any
//! other batch goes when it cannot grow any more, when its oldest request
//! has waited max_queue_delay (then as large as max_batch_size allows), or
//! at once when that delay is 0. Without preferred sizes the largest
//! preferred size is max_batch_size, as in Triton, which fills in
//! `preferred_batch_size: [max_batch_size]`.

use std::time::Instant;

use super::policy::SchedulingPolicy;
use super::queue::RequestQueue;
use super::ragged::RaggedBatching;
use super::spin::FILL_AHEAD_ROWS;
use crate::validation::ValidatedRequest;

/// What the scheduler should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the first `n` waiting requests as one batch.
    Dispatch(usize),
    /// Wait for more requests until `send_by`, then decide again. The
    /// batch goes sooner once `missing` more rows (along the batch
    /// dimension) arrive, when it reaches the next preferred size, or
    /// max_batch_size without preferred sizes.
    WaitUntil { send_by: Instant, missing: usize },
    /// Nothing waits.
    Idle,
}

impl Decision {
    /// Whether the arrival of a request of `rows` rows, after which the
    /// batcher decided this, must wake an instance that sleeps waiting for
    /// the batch to fill: when the batch can go, and when that request
    /// brought it within [`FILL_AHEAD_ROWS`] rows of going, so that the
    /// instance polls for the last rows instead of waking after them.
    pub fn wakes_waiting_instance(self, rows: usize) -> bool {
        match self {
            Decision::Dispatch(_) => true,
            Decision::WaitUntil { missing, .. } => missing <= FILL_AHEAD_ROWS && missing + rows > FILL_AHEAD_ROWS,
            Decision::Idle => false,
        }
    }
}

/// Whether two requests can share a batch: the same inputs with the same
/// shapes apart from the batch dimension, except that ragged inputs may
/// differ in shape.
pub fn compatible(a: &ValidatedRequest, b: &ValidatedRequest, ragged: &RaggedBatching) -> bool {
    a.inputs.len() == b.inputs.len()
        && a.inputs
            .iter()
            .zip(&b.inputs)
            .all(|(x, y)| x.name == y.name && (x.shape.get(1..) == y.shape.get(1..) || ragged.is_ragged(&x.name)))
}

/// Decides what to do with `queue` at `now`. `closing` sends whatever
/// waits without waiting for more.
pub fn decide(queue: &RequestQueue, policy: &SchedulingPolicy, now: Instant, closing: bool) -> Decision {
    let mut waiting = queue.iter();
    let Some(first) = waiting.next() else {
        return Decision::Idle;
    };
    let Some(dynamic) = &policy.dynamic else {
        return Decision::Dispatch(1);
    };
    let is_preferred = |size: usize| dynamic.preferred_batch_sizes.contains(&size);
    let largest_preferred = dynamic.preferred_batch_sizes.iter().copied().max().unwrap_or(policy.max_batch_size);
    let mut size = first.request.batch_size;
    let mut count = 1;
    let mut oldest = first.arrived;
    // How many requests make the batch that goes at once, if one does.
    let mut at_once = is_preferred(size).then_some(count);
    let mut can_grow = true;
    for pending in waiting {
        let grown = size + pending.request.batch_size;
        if grown > largest_preferred && at_once.is_none() {
            // No preferred size lies ahead: this is as close as it gets.
            at_once = Some(count);
        }
        if grown > policy.max_batch_size || !compatible(&first.request, &pending.request, &policy.ragged) {
            can_grow = false;
            break;
        }
        size = grown;
        count += 1;
        oldest = oldest.min(pending.arrived);
        if is_preferred(size) {
            at_once = Some(count);
        }
    }
    let delay = dynamic.max_queue_delay;
    let send_by = oldest + delay;
    // Once the delay has passed, the batch goes as large as it can be.
    let delay_passed = !delay.is_zero() && send_by <= now;
    match at_once {
        Some(count) if !delay_passed => Decision::Dispatch(count),
        _ if closing || !can_grow || size >= largest_preferred || delay_passed || delay.is_zero() => {
            Decision::Dispatch(count)
        }
        _ => {
            let next_preferred =
                dynamic.preferred_batch_sizes.iter().copied().filter(|&preferred| preferred > size).min();
            Decision::WaitUntil { send_by, missing: next_preferred.unwrap_or(largest_preferred) - size }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::oneshot;

    use super::*;
    use crate::scheduler::policy::{DynamicBatching, PriorityLevels};
    use crate::scheduler::queue::Pending;
    use crate::tensor::{DataType, Tensor};

    fn policy(max_batch_size: usize, preferred: &[usize], delay_ms: u64) -> SchedulingPolicy {
        SchedulingPolicy {
            max_batch_size,
            dynamic: Some(DynamicBatching {
                preferred_batch_sizes: preferred.to_vec(),
                max_queue_delay: Duration::from_millis(delay_ms),
            }),
            preserve_ordering: false,
            levels: PriorityLevels::single(),
            default_level: 1,
            ragged: RaggedBatching::default(),
        }
    }

    fn queue_of(requests: &[(usize, i64)], arrived: Instant) -> RequestQueue {
        let arriving: Vec<_> = requests.iter().map(|&(batch, width)| (batch, width, arrived)).collect();
        queue_arriving(&arriving)
    }

    /// A queue of (batch size, width, arrival) requests, in that order.
    fn queue_arriving(requests: &[(usize, i64, Instant)]) -> RequestQueue {
        let mut queue = RequestQueue::new(policy(1, &[], 0).levels);
        for (sequence, &(batch, width, arrived)) in requests.iter().enumerate() {
            let tensor = Tensor {
                name: "x".into(),
                datatype: DataType::Fp32,
                shape: vec![batch as i64, width],
                data: Bytes::new(),
            };
            let request = ValidatedRequest { batch_size: batch, inputs: vec![tensor], outputs: vec!["y".into()] };
            let (reply, _) = oneshot::channel();
            queue
                .push(
                    1,
                    Pending {
                        request,
                        id: sequence as u64,
                        sequence: sequence as u64,
                        arrived,
                        deadline: None,
                        reply,
                        trace: None,
                    },
                )
                .unwrap();
        }
        queue
    }

    #[test]
    fn preferred_sizes_go_at_once_and_the_largest_reachable_wins() {
        let now = Instant::now();
        let ones = vec![(1, 4); 20];
        assert_eq!(decide(&queue_of(&ones, now), &policy(32, &[8, 16], 1000), now, false), Decision::Dispatch(16));
        assert_eq!(decide(&queue_of(&ones[..9], now), &policy(32, &[8, 16], 1000), now, false), Decision::Dispatch(8));
    }

    #[test]
    fn a_batch_the_next_request_would_grow_past_every_preferred_size_goes_at_once() {
        let now = Instant::now();
        // 3 + 3 = 6 is not preferred, and 9 would pass 8.
        let threes = queue_of(&[(3, 4), (3, 4), (3, 4)], now);
        assert_eq!(decide(&threes, &policy(32, &[4, 8], 1000), now, false), Decision::Dispatch(2));
        // A first request of 3 cannot reach 4 with another 3.
        assert_eq!(decide(&threes, &policy(32, &[4], 1000), now, false), Decision::Dispatch(1));
        // Alone, it waits for company that might still make 4.
        let alone = queue_of(&[(3, 4)], now);
        assert_eq!(
            decide(&alone, &policy(32, &[4], 1), now, false),
            Decision::WaitUntil { send_by: now + Duration::from_millis(1), missing: 1 }
        );
    }

    #[test]
    fn after_the_delay_the_batch_goes_as_large_as_max_batch_size_allows() {
        let now = Instant::now();
        let ones = vec![(1, 4); 20];
        let later = now + Duration::from_millis(2);
        assert_eq!(decide(&queue_of(&ones, now), &policy(32, &[8], 1), later, false), Decision::Dispatch(20));
        let threes = queue_of(&[(3, 4), (3, 4), (3, 4)], now);
        assert_eq!(decide(&threes, &policy(32, &[4, 8], 1), later, false), Decision::Dispatch(3));
    }

    #[test]
    fn the_delay_counts_from_the_oldest_request_in_the_batch() {
        let now = Instant::now();
        let earlier = now - Duration::from_millis(3);
        // A newer request ahead of an older one, as a higher priority puts it.
        let queue = queue_arriving(&[(1, 4, now), (1, 4, earlier)]);
        assert_eq!(decide(&queue, &policy(8, &[], 2), now, false), Decision::Dispatch(2));
        let queue = queue_arriving(&[(1, 4, now), (1, 4, now - Duration::from_millis(1))]);
        assert_eq!(
            decide(&queue, &policy(8, &[], 2), now, false),
            Decision::WaitUntil { send_by: now + Duration::from_millis(1), missing: 6 }
        );
    }

    #[test]
    fn batches_never_exceed_max_batch_size() {
        let now = Instant::now();
        let queue = queue_of(&[(3, 4), (3, 4), (3, 4)], now);
        assert_eq!(decide(&queue, &policy(8, &[], 1000), now, false), Decision::Dispatch(2));
        let full = queue_of(&[(4, 4), (4, 4), (1, 4)], now);
        assert_eq!(decide(&full, &policy(8, &[], 1000), now, false), Decision::Dispatch(2));
    }

    #[test]
    fn different_shapes_are_not_merged() {
        let now = Instant::now();
        let queue = queue_of(&[(1, 4), (1, 4), (1, 5), (1, 4)], now);
        assert_eq!(decide(&queue, &policy(8, &[], 1000), now, false), Decision::Dispatch(2));
    }

    #[test]
    fn ragged_inputs_merge_whatever_their_shapes() {
        let now = Instant::now();
        let queue = queue_of(&[(1, 4), (1, 5), (2, 1), (1, 4)], now);
        let config = crate::model_config::parse_text_format(
            r#"max_batch_size: 8 input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]"#,
        )
        .unwrap();
        let ragged = SchedulingPolicy { ragged: RaggedBatching::from_config(&config), ..policy(8, &[5], 1000) };
        assert_eq!(decide(&queue, &ragged, now, false), Decision::Dispatch(4));
    }

    #[test]
    fn a_small_batch_waits_up_to_the_delay() {
        let now = Instant::now();
        let queue = queue_of(&[(1, 4), (1, 4)], now);
        let waiting = policy(8, &[4], 2);
        assert_eq!(
            decide(&queue, &waiting, now, false),
            Decision::WaitUntil { send_by: now + Duration::from_millis(2), missing: 2 }
        );
        assert_eq!(decide(&queue, &waiting, now + Duration::from_millis(2), false), Decision::Dispatch(2));
        assert_eq!(decide(&queue, &waiting, now, true), Decision::Dispatch(2));
        assert_eq!(decide(&queue, &policy(8, &[4], 0), now, false), Decision::Dispatch(2));
    }

    #[test]
    fn a_waiting_batch_counts_the_rows_to_its_next_preferred_size() {
        let now = Instant::now();
        let missing = |rows: &[(usize, i64)], preferred: &[usize]| match decide(
            &queue_of(rows, now),
            &policy(16, preferred, 1000),
            now,
            false,
        ) {
            Decision::WaitUntil { missing, .. } => missing,
            other => panic!("{rows:?} with preferred sizes {preferred:?}: {other:?}"),
        };
        assert_eq!(missing(&[(1, 4), (1, 4)], &[4, 8]), 2);
        assert_eq!(missing(&[(2, 4), (3, 4)], &[4, 8]), 3);
        // Without preferred sizes the batch fills up to max_batch_size.
        assert_eq!(missing(&[(2, 4), (3, 4)], &[]), 11);
    }

    #[test]
    fn the_request_that_brings_a_batch_close_to_going_wakes_its_instance_once() {
        let waiting = |missing| Decision::WaitUntil { send_by: Instant::now(), missing };
        assert!(Decision::Dispatch(3).wakes_waiting_instance(1));
        assert!(!Decision::Idle.wakes_waiting_instance(1));
        // One row at a time: only the row that leaves FILL_AHEAD_ROWS missing.
        assert!(!waiting(FILL_AHEAD_ROWS + 1).wakes_waiting_instance(1));
        assert!(waiting(FILL_AHEAD_ROWS).wakes_waiting_instance(1));
        assert!(!waiting(FILL_AHEAD_ROWS - 1).wakes_waiting_instance(1));
        // A larger request that jumps into the range wakes it too.
        assert!(waiting(1).wakes_waiting_instance(FILL_AHEAD_ROWS));
    }

    #[test]
    fn without_dynamic_batching_requests_go_one_by_one() {
        let now = Instant::now();
        let mut single = policy(8, &[], 0);
        single.dynamic = None;
        assert_eq!(decide(&queue_of(&[(1, 4), (1, 4)], now), &single, now, false), Decision::Dispatch(1));
        assert_eq!(decide(&queue_of(&[], now), &single, now, false), Decision::Idle);
    }
}
