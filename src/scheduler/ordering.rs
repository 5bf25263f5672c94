//! Delivering answers: straight to each waiting caller, or, with
//! `preserve_ordering`, held back until every earlier request has been
//! answered so callers see answers in arrival order. As in Triton, only
//! requests that run keep that order: one that leaves the queue without
//! running (refused, timed out, cancelled) is answered at once.
//!
//! A batch's answers reach its callers through one task on their async
//! runtime. Sent from an instance thread, each answer would wake its
//! caller's task from outside the runtime, and a single-threaded tokio
//! runtime is woken by a write to its eventfd for every such wake: a
//! system call per answer on the instance thread, and as many wake-ups
//! for the frontend. One task spawned for the batch costs one wake-up,
//! and it wakes the callers from inside (BENCHMARKS.md, "Nineteenth run").

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use tokio::runtime::Handle;

use super::{Executed, Reply};
use crate::error::Result;

/// A finished answer and where it goes.
type Answer = (Reply, Result<Executed>);

/// Hands answers to callers.
#[derive(Debug)]
pub struct Responder {
    /// Finished answers waiting for earlier ones, with `preserve_ordering`.
    order: Option<Mutex<ReorderBuffer>>,
    /// The runtime the callers wait on, learnt from the first of them.
    runtime: OnceLock<Handle>,
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
    /// when it was answered already) and moves every answer whose
    /// predecessors have all been released to `released`.
    fn settle(&mut self, sequence: u64, answer: Option<Answer>, released: &mut Vec<Answer>) {
        self.ready.insert(sequence, answer);
        while let Some(entry) = self.ready.remove(&self.next) {
            released.extend(entry);
            self.next += 1;
        }
    }
}

impl Responder {
    /// A responder that keeps arrival order when `preserve_ordering` is set.
    pub fn new(preserve_ordering: bool) -> Self {
        let order = preserve_ordering.then(|| Mutex::new(ReorderBuffer::default()));
        Self { order, runtime: OnceLock::new() }
    }

    /// Whether answers keep the arrival order.
    pub fn keeps_order(&self) -> bool {
        self.order.is_some()
    }

    /// Notes the async runtime of the calling task, the one callers wait
    /// on; the first caller's is kept.
    pub fn note_runtime(&self) {
        if self.runtime.get().is_none()
            && let Ok(runtime) = Handle::try_current()
        {
            let _ = self.runtime.set(runtime);
        }
    }

    /// Answers the request with `sequence`, a request that ran. Every
    /// sequence number handed out must be answered exactly once, by this,
    /// [`Responder::respond_batch`] or [`Responder::respond_now`], or later
    /// answers would wait forever.
    pub fn respond(&self, sequence: u64, reply: Reply, outcome: Result<Executed>) {
        self.respond_batch(vec![(sequence, reply, outcome)]);
    }

    /// Answers the requests of one batch, as [`Responder::respond`] does
    /// each, waking the callers' runtime once for all of them.
    pub fn respond_batch(&self, answers: Vec<(u64, Reply, Result<Executed>)>) {
        let released = match &self.order {
            None => answers.into_iter().map(|(_, reply, outcome)| (reply, outcome)).collect(),
            Some(buffer) => {
                let mut released = Vec::with_capacity(answers.len());
                let mut buffer = lock(buffer);
                for (sequence, reply, outcome) in answers {
                    buffer.settle(sequence, Some((reply, outcome)), &mut released);
                }
                released
            }
        };
        self.deliver(released);
    }

    /// Answers the request with `sequence` at once, whatever the order:
    /// for a request that leaves the queue without running. It still
    /// counts as answered, so later answers do not wait for it.
    pub fn respond_now(&self, sequence: u64, reply: Reply, outcome: Result<Executed>) {
        // The caller may have gone away; then nobody needs the answer.
        drop(reply.send(outcome));
        if let Some(buffer) = &self.order {
            let mut released = Vec::new();
            lock(buffer).settle(sequence, None, &mut released);
            self.deliver(released);
        }
    }

    /// Sends `answers`: a lone one directly, since it costs one wake-up
    /// either way, and several through one task on the callers' runtime.
    /// If that runtime is shutting down, the task is dropped with the
    /// answers, and their callers learn that no answer will come.
    fn deliver(&self, answers: Vec<Answer>) {
        match self.runtime.get() {
            Some(runtime) if answers.len() > 1 => drop(runtime.spawn(async move { send_all(answers) })),
            _ => send_all(answers),
        }
    }
}

fn send_all(answers: Vec<Answer>) {
    for (reply, outcome) in answers {
        // The caller may have gone away; then nobody needs the answer.
        drop(reply.send(outcome));
    }
}

fn lock(buffer: &Mutex<ReorderBuffer>) -> MutexGuard<'_, ReorderBuffer> {
    // Settling is short and panic-free, so a poisoned lock still guards a
    // consistent buffer.
    buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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

    /// Answers a batch of requests 0, 1 and 2 from a thread outside the
    /// runtime, as an instance thread does.
    fn answer_batch_from_a_thread(responder: &Arc<Responder>, replies: [Reply; 3]) {
        let responder = Arc::clone(responder);
        let answers = replies.into_iter().enumerate().map(|(sequence, reply)| (sequence as u64, reply, ran()));
        let answers: Vec<_> = answers.collect();
        std::thread::spawn(move || responder.respond_batch(answers)).join().unwrap();
    }

    #[tokio::test]
    async fn a_batch_reaches_its_callers_through_their_runtime() {
        for preserve_ordering in [false, true] {
            let responder = Arc::new(Responder::new(preserve_ordering));
            responder.note_runtime();
            let (replies, receivers) = three_replies();
            answer_batch_from_a_thread(&responder, replies);
            for receiver in receivers {
                assert!(receiver.await.unwrap().is_ok());
            }
        }
    }

    #[test]
    fn answers_for_a_runtime_that_is_gone_tell_their_callers_so() {
        let responder = Arc::new(Responder::new(false));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async { responder.note_runtime() });
        drop(runtime);
        let (replies, receivers) = three_replies();
        answer_batch_from_a_thread(&responder, replies);
        for mut receiver in receivers {
            assert_eq!(receiver.try_recv().unwrap_err(), oneshot::error::TryRecvError::Closed);
        }
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
