//! Pacing the answers of one batch so that an HTTP/2 connection writes them
//! a few per socket write.
//!
//! When a batch finishes, its answers reach the frontend together, and each
//! request's task hands its response to the connection's task, which writes
//! whatever is queued when it next runs. Left alone, the connection task
//! runs after every answer: one socket write per answer, which on loopback
//! also runs the client's side of TCP, and is about a third of the
//! frontend's cost per request under load. Written all in one go, the
//! client gets nothing until the last answer is encoded, and a closed-loop
//! client then sends its next requests in one burst while the frontend
//! idles: the two stop overlapping, and that costs more than the writes
//! saved. In between, the answers go out a few at a time.
//!
//! The pacing works through the order in which a single-threaded tokio
//! runtime runs tasks: a task that yields runs again only after the tasks
//! queued before it, among them the connection task that the answers
//! handed over before it woke. So an answer waits one more yield for each
//! group of [`ANSWERS_PER_WRITE`] answers ahead of it in its batch (larger
//! groups for batches of more than [`MAX_WRITES`] groups, so that the
//! last answer of a large batch does not wait many rounds), and each round
//! of yields ends with the connection writing one group. A
//! multi-threaded runtime runs the task a response wakes next on the same
//! thread (its "LIFO slot"), which undoes the grouping, so there the
//! answers are not held at all.

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::inference::BatchPosition;

/// How many answers of a batch one write carries. With fewer, the writes
/// cost more; with more, the client waits longer for the first answers of
/// a batch. Of 2, 4, 6, 8, 11, 16 and 32, the benchmark's W2 at
/// concurrency 32 on 2 cores ran fastest and steadiest with 6 and 11
/// (BENCHMARKS.md).
pub const ANSWERS_PER_WRITE: usize = 6;

/// How many writes a batch's answers take at most; beyond
/// `ANSWERS_PER_WRITE * MAX_WRITES` answers, the groups grow instead. Every
/// write is a round of the runtime that the last answers wait through.
pub const MAX_WRITES: usize = 6;

/// Whether answers are paced on the runtime the service runs on.
#[derive(Debug, Clone, Copy)]
pub struct AnswerPacing {
    enabled: bool,
}

impl AnswerPacing {
    /// Paces answers when called on a single-threaded runtime; elsewhere
    /// (or outside a runtime) answers go out as they come.
    pub fn for_current_runtime() -> Self {
        let enabled = Handle::try_current().is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::CurrentThread);
        Self { enabled }
    }

    /// Waits until the answer at `position` is due: at once for the only
    /// answer of an execution, otherwise after one yield per group of
    /// answers ahead of it, plus one that lets the whole batch reach the
    /// frontend first.
    pub async fn wait_turn(self, position: BatchPosition) {
        if !self.enabled {
            return;
        }
        for _ in 0..yields_before(position) {
            tokio::task::yield_now().await;
        }
    }
}

/// How many times the answer at `position` yields before it goes.
fn yields_before(position: BatchPosition) -> usize {
    if position.answers <= 1 {
        return 0;
    }
    let group = ANSWERS_PER_WRITE.max(position.answers.div_ceil(MAX_WRITES));
    1 + position.index / group
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::{Notify, oneshot};

    use super::*;

    /// How many answers each run of a stand-in connection task found
    /// queued, when `answers` answers of one batch arrive together from
    /// another thread, as they do from an instance, and each is handed to
    /// the connection once `pacing` lets it go.
    async fn answers_per_write(pacing: AnswerPacing, answers: usize) -> Vec<usize> {
        let handed = Arc::new(Mutex::new(0));
        let wake_connection = Arc::new(Notify::new());
        let writes = Arc::new(Mutex::new(Vec::new()));
        let connection = tokio::spawn({
            let (handed, wake_connection, writes) = (handed.clone(), wake_connection.clone(), writes.clone());
            async move {
                let mut written = 0;
                while written < answers {
                    wake_connection.notified().await;
                    // A wake-up that finds nothing queued (left over from
                    // an answer the previous run took) writes nothing.
                    let queued = std::mem::take(&mut *handed.lock().unwrap());
                    if queued > 0 {
                        written += queued;
                        writes.lock().unwrap().push(queued);
                    }
                }
            }
        });
        let mut replies = Vec::new();
        let mut callers = Vec::new();
        for index in 0..answers {
            let (reply, answer) = oneshot::channel::<()>();
            replies.push(reply);
            let (handed, wake_connection) = (handed.clone(), wake_connection.clone());
            callers.push(tokio::spawn(async move {
                answer.await.unwrap();
                pacing.wait_turn(BatchPosition { index, answers }).await;
                *handed.lock().unwrap() += 1;
                wake_connection.notify_one();
            }));
        }
        // Let every task reach its wait, then answer them all from another
        // thread while this runtime's thread waits, so that all answers are
        // there before any caller runs.
        tokio::task::yield_now().await;
        std::thread::spawn(move || replies.into_iter().for_each(|reply| reply.send(()).unwrap())).join().unwrap();
        for caller in callers {
            caller.await.unwrap();
        }
        connection.await.unwrap();
        Arc::try_unwrap(writes).unwrap().into_inner().unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_goes_out_a_few_answers_per_write() {
        let pacing = AnswerPacing::for_current_runtime();
        assert_eq!(answers_per_write(pacing, 32).await, [6, 6, 6, 6, 6, 2]);
        assert_eq!(answers_per_write(pacing, 8).await, [6, 2]);
        // Unpaced, the connection runs after each answer.
        assert_eq!(answers_per_write(AnswerPacing { enabled: false }, 4).await, [1, 1, 1, 1]);
    }

    #[test]
    fn a_large_batch_takes_no_more_rounds_with_more_answers_in_each() {
        let yields = |index, answers| yields_before(BatchPosition { index, answers });
        assert_eq!((yields(0, 32), yields(5, 32), yields(6, 32), yields(31, 32)), (1, 1, 2, 6));
        assert_eq!((yields(10, 64), yields(11, 64), yields(63, 64)), (1, 2, 6));
        assert_eq!((yields(0, 1), yields(0, 2), yields(1, 2)), (0, 1, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_are_not_held_on_a_multi_threaded_runtime() {
        let pacing = AnswerPacing::for_current_runtime();
        let due = pacing.wait_turn(BatchPosition { index: 31, answers: 32 });
        assert!(futures::FutureExt::now_or_never(due).is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_only_answer_of_an_execution_is_not_held() {
        let pacing = AnswerPacing::for_current_runtime();
        assert!(futures::FutureExt::now_or_never(pacing.wait_turn(BatchPosition::ALONE)).is_some());
        assert!(futures::FutureExt::now_or_never(pacing.wait_turn(BatchPosition { index: 0, answers: 2 })).is_none());
    }
}
