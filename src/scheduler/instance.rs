//! The thread of one execution instance: it takes batches from the shared
//! queue as the batcher decides, runs them on its backend instance, and
//! answers each request.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::batch::{merge_inputs, split_outputs, union_of_outputs};
use super::batcher::{Decision, decide};
use super::queue::Pending;
use super::ragged::RaggedBatching;
use super::rate_limiter::Grant;
use super::spin::{BATCH_WAIT_SPIN, FILL_AHEAD_ROWS, FILL_POLL, INSTANCE_SPIN, spin_until};
use super::{Executed, SchedulerInstance, Shared, State};
use crate::backend::ModelInstance;
use crate::error::{Error, Result};
use crate::inference::BatchPosition;
use crate::statistics::{ExecutionTimes, FailureReason};
use crate::tensor::Tensor;
use crate::trace::Activity;
use crate::validation::ValidatedRequest;

/// Runs batches until the scheduler closes and the queue is empty.
pub(super) fn run(shared: &Shared, instance: SchedulerInstance) {
    let SchedulerInstance { name, backend: mut instance, rate_limit } = instance;
    let name = name.as_str();
    // The rate limiter's copies, taken once a batch is due and given back
    // after it ran.
    let mut grant: Option<Grant<'_>> = None;
    let mut state = shared.lock();
    // After a batch of one request an idle instance may poll for the next
    // request for a moment before it sleeps, and one waiting for a batch to
    // fill polls through the last moments of the wait (see `spin`). After a
    // larger batch it does neither: the wake-up it would save is shared by
    // the many requests of the next batch, while the poll takes a core from
    // the frontend that is busy answering this one. Only once the next
    // batch lacks a few rows (`FILL_AHEAD_ROWS`) does it poll, for the
    // moments those take to arrive.
    let mut may_spin = true;
    // Whether the instance has just run a batch of several requests, whose
    // callers are likely to send their next requests at once.
    let mut more_expected = false;
    // Whether a poll for the last rows of an almost full batch saw no
    // request come; then the instance sleeps until the batch is complete.
    let mut fill_poll_expired = false;
    loop {
        let now = Instant::now();
        let late = state.queue.expire(now);
        if !late.is_empty() {
            drop(state);
            shared.reject_late(late);
            state = shared.lock();
            continue;
        }
        let decision = decide(&state.queue, &shared.policy, now, state.closing);
        if decision == Decision::Idle {
            fill_poll_expired = false;
        }
        if let (Decision::Dispatch(_), Some(limited), None) = (&decision, &rate_limit, &grant) {
            // Wait for the turn without the queue, then decide again: the
            // batch is what is queued when the turn comes.
            drop(state);
            grant = Some(limited.acquire());
            state = shared.lock();
            continue;
        }
        if !matches!(decision, Decision::Dispatch(_)) {
            // Nothing to run after all: the copies and the place in line
            // go to the others.
            drop(grant.take());
            if let Some(limited) = &rate_limit {
                limited.leave_line();
            }
        }
        match decision {
            Decision::Dispatch(count) => {
                let batch = state.queue.take_front(count);
                let more = !state.queue.is_empty() && state.sleeping_instances > 0;
                drop(state);
                if more {
                    // Another free instance may take what is left.
                    shared.work.notify_one();
                }
                may_spin = batch.len() == 1;
                more_expected = batch.len() > 1;
                fill_poll_expired = false;
                execute_batch(shared, name, instance.as_mut(), batch);
                state = shared.lock();
                if let Some(grant) = grant.take() {
                    grant.finished(!state.queue.is_empty());
                }
            }
            Decision::WaitUntil { send_by, missing } => {
                let until = state.queue.next_deadline().map_or(send_by, |deadline| deadline.min(send_by));
                let left = until.saturating_duration_since(now);
                if missing <= FILL_AHEAD_ROWS && !fill_poll_expired && !shared.spinner.swap(true, Ordering::AcqRel) {
                    // Almost full, whatever the last batch was: the next
                    // request may complete it.
                    let arrived;
                    (state, arrived) = poll_for_arrival(shared, state, left.min(FILL_POLL));
                    fill_poll_expired = !arrived;
                } else if may_spin && left <= BATCH_WAIT_SPIN && !shared.spinner.swap(true, Ordering::AcqRel) {
                    // Until the moment comes or a request arrives, which
                    // may complete the batch.
                    (state, _) = poll_for_arrival(shared, state, left);
                } else if may_spin && left > BATCH_WAIT_SPIN {
                    state = sleep(shared, state, Some(left - BATCH_WAIT_SPIN));
                } else {
                    state = sleep(shared, state, Some(left));
                }
            }
            Decision::Idle if state.closing => return,
            Decision::Idle if may_spin && !shared.spinner.swap(true, Ordering::AcqRel) => {
                // Polling goes on through the batch that a request arriving
                // now starts; without one, the instance sleeps next time.
                (state, may_spin) = poll(shared, state, INSTANCE_SPIN, |state| !state.queue.is_empty());
            }
            Decision::Idle => {
                // Nothing is queued, so no request's timeout bounds the sleep.
                match shared.policy.batching_delay().filter(|_| more_expected && state.idle_alarm.is_none()) {
                    Some(delay) => {
                        // Waking by itself within the delay, the instance is
                        // never later than the batch that the next request
                        // starts may wait, so the callers need not wake it
                        // until their batch is complete: one wake-up per
                        // batch instead of two (the first request's). After
                        // a lone request it polls instead (above), for a
                        // latency that a sleep's wake-up would add to.
                        state.idle_alarm = Some(now + delay);
                        state = sleep(shared, state, Some(delay));
                        state.idle_alarm = None;
                    }
                    None => state = sleep(shared, state, None),
                }
                more_expected = false;
            }
        }
    }
}

