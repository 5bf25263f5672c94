//! The waiting requests of one model version: a FIFO queue per priority
//! level, each with its size limit and timeout, plus the requests whose
//! timeout passed under the DELAY action, which go last.

use std::collections::VecDeque;
use std::time::Instant;

use tokio::sync::oneshot;

use super::policy::{QueuePolicy, TimeoutAction};
use crate::error::Result;
use crate::tensor::Tensor;
use crate::validation::ValidatedRequest;

/// A request waiting to run.
#[derive(Debug)]
pub struct Pending {
    /// The request.
    pub request: ValidatedRequest,
    /// Identifies it for cancellation.
    pub id: u64,
    /// Its position in arrival order at the scheduler.
    pub sequence: u64,
    /// When it reached the scheduler.
    pub arrived: Instant,
    /// When its queue timeout passes, if it has one.
    pub deadline: Option<Instant>,
    /// Where its outputs go.
    pub reply: oneshot::Sender<Result<Vec<Tensor>>>,
}

/// Why a request left the queue without running.
#[derive(Debug)]
pub enum Removal {
    /// Its timeout passed and its level rejects late requests.
    TimedOut(Pending),
}

/// The priority queues of one model version.
#[derive(Debug)]
pub struct RequestQueue {
    levels: Vec<VecDeque<Pending>>,
    policies: Vec<QueuePolicy>,
    delayed: VecDeque<Pending>,
}

impl RequestQueue {
    /// Empty queues with one policy per priority level (level 1 first).
    pub fn new(policies: Vec<QueuePolicy>) -> Self {
        Self { levels: policies.iter().map(|_| VecDeque::new()).collect(), policies, delayed: VecDeque::new() }
    }

    /// The policy of a 1-based level.
    pub fn policy(&self, level: usize) -> &QueuePolicy {
        &self.policies[level - 1]
    }

    /// Queues a request at a 1-based level, or gives it back when that
    /// level is full.
    pub fn push(&mut self, level: usize, pending: Pending) -> Result<(), Pending> {
        let policy = &self.policies[level - 1];
        let queue = &mut self.levels[level - 1];
        if policy.max_queue_size > 0 && queue.len() >= policy.max_queue_size {
            return Err(pending);
        }
        queue.push_back(pending);
        Ok(())
    }

    /// Handles requests whose timeout passed by `now`: REJECT levels hand
    /// them back, DELAY levels move them behind everything else.
    pub fn expire(&mut self, now: Instant) -> Vec<Removal> {
        let mut removed = Vec::new();
        for (queue, policy) in self.levels.iter_mut().zip(&self.policies) {
            if !queue.iter().any(|pending| pending.deadline.is_some_and(|deadline| deadline <= now)) {
                continue;
            }
            let (late, on_time): (VecDeque<Pending>, VecDeque<Pending>) =
                queue.drain(..).partition(|pending| pending.deadline.is_some_and(|deadline| deadline <= now));
            *queue = on_time;
            for mut pending in late {
                match policy.timeout_action {
                    TimeoutAction::Reject => removed.push(Removal::TimedOut(pending)),
                    TimeoutAction::Delay => {
                        pending.deadline = None;
                        self.delayed.push_back(pending);
                    }
                }
            }
        }
        removed
    }

    /// Removes the request with `id` (its client went away).
    pub fn cancel(&mut self, id: u64) -> Option<Pending> {
        for queue in self.levels.iter_mut().chain(std::iter::once(&mut self.delayed)) {
            if let Some(index) = queue.iter().position(|pending| pending.id == id) {
                return queue.remove(index);
            }
        }
        None
    }

    /// Waiting requests in the order they should run: level 1 first, each
    /// level oldest first, delayed requests last.
    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.levels.iter().flatten().chain(&self.delayed)
    }

    /// Takes the first `count` requests of [`RequestQueue::iter`]'s order.
    pub fn take_front(&mut self, mut count: usize) -> Vec<Pending> {
        let mut taken = Vec::with_capacity(count);
        for queue in self.levels.iter_mut().chain(std::iter::once(&mut self.delayed)) {
            while count > 0 {
                let Some(pending) = queue.pop_front() else { break };
                taken.push(pending);
                count -= 1;
            }
        }
        taken
    }

    /// The earliest timeout still to come.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.levels.iter().flatten().filter_map(|pending| pending.deadline).min()
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.levels.iter().map(|level| level.len()).sum::<usize>() + self.delayed.len()
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(max_queue_size: usize, action: TimeoutAction) -> QueuePolicy {
        QueuePolicy { max_queue_size, default_timeout: None, allow_timeout_override: false, timeout_action: action }
    }

    fn pending(sequence: u64, deadline: Option<Instant>) -> Pending {
        let (reply, _) = oneshot::channel();
        let request = ValidatedRequest { batch_size: 1, inputs: vec![], outputs: vec![] };
        Pending { request, id: sequence + 100, sequence, arrived: Instant::now(), deadline, reply }
    }

    fn order(queue: &RequestQueue) -> Vec<u64> {
        queue.iter().map(|pending| pending.sequence).collect()
    }

    #[test]
    fn higher_levels_come_first_and_full_levels_refuse() {
        let mut queue = RequestQueue::new(vec![policy(0, TimeoutAction::Reject), policy(2, TimeoutAction::Reject)]);
        queue.push(2, pending(1, None)).unwrap();
        queue.push(2, pending(2, None)).unwrap();
        assert_eq!(queue.push(2, pending(3, None)).unwrap_err().sequence, 3);
        queue.push(1, pending(4, None)).unwrap();
        assert_eq!(order(&queue), vec![4, 1, 2]);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.take_front(2).iter().map(|p| p.sequence).collect::<Vec<_>>(), vec![4, 1]);
        assert_eq!(order(&queue), vec![2]);
        assert_eq!(queue.cancel(102).map(|p| p.sequence), Some(2));
        assert!(queue.is_empty());
    }

    #[test]
    fn late_requests_are_rejected_or_delayed_by_level() {
        let now = Instant::now();
        let past = Some(now - Duration::from_millis(1));
        let future = Some(now + Duration::from_secs(60));
        let mut queue = RequestQueue::new(vec![policy(0, TimeoutAction::Delay), policy(0, TimeoutAction::Reject)]);
        queue.push(1, pending(1, past)).unwrap();
        queue.push(1, pending(2, future)).unwrap();
        queue.push(2, pending(3, past)).unwrap();
        queue.push(2, pending(4, None)).unwrap();
        assert_eq!(queue.next_deadline(), past);
        let removed = queue.expire(now);
        assert_eq!(removed.len(), 1);
        assert!(matches!(&removed[0], Removal::TimedOut(pending) if pending.sequence == 3));
        // The delayed request now waits behind everything else.
        assert_eq!(order(&queue), vec![2, 4, 1]);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.next_deadline(), future);
    }
}
