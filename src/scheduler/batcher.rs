//! The dynamic batcher's decision: given the waiting requests, send a batch
//! now, wait until a moment for more requests, or do nothing.
//!
//! The rules are Triton's: requests are taken in queue order while their
//! non-batch shapes match and the batch stays within max_batch_size; a
//! batch that reaches a preferred size (the largest one reachable) goes at
//! once; otherwise it goes when it cannot grow any more, when the oldest
//! request has waited max_queue_delay, or at once when that delay is 0.

use std::time::Instant;

use super::policy::SchedulingPolicy;
use super::queue::RequestQueue;
use crate::validation::ValidatedRequest;

/// What the scheduler should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the first `n` waiting requests as one batch.
    Dispatch(usize),
    /// Wait for more requests until this moment, then decide again.
    WaitUntil(Instant),
    /// Nothing waits.
    Idle,
}

/// Whether two requests can share a batch: the same inputs with the same
/// shapes apart from the batch dimension.
pub fn compatible(a: &ValidatedRequest, b: &ValidatedRequest) -> bool {
    a.inputs.len() == b.inputs.len()
        && a.inputs.iter().zip(&b.inputs).all(|(x, y)| x.name == y.name && x.shape.get(1..) == y.shape.get(1..))
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
    let mut size = first.request.batch_size;
    let mut count = 1;
    let mut preferred_count = dynamic.preferred_batch_sizes.contains(&size).then_some(count);
    let mut can_grow = true;
    for pending in waiting {
        if !compatible(&first.request, &pending.request) || size + pending.request.batch_size > policy.max_batch_size {
            can_grow = false;
            break;
        }
        size += pending.request.batch_size;
        count += 1;
        if dynamic.preferred_batch_sizes.contains(&size) {
            preferred_count = Some(count);
        }
    }
    if size >= policy.max_batch_size {
        can_grow = false;
    }
    if let Some(count) = preferred_count {
        return Decision::Dispatch(count);
    }
    let send_by = first.arrived + dynamic.max_queue_delay;
    if closing || !can_grow || send_by <= now { Decision::Dispatch(count) } else { Decision::WaitUntil(send_by) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::oneshot;

    use super::*;
    use crate::scheduler::policy::{DynamicBatching, QueuePolicy, TimeoutAction};
    use crate::scheduler::queue::Pending;
    use crate::tensor::{DataType, Tensor};

    fn policy(max_batch_size: usize, preferred: &[usize], delay_ms: u64) -> SchedulingPolicy {
        SchedulingPolicy {
            max_batch_size,
            dynamic: Some(DynamicBatching {
                preferred_batch_sizes: preferred.to_vec(),
                max_queue_delay: Duration::from_millis(delay_ms),
                preserve_ordering: false,
            }),
            levels: vec![QueuePolicy {
                max_queue_size: 0,
                default_timeout: None,
                allow_timeout_override: false,
                timeout_action: TimeoutAction::Reject,
            }],
            default_level: 1,
        }
    }

    fn queue_of(requests: &[(usize, i64)], arrived: Instant) -> RequestQueue {
        let mut queue = RequestQueue::new(policy(1, &[], 0).levels);
        for (sequence, &(batch, width)) in requests.iter().enumerate() {
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
                    Pending { request, id: sequence as u64, sequence: sequence as u64, arrived, deadline: None, reply },
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
    fn a_small_batch_waits_up_to_the_delay() {
        let now = Instant::now();
        let queue = queue_of(&[(1, 4), (1, 4)], now);
        let waiting = policy(8, &[4], 2);
        assert_eq!(decide(&queue, &waiting, now, false), Decision::WaitUntil(now + Duration::from_millis(2)));
        assert_eq!(decide(&queue, &waiting, now + Duration::from_millis(2), false), Decision::Dispatch(2));
        assert_eq!(decide(&queue, &waiting, now, true), Decision::Dispatch(2));
        assert_eq!(decide(&queue, &policy(8, &[4], 0), now, false), Decision::Dispatch(2));
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