/// Sleeps until signalled or until `wait` passes, counted in
/// `sleeping_instances` so that callers know whether to signal.
fn sleep<'a>(shared: &'a Shared, mut state: MutexGuard<'a, State>, wait: Option<Duration>) -> MutexGuard<'a, State> {
    state.sleeping_instances += 1;
    let mut state = match wait {
        Some(wait) => shared.work.wait_timeout(state, wait).unwrap_or_else(|poisoned| poisoned.into_inner()).0,
        None => shared.work.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner()),
    };
    state.sleeping_instances -= 1;
    state
}

/// Polls the queue without holding its lock until `changed` holds, the
/// scheduler closes or `limit` passes; returns the lock and whether it saw
/// a change. The caller has taken [`Shared::spinner`], which this releases.
fn poll<'a>(
    shared: &'a Shared,
    state: MutexGuard<'a, State>,
    limit: Duration,
    changed: impl Fn(&State) -> bool,
) -> (MutexGuard<'a, State>, bool) {
    drop(state);
    let seen = spin_until(limit, || shared.state.try_lock().is_ok_and(|state| changed(&state) || state.closing));
    shared.spinner.store(false, Ordering::Release);
    (shared.lock(), seen)
}

/// [`poll`]s until a request joins the queue: whether one did.
fn poll_for_arrival<'a>(
    shared: &'a Shared,
    state: MutexGuard<'a, State>,
    limit: Duration,
) -> (MutexGuard<'a, State>, bool) {
    let queued = state.queue.len();
    poll(shared, state, limit, |state| state.queue.len() != queued)
}

fn execute_batch(shared: &Shared, name: &str, instance: &mut dyn ModelInstance, batch: Vec<Pending>) {
    let started = Instant::now();
    // Requests whose callers left while they waited are not run.
    let (live, gone): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|pending| !pending.reply.is_closed());
    for pending in gone {
        tracing::debug!(instance = name, "dropping a request whose client went away");
        shared.answer_unrun(pending, Error::unavailable("the request was cancelled"), FailureReason::Canceled);
    }
    if live.is_empty() {
        return;
    }
    let requests: Vec<&ValidatedRequest> = live.iter().map(|pending| &pending.request).collect();
    let mut times = ExecutionTimes::default();
    let ragged = &shared.policy.ragged;
    let outcome = catch_unwind(AssertUnwindSafe(|| run_batch(instance, &requests, ragged, &mut times)))
        .unwrap_or_else(|_| Err(Error::internal(format!("instance '{name}' panicked while executing a batch"))));
    let finished = Instant::now();
    match outcome {
        Ok(shares) => {
            let batch_size = requests.iter().map(|request| request.batch_size as u64).sum();
            let queued: Vec<_> =
                live.iter().map(|pending| started.saturating_duration_since(pending.arrived)).collect();
            let totals: Vec<_> =
                live.iter().map(|pending| finished.saturating_duration_since(pending.arrived)).collect();
            shared.statistics.record_execution(batch_size, times, &queued, &totals);
            stamp_compute(&live, started, &times, finished);
            shared.recent_execution.record(times.input + times.infer + times.output);
            let answers = live.len();
            let replies = live.into_iter().zip(shares).enumerate().map(|(index, (pending, outputs))| {
                let position = BatchPosition { index, answers };
                (pending.sequence, pending.reply, Ok(Executed { outputs, position, times }))
            });
            shared.responder.respond_batch(replies.collect());
        }
        Err(error) => {
            // Say which model and instance failed, to the clients and in the
            // log: a backend's own message rarely names them.
            let error = Error::new(error.kind(), format!("{} (instance '{name}'): {}", shared.label, error.message()));
            tracing::warn!(instance = name, requests = live.len(), "a batch failed: {}", error.message());
            let replies = live.into_iter().map(|pending| {
                shared
                    .statistics
                    .record_failure(finished.saturating_duration_since(pending.arrived), FailureReason::Backend);
                (pending.sequence, pending.reply, Err(error.clone()))
            });
            shared.responder.respond_batch(replies.collect());
        }
    }
}

/// Stamps the batch's compute moments on the traced requests in it; the
/// phases ran back to back, so their durations place the moments between.
fn stamp_compute(batch: &[Pending], started: Instant, times: &ExecutionTimes, finished: Instant) {
    let input_end = started + times.input;
    for trace in batch.iter().filter_map(|pending| pending.trace.as_ref()) {
        trace.stamp_at(Activity::ComputeStart, started);
        trace.stamp_at(Activity::ComputeInputEnd, input_end);
        trace.stamp_at(Activity::ComputeOutputStart, input_end + times.infer);
        trace.stamp_at(Activity::ComputeEnd, finished);
    }
}

fn run_batch(
    instance: &mut dyn ModelInstance,
    requests: &[&ValidatedRequest],
    ragged: &RaggedBatching,
    times: &mut ExecutionTimes,
) -> Result<Vec<Vec<Tensor>>> {
    let merging = Instant::now();
    let inputs = merge_inputs(requests, ragged)?;
    let outputs = union_of_outputs(requests);
    times.input += merging.elapsed();
    let produced = instance.execute(&inputs, &outputs, times)?;
    let splitting = Instant::now();
    let shares = split_outputs(produced, requests, ragged);
    times.output += splitting.elapsed();
    shares
}
