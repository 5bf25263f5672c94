//! The waiting requests of one model version: a FIFO queue per priority
//! level, each with its size limit and timeout. A level whose timeout
//! action is DELAY keeps its late requests behind its other requests but
//! ahead of every lower level, as Triton documents it ("until all other
//! requests at the same (or higher) priority levels that have not reached
//! their timeouts are processed").

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::Reply;
use super::policy::{PriorityLevels, QueuePolicy, TimeoutAction};
use crate::error::Result;
use crate::trace::RequestTrace;
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
    pub reply: Reply,
    /// Its trace, when it was sampled for tracing.
    pub trace: Option<Arc<RequestTrace>>,
}

/// Why a request left the queue without running.
#[derive(Debug)]
pub enum Removal {
    /// Its timeout passed and its level rejects late requests.
    TimedOut(Pending),
}

/// The requests of one priority level.
#[derive(Debug, Default)]
struct Level {
    /// Requests within their timeout, oldest first.
    on_time: VecDeque<Pending>,
    /// Requests whose timeout passed under the DELAY action, oldest first.
    delayed: VecDeque<Pending>,
}

impl Level {
    fn len(&self) -> usize {
        self.on_time.len() + self.delayed.len()
    }

    /// Both queues in the order they run.
    fn queues_mut(&mut self) -> [&mut VecDeque<Pending>; 2] {
        [&mut self.on_time, &mut self.delayed]
    }
}

/// Levels kept once they are empty, so that their queues' buffers serve the
/// next requests instead of being freed and allocated again for every
/// request; past this many, empty levels are dropped, so that clients
/// naming ever new priorities cannot grow the queue.
const KEPT_LEVELS: usize = 8;

/// The priority queues of one model version. Only the levels requests use
/// are kept (see [`KEPT_LEVELS`]), in level order, since a configuration
/// may declare far more levels than requests ever use.
#[derive(Debug)]
pub struct RequestQueue {
    levels: BTreeMap<u64, Level>,
    policies: PriorityLevels,
}

impl RequestQueue {
    /// Empty queues under the given priority levels' policies.
    pub fn new(policies: PriorityLevels) -> Self {
        Self { levels: BTreeMap::new(), policies }
    }

    /// The policy of a 1-based level.
    pub fn policy(&self, level: u64) -> &QueuePolicy {
        self.policies.policy(level)
    }

    /// Queues a request at a 1-based level, or gives it back when that
    /// level is full (its delayed requests count, as in Triton).
    pub fn push(&mut self, level: u64, pending: Pending) -> Result<(), Pending> {
        let max_queue_size = self.policies.policy(level).max_queue_size;
        let queue = self.levels.entry(level).or_default();
        if max_queue_size > 0 && queue.len() >= max_queue_size {
            return Err(pending);
        }
        queue.on_time.push_back(pending);
        Ok(())
    }

    /// Handles requests whose timeout passed by `now`: REJECT levels hand
    /// them back, DELAY levels move them behind their other requests.
    pub fn expire(&mut self, now: Instant) -> Vec<Removal> {
        let mut removed = Vec::new();
        let is_late = |pending: &Pending| pending.deadline.is_some_and(|deadline| deadline <= now);
        for (&number, level) in &mut self.levels {
            if !level.on_time.iter().any(is_late) {
                continue;
            }
            let (late, on_time): (VecDeque<Pending>, VecDeque<Pending>) = level.on_time.drain(..).partition(is_late);
            level.on_time = on_time;
            for mut pending in late {
                match self.policies.policy(number).timeout_action {
                    TimeoutAction::Reject => removed.push(Removal::TimedOut(pending)),
                    TimeoutAction::Delay => {
                        pending.deadline = None;
                        level.delayed.push_back(pending);
                    }
                }
            }
        }
        self.drop_empty_levels();
        removed
    }

    /// Removes the request with `id` (its client went away).
    pub fn cancel(&mut self, id: u64) -> Option<Pending> {
        let cancelled = self.levels.values_mut().flat_map(Level::queues_mut).find_map(|queue| {
            let index = queue.iter().position(|pending| pending.id == id)?;
            queue.remove(index)
        });
        self.drop_empty_levels();
        cancelled
    }

