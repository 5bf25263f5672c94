//! Delivering answers: straight to each waiting caller, or, with
//! `preserve_ordering`, held back until every earlier request has been
//! answered so callers see answers in arrival order.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::error::Result;
use crate::tensor::Tensor;

type Reply = oneshot::Sender<Result<Vec<Tensor>>>;

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
    ready: BTreeMap<u64, (Reply, Result<Vec<Tensor>>)>,
}

impl Responder {
    /// A responder that keeps arrival order when `preserve_ordering` is set.
    pub fn new(preserve_ordering: bool) -> Self {
        if preserve_ordering { Self::Ordered(Mutex::new(ReorderBuffer::default())) } else { Self::Immediate }
    }

    /// Answers the request with `sequence`. Every sequence number handed
    /// out must be answered exactly once, even for requests that never ran,
    /// or later answers would wait forever.
    pub fn respond(&self, sequence: u64, reply: Reply, outcome: Result<Vec<Tensor>>) {
        let Self::Ordered(buffer) = self else {
            // The caller may have gone away; then nobody needs the answer.
            let _ = reply.send(outcome);
            return;
        };
        let mut buffer = buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buffer.ready.insert(sequence, (reply, outcome));
        let ReorderBuffer { next, ready } = &mut *buffer;
        while let Some((reply, outcome)) = ready.remove(next) {
            let _ = reply.send(outcome);
            *next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn ordered_answers_wait_for_earlier_ones() {
        let responder = Responder::new(true);
        let (replies, mut receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        let mut replies = replies.into_iter();
        let (first, second, third) = (replies.next().unwrap(), replies.next().unwrap(), replies.next().unwrap());
        responder.respond(2, third, Ok(vec![]));
        responder.respond(1, second, Err(Error::unavailable("timed out")));
        assert!(receivers[2].try_recv().is_err(), "answer 2 went out before answer 0");
        responder.respond(0, first, Ok(vec![]));
        assert!(receivers[0].try_recv().unwrap().is_ok());
        assert!(receivers[1].try_recv().unwrap().is_err());
        assert!(receivers[2].try_recv().unwrap().is_ok());
    }
}
