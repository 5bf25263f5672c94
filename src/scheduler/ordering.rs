//! Delivering answers: straight to each waiting caller, or, with
//! `preserve_ordering`, held back until every earlier request has been
//! answered so callers see answers in arrival order. As in Triton, only
//! requests that run keep that order: one that leaves the queue without
//! running (refused, timed out, cancelled) is answered at once.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{Executed, Reply};
use crate::error::Result;

/// A finished answer and where it goes.
type Answer = (Reply, Result<Executed>);

/// Hands answers to callers.
#[derive(Debug)]
pub enum Responder {
    /// Each answer goes out as soon as it is ready.
    Immediate,
    /// Answers go out in sequence order.
    Ordered(Mutex<ReorderBuffer>),
}

/// Finished answers waiting for earlier ones.
#[derive(Debug, Default)]
pub struct ReorderBuffer {
    next: u64,
    /// By sequence number; `None` for a request already answered out of
    /// order, which later answers need not wait for.
    ready: BTreeMap<u64, Option<Answer>>,
}

impl ReorderBuffer {
    /// Records the request with `sequence` as finished (`answer` is `None`
    /// when it was answered already) and sends every answer whose
    /// predecessors have all been sent.
    fn settle(&mut self, sequence: u64, answer: Option<Answer>) {
        self.ready.insert(sequence, answer);
        while let Some(entry) = self.ready.remove(&self.next) {
            if let Some((reply, outcome)) = entry {
                let _ = reply.send(outcome);
            }
            self.next += 1;
        }
    }
}

impl Responder {
    /// A responder that keeps arrival order when `preserve_ordering` is set.
    pub fn new(preserve_ordering: bool) -> Self {
        if preserve_ordering { Self::Ordered(Mutex::new(ReorderBuffer::default())) } else { Self::Immediate }
    }

    /// Answers the request with `sequence`, a request that ran. Every
    /// sequence number handed out must be answered exactly once, by this or
    /// [`Responder::respond_now`], or later answers would wait forever.
    pub fn respond(&self, sequence: u64, reply: Reply, outcome: Result<Executed>) {
        match self {
            // The caller may have gone away; then nobody needs the answer.
            Self::Immediate => drop(reply.send(outcome)),
            Self::Ordered(buffer) => lock(buffer).settle(sequence, Some((reply, outcome))),
        }
    }

    /// Answers the request with `sequence` at once, whatever the order:
    /// for a request that leaves the queue without running. It still
    /// counts as answered, so later answers do not wait for it.
    pub fn respond_now(&self, sequence: u64, reply: Reply, outcome: Result<Executed>) {
        // The caller may have gone away; then nobody needs the answer.
        drop(reply.send(outcome));
        if let Self::Ordered(buffer) = self {
            lock(buffer).settle(sequence, None);
        }
    }
}

fn lock(buffer: &Mutex<ReorderBuffer>) -> MutexGuard<'_, ReorderBuffer> {
    // Settling is short and panic-free, so a poisoned lock still guards a
    // consistent buffer.
    buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::error::Error;
    use crate::inference::BatchPosition;

    type Answered = oneshot::Receiver<Result<Executed>>;

    fn ran() -> Result<Executed> {
        Ok(Executed { outputs: vec![], position: BatchPosition::ALONE, times: Default::default() })
    }

    /// Reply channels for requests 0, 1 and 2, and their receiving ends.
    fn three_replies() -> ([Reply; 3], [Answered; 3]) {
        let (first, second, third) = (oneshot::channel(), oneshot::channel(), oneshot::channel());
        ([first.0, second.0, third.0], [first.1, second.1, third.1])
    }

    #[test]
    fn ordered_answers_wait_for_earlier_ones() {
        let responder = Responder::new(true);
        let ([first, second, third], mut receivers) = three_replies();
        responder.respond(2, third, ran());
        responder.respond(1, second, Err(Error::internal("the model failed")));
        assert!(receivers[2].try_recv().is_err(), "answer 2 went out before answer 0");
        responder.respond(0, first, ran());
        assert!(receivers[0].try_recv().unwrap().is_ok());
        assert!(receivers[1].try_recv().unwrap().is_err());
        assert!(receivers[2].try_recv().unwrap().is_ok());
    }

    #[test]
    fn a_request_that_never_ran_is_answered_at_once_and_holds_nothing_back() {
        let responder = Responder::new(true);
        let ([first, second, third], mut receivers) = three_replies();
        responder.respond_now(1, second, Err(Error::unavailable("timed out")));
        assert!(receivers[1].try_recv().unwrap().is_err(), "the timed-out request waited for request 0");
        responder.respond(2, third, ran());
        assert!(receivers[2].try_recv().is_err(), "answer 2 went out before answer 0");
        responder.respond(0, first, ran());
        assert!(receivers[0].try_recv().unwrap().is_ok());
        assert!(receivers[2].try_recv().unwrap().is_ok());
    }
}