    /// Waiting requests in the order they should run: level 1 first; in
    /// each level the requests within their timeout, oldest first, then
    /// its delayed ones.
    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.levels.values().flat_map(|level| level.on_time.iter().chain(&level.delayed))
    }

    /// Takes the first `count` requests of [`RequestQueue::iter`]'s order.
    pub fn take_front(&mut self, mut count: usize) -> Vec<Pending> {
        let mut taken = Vec::with_capacity(count);
        for queue in self.levels.values_mut().flat_map(Level::queues_mut) {
            while count > 0 {
                let Some(pending) = queue.pop_front() else { break };
                taken.push(pending);
                count -= 1;
            }
        }
        self.drop_empty_levels();
        taken
    }

    /// The earliest timeout still to come.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.levels.values().flat_map(|level| &level.on_time).filter_map(|pending| pending.deadline).min()
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.levels.values().map(Level::len).sum()
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.levels.values().all(|level| level.len() == 0)
    }

    fn drop_empty_levels(&mut self) {
        if self.levels.len() > KEPT_LEVELS {
            self.levels.retain(|_, level| level.len() > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    fn policy(max_queue_size: usize, action: TimeoutAction) -> QueuePolicy {
        QueuePolicy { max_queue_size, default_timeout: None, allow_timeout_override: false, timeout_action: action }
    }

    /// Levels 1, 2, ... with the given policies.
    fn levels(policies: &[QueuePolicy]) -> PriorityLevels {
        let own = policies.iter().enumerate().map(|(index, &policy)| (index as u64 + 1, policy)).collect();
        PriorityLevels::new(policies.len() as u64, QueuePolicy::UNBOUNDED, own)
    }

    fn pending(sequence: u64, deadline: Option<Instant>) -> Pending {
        let (reply, _) = oneshot::channel();
        let request = ValidatedRequest { batch_size: 1, inputs: vec![], outputs: vec![] };
        Pending { request, id: sequence + 100, sequence, arrived: Instant::now(), deadline, reply, trace: None }
    }

    fn order(queue: &RequestQueue) -> Vec<u64> {
        queue.iter().map(|pending| pending.sequence).collect()
    }

    #[test]
    fn higher_levels_come_first_and_full_levels_refuse() {
        let mut queue =
            RequestQueue::new(levels(&[policy(0, TimeoutAction::Reject), policy(2, TimeoutAction::Reject)]));
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
        let mut queue = RequestQueue::new(levels(&[policy(0, TimeoutAction::Delay), policy(0, TimeoutAction::Reject)]));
        queue.push(1, pending(1, past)).unwrap();
        queue.push(1, pending(2, future)).unwrap();
        queue.push(2, pending(3, past)).unwrap();
        queue.push(2, pending(4, None)).unwrap();
        assert_eq!(queue.next_deadline(), past);
        let removed = queue.expire(now);
        assert_eq!(removed.len(), 1);
        assert!(matches!(&removed[0], Removal::TimedOut(pending) if pending.sequence == 3));
        // The delayed request now waits behind its own level, ahead of
        // the lower one.
        assert_eq!(order(&queue), vec![2, 1, 4]);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.next_deadline(), future);
        assert_eq!(queue.take_front(2).iter().map(|p| p.sequence).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn delayed_requests_count_towards_their_levels_size_limit() {
        let now = Instant::now();
        let mut queue = RequestQueue::new(levels(&[policy(2, TimeoutAction::Delay)]));
        queue.push(1, pending(1, Some(now - Duration::from_millis(1)))).unwrap();
        queue.push(1, pending(2, None)).unwrap();
        assert!(queue.expire(now).is_empty());
        assert_eq!(queue.push(1, pending(3, None)).unwrap_err().sequence, 3);
        assert_eq!(queue.cancel(101).map(|p| p.sequence), Some(1));
        queue.push(1, pending(3, None)).unwrap();
        assert_eq!(order(&queue), vec![2, 3]);
    }

    #[test]
    fn only_levels_in_use_are_kept() {
        let mut queue = RequestQueue::new(PriorityLevels::new(
            u64::MAX,
            QueuePolicy::UNBOUNDED,
            BTreeMap::from([(u64::MAX, policy(1, TimeoutAction::Reject))]),
        ));
        queue.push(u64::MAX, pending(1, None)).unwrap();
        assert_eq!(queue.push(u64::MAX, pending(2, None)).unwrap_err().sequence, 2);
        queue.push(1 << 40, pending(3, None)).unwrap();
        queue.push(1, pending(4, None)).unwrap();
        assert_eq!(order(&queue), vec![4, 3, 1]);
        assert_eq!(queue.take_front(2).len(), 2);
        assert_eq!(queue.cancel(101).map(|p| p.sequence), Some(1));
        assert!(queue.is_empty());
        // A few empty levels stay for reuse; many do not.
        assert_eq!(queue.levels.len(), 3);
        for level in 0..100 {
            queue.push(level + 10, pending(level + 10, None)).unwrap();
            assert_eq!(queue.take_front(1).len(), 1);
        }
        assert!(queue.is_empty());
        assert!(queue.levels.len() <= KEPT_LEVELS + 1, "{} levels kept", queue.levels.len());
    }
}
