//! Per model version scheduling: a queue with priority levels and queue
//! policies, Triton's dynamic batcher, and the execution instances, each on
//! a thread of its own so that N instances run N batches at once and a slow
//! model never holds up another model's requests.
//!
//! Callers put requests into the queue and wake a sleeping instance thread
//! when the new request changes what it would decide; the
//! instance threads take batches from the queue as the batcher decides,
//! waiting (with a precise timed wait, polling its last moments when the
//! model is lightly loaded) when the batcher wants more requests, and
//! answer each request of a batch directly. A request thus crosses
//! threads twice: to an instance and back.

mod batch;
mod batcher;
mod instance;
mod ordering;
mod policy;
mod queue;
mod ragged;
mod rate_limiter;
mod spin;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use batch::merge_inputs;
pub use policy::{DynamicBatching, PriorityLevels, QueuePolicy, SchedulingPolicy, TimeoutAction};
pub use ragged::RaggedBatching;
pub use rate_limiter::{LimitedInstance, RateLimiter, ResourceLimit};

use self::batcher::decide;
use self::ordering::Responder;
use self::queue::{Pending, Removal, RequestQueue};
use self::spin::{CALLER_SPIN, CALLER_SPIN_BELOW, RecentDuration, poll_briefly};
use crate::backend::ModelInstance;
use crate::error::{Error, Result};
use crate::inference::{BatchPosition, ParameterValue, Parameters};
use crate::statistics::{ExecutionTimes, FailureReason, StatisticsRecorder};
use crate::tensor::Tensor;
use crate::trace::{Activity, RequestTrace};
use crate::validation::ValidatedRequest;

/// Scheduling options a request carries in its parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// `priority`: 1 is the highest level; 0 or none is the default level.
    pub priority: Option<u64>,
    /// `timeout`: how long the request may wait in the queue, in
    /// microseconds, where the queue policy allows requests to set it.
    pub timeout: Option<Duration>,
}

impl RequestOptions {
    /// Reads `priority` and `timeout` from request parameters.
    pub fn from_parameters(model: &str, parameters: &Parameters) -> Result<Self> {
        let unsigned = |key: &str| -> Result<Option<u64>> {
            match parameters.get(key) {
                None => Ok(None),
                Some(ParameterValue::Uint64(value)) => Ok(Some(*value)),
                Some(ParameterValue::Int64(value)) if *value >= 0 => Ok(Some(*value as u64)),
                Some(other) => Err(Error::invalid_argument(format!(
                    "model '{model}': the '{key}' parameter must be a non-negative integer, not {other}"
                ))),
            }
        };
        Ok(Self { priority: unsigned("priority")?, timeout: unsigned("timeout")?.map(Duration::from_micros) })
    }
}

/// What a request that ran gets back.
#[derive(Debug)]
pub struct Executed {
    /// Its outputs.
    pub outputs: Vec<Tensor>,
    /// Its place among the answers of its execution.
    pub position: BatchPosition,
    /// How long the phases of its execution took (the whole batch's); zero
    /// for an answer found without running.
    pub times: ExecutionTimes,
}

impl Executed {
    /// An answer found without running the model (a response cache hit):
    /// alone, and with no execution times.
    pub fn without_running(outputs: Vec<Tensor>) -> Self {
        Self { outputs, position: BatchPosition::ALONE, times: ExecutionTimes::default() }
    }
}

/// One execution instance that a scheduler feeds.
pub struct SchedulerInstance {
    /// Its name, `<group>_<n>`; its thread is named after it.
    pub name: String,
    /// The backend instance that runs its batches.
    pub backend: Box<dyn ModelInstance>,
    /// Its registration with the rate limiter, when the server limits rates
    /// and its group has a `rate_limiter`.
    pub rate_limit: Option<LimitedInstance>,
}

/// Where an instance sends a request's answer.
type Reply = oneshot::Sender<Result<Executed>>;

/// The queue state that callers and instance threads share.
struct State {
    queue: RequestQueue,
    next_sequence: u64,
    /// Set when the scheduler stops or is dropped: new requests are
    /// refused, and instances send what is queued without waiting for more,
    /// then end.
    closing: bool,
    /// Instances sleeping on [`Shared::work`]. Waking a thread is a system
    /// call and a context switch, so callers only signal when one sleeps
    /// and the new request changes what it would decide.
    sleeping_instances: usize,
    /// When an instance that has just run a batch and found the queue
    /// empty wakes by itself (see `instance::run`); a request arriving
    /// before then need not wake it if its batch may wait that long.
    idle_alarm: Option<Instant>,
}

/// Everything the callers and the instance threads of one model version
/// share.
struct Shared {
    label: String,
    policy: SchedulingPolicy,
    state: Mutex<State>,
    /// Signalled when there may be work for an instance.
    work: Condvar,
    responder: Responder,
    statistics: Arc<StatisticsRecorder>,
    /// Whether an idle instance is already polling the queue (one is
    /// enough; the others sleep).
    spinner: AtomicBool,
    /// How long recent executions took, to decide whether callers poll.
    recent_execution: RecentDuration,
}

impl State {
    /// Whether an idle instance wakes by itself before a batch started by
    /// a request arriving at `arrived` has waited as long as it may.
    fn idle_alarm_within(&self, arrived: Instant, policy: &SchedulingPolicy) -> bool {
        self.idle_alarm.zip(policy.batching_delay()).is_some_and(|(alarm, delay)| alarm <= arrived + delay)
    }

    /// The next request's place in the arrival order.
    fn take_sequence(&mut self) -> u64 {
        self.next_sequence += 1;
        self.next_sequence - 1
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only changed by short, panic-free sections, so a
        // poisoned lock still guards a consistent queue.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers a request that leaves the queue without running (timed out,
    /// or its client went away): at once, whatever the answer order, and
    /// counted as a failure, as Triton counts it.
    fn answer_unrun(&self, pending: Pending, error: Error, reason: FailureReason) {
        self.statistics.record_failure(pending.arrived.elapsed(), reason);
        self.responder.respond_now(pending.sequence, pending.reply, Err(error));
    }

    /// Answers requests that timed out in the queue.
    fn reject_late(&self, removals: Vec<Removal>) {
        for Removal::TimedOut(pending) in removals {
            // Triton's words first: clients match on them.
            let error = Error::unavailable(format!(
                "Request timeout expired: the request to {} waited {} µs in the queue",
                self.label,
                pending.arrived.elapsed().as_micros()
            ));
            self.answer_unrun(pending, error, FailureReason::Rejected);
        }
    }

    /// Applies the queue policies' timeouts to whatever is late by now.
    fn expire_late_requests(&self) {
        let removals = self.lock().queue.expire(Instant::now());
        self.reject_late(removals);
    }
}

/// The queue and instances of one loaded model version.
pub struct Scheduler {
    shared: Arc<Shared>,
    next_id: AtomicU64,
    /// The instance threads, until [`Scheduler::stop`] joins them.
    threads: Mutex<Vec<JoinHandle<()>>>,
    instance_count: usize,
}

impl Scheduler {
    /// Starts one thread per instance. `label` names the model version in
    /// thread names and messages.
    pub fn start(
        label: &str,
        policy: SchedulingPolicy,
        instances: Vec<SchedulerInstance>,
        statistics: Arc<StatisticsRecorder>,
    ) -> Result<Self> {
        let preserve_ordering = policy.preserve_ordering;
        let shared = Arc::new(Shared {
            label: label.to_string(),
            state: Mutex::new(State {
                queue: RequestQueue::new(policy.levels.clone()),
                next_sequence: 0,
                closing: false,
                sleeping_instances: 0,
                idle_alarm: None,
            }),
            policy,
            work: Condvar::new(),
            responder: Responder::new(preserve_ordering),
            statistics,
            spinner: AtomicBool::new(false),
            recent_execution: RecentDuration::default(),
        });
        // Built first, so that if a thread cannot be started, dropping it
        // ends the threads started before.
        let instance_count = instances.len();
        let scheduler = Self { shared, next_id: AtomicU64::new(0), threads: Mutex::new(Vec::new()), instance_count };
        for instance in instances {
            let shared = Arc::clone(&scheduler.shared);
            let thread = thread::Builder::new()
                .name(instance.name.clone())
                .spawn(move || instance::run(&shared, instance))
                .map_err(|error| Error::internal(format!("{label}: cannot start an instance thread: {error}")))?;
            scheduler.lock_threads().push(thread);
        }
        Ok(scheduler)
    }

    fn lock_threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops taking requests, lets the instances answer what is queued, and
    /// returns once every instance thread has ended and dropped its backend
    /// instance. The server calls it before the process exits: an instance
    /// thread still releasing its ONNX Runtime session (and its CUDA
    /// memory) while the process exits can crash it at the last moment.
    /// Blocks for as long as the batches in flight take.
    pub fn stop(&self) {
        self.close();
        let threads = std::mem::take(&mut *self.lock_threads());
        for thread in threads {
            // `instance::run` catches the backend's panics, so a thread
            // that panicked anyway is a scheduler bug: say so, and stop the
            // others all the same.
            if thread.join().is_err() {
                tracing::error!(scheduler = %self.shared.label, "an instance thread panicked");
            }
        }
    }

    /// How many instances it feeds.
    pub fn instance_count(&self) -> usize {
        self.instance_count
    }

    /// Requests waiting in the queue for an instance (Triton's
    /// `nv_inference_pending_request_count`); the ones in a running batch
    /// are no longer pending.
    pub fn pending_requests(&self) -> usize {
        self.shared.lock().queue.len()
    }

    fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
    }

    /// Queues a request and waits for its outputs. If the caller stops
    /// waiting (its client went away), the request leaves the queue and
    /// never runs. A traced request gets its queue and compute moments
    /// stamped.
    pub async fn execute(
        &self,
        request: ValidatedRequest,
        options: RequestOptions,
        trace: Option<Arc<RequestTrace>>,
    ) -> Result<Executed> {
        self.execute_since(request, options, trace, Instant::now()).await
    }

    /// [`Scheduler::execute`] for a request that has been waiting since
    /// `arrived` already (a sequence's request waits for its turn and a
    /// slot first): its queue time, its queue timeout and its trace's
    /// QUEUE_START count from then, as Triton counts a sequence batcher's.
    pub async fn execute_since(
        &self,
        request: ValidatedRequest,
        options: RequestOptions,
        trace: Option<Arc<RequestTrace>>,
        arrived: Instant,
    ) -> Result<Executed> {
        let shared = &self.shared;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let level = shared.policy.level_for(options.priority);
        if let Some(trace) = &trace {
            trace.stamp_at(Activity::QueueStart, arrived);
        }
        let deadline = shared.policy.levels.policy(level).timeout_for(options.timeout).map(|timeout| arrived + timeout);
        let (reply, mut answer) = oneshot::channel();
        shared.responder.note_runtime();
        let first_in_line;
        {
            let mut state = shared.lock();
            if state.closing {
                drop(state);
                return Err(Error::unavailable(format!("{}: the model is being unloaded", shared.label)));
            }
            let sequence = state.take_sequence();
            first_in_line = state.queue.is_empty();
            let rows = request.batch_size;
            let pending = Pending { request, id, sequence, arrived, deadline, reply, trace };
            match state.queue.push(level, pending) {
                Ok(()) => {
                    let wake = state.sleeping_instances > 0 && {
                        // A sleeping instance is either idle (the queue was
                        // empty) or waiting for a batch to fill until a moment
                        // that a later arrival cannot bring forward, unless
                        // it has its own time-out or completes the batch. An
                        // idle one that wakes by itself before this request's
                        // batch must go needs no signal either. The request
                        // that brings a batch within a few rows of going wakes
                        // it too, so that it polls for the last ones instead
                        // of taking a wake-up after them (`spin`).
                        (first_in_line && !state.idle_alarm_within(arrived, &shared.policy))
                            || deadline.is_some()
                            || decide(&state.queue, &shared.policy, arrived, state.closing).wakes_waiting_instance(rows)
                    };
                    drop(state);
                    if wake {
                        shared.work.notify_one();
                    }
                }
                Err(rejected) => {
                    let limit = state.queue.policy(level).max_queue_size;
                    drop(state);
                    // Triton's words first: clients match on them. Like
                    // Triton, a refusal at the door is not an inference
                    // failure in the statistics; it never entered the queue.
                    let error = Error::unavailable(format!(
                        "Exceeds maximum queue size: {limit} requests already wait for {} at priority level \
                         {level}; try again later",
                        shared.label
                    ));
                    shared.responder.respond_now(rejected.sequence, rejected.reply, Err(error));
                }
            }
        }
        // From here on, a caller that goes away takes its request out of
        // the queue.
        let cancel_on_drop = CancelOnDrop { id, shared, armed: true };
        // A fast model answers sooner than this task could be woken: poll
        // for the answer for a moment before sleeping, unless other requests
        // wait.
        let polled = if first_in_line && shared.recent_execution.get() < CALLER_SPIN_BELOW {
            poll_briefly(&mut answer, CALLER_SPIN).await
        } else {
            None
        };
        let outcome = match (polled, deadline) {
            (Some(outcome), _) => Ok(outcome),
            (None, None) => answer.await,
            (None, Some(deadline)) => match tokio::time::timeout_at(deadline.into(), &mut answer).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // Late: rejected or moved behind the others, as its level
                    // says; a request already running just finishes.
                    shared.expire_late_requests();
                    answer.await
                }
            },
        };
        cancel_on_drop.disarm();
        outcome.map_err(|_| Error::internal(format!("{}: the instance stopped before answering", shared.label)))?
    }

    /// Answers with outputs found without running the model (a response
    /// cache hit): at once, or with `preserve_ordering` once every request
    /// that arrived before has been answered, as Triton keeps the order of
    /// cached answers too.
    pub async fn answer_without_running(&self, outputs: Vec<Tensor>) -> Result<Executed> {
        let executed = Executed::without_running(outputs);
        if !self.shared.responder.keeps_order() {
            return Ok(executed);
        }
        let (reply, answer) = oneshot::channel();
        let sequence = self.shared.lock().take_sequence();
        self.shared.responder.respond(sequence, reply, Ok(executed));
        answer.await.map_err(|_| Error::internal(format!("{}: the answer was lost", self.shared.label)))?
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Instances send what is queued, then their threads end; without
        // waiting for them, since a drop may happen on an async task.
        self.close();
    }
}

/// Takes a request whose caller stopped waiting out of the queue.
struct CancelOnDrop<'a> {
    id: u64,
    shared: &'a Shared,
    armed: bool,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let cancelled = self.shared.lock().queue.cancel(self.id);
        if let Some(pending) = cancelled {
            tracing::debug!(scheduler = %self.shared.label, "dropped a request whose client went away");
            self.shared.answer_unrun(pending, Error::unavailable("the request was cancelled"), FailureReason::Canceled);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use bytes::Bytes;

    use super::spin::spin_until;
    use super::*;
    use crate::model_config::parse_text_format;
    use crate::tensor::DataType;

    /// Echoes its input after waiting at a barrier shared by all instances,
    /// so a test only finishes if the instances run at the same time.
    struct RendezvousInstance(Arc<Barrier>);

    impl ModelInstance for RendezvousInstance {
        fn execute(&mut self, inputs: &[Tensor], _: &[String], _: &mut ExecutionTimes) -> Result<Vec<Tensor>> {
            self.0.wait();
            Ok(vec![Tensor { name: "y".into(), ..inputs[0].clone() }])
        }
    }

    /// Echoes its input and records the batch sizes it was given.
    struct RecordingInstance(Arc<std::sync::Mutex<Vec<i64>>>, Duration);

    impl ModelInstance for RecordingInstance {
        fn execute(&mut self, inputs: &[Tensor], _: &[String], _: &mut ExecutionTimes) -> Result<Vec<Tensor>> {
            self.0.lock().unwrap().push(inputs[0].shape[0]);
            std::thread::sleep(self.1);
            Ok(vec![Tensor { name: "y".into(), ..inputs[0].clone() }])
        }
    }

    struct PanickingInstance;

    impl ModelInstance for PanickingInstance {
        fn execute(&mut self, _: &[Tensor], _: &[String], _: &mut ExecutionTimes) -> Result<Vec<Tensor>> {
            panic!("backend bug")
        }
    }

    fn request(value: u8) -> ValidatedRequest {
        let input =
            Tensor { name: "x".into(), datatype: DataType::Uint8, shape: vec![1, 1], data: Bytes::from(vec![value]) };
        ValidatedRequest { batch_size: 1, inputs: vec![input], outputs: vec!["y".into()] }
    }

    fn policy(text: &str) -> SchedulingPolicy {
        SchedulingPolicy::from_config(&parse_text_format(text).unwrap())
    }

    fn start(policy: SchedulingPolicy, instances: Vec<Box<dyn ModelInstance>>) -> (Scheduler, Arc<StatisticsRecorder>) {
        let statistics = Arc::new(StatisticsRecorder::new("m", 1));
        let named = instances
            .into_iter()
            .enumerate()
            .map(|(index, backend)| SchedulerInstance { name: format!("m_{index}"), backend, rate_limit: None })
            .collect();
        (Scheduler::start("model 'm' version 1", policy, named, Arc::clone(&statistics)).unwrap(), statistics)
    }

    /// A scheduler with one instance that records the size of each batch,
    /// batching up to `max_batch_size` with `delay` as its queue delay.
    fn recording_batcher(max_batch_size: usize, delay: Duration) -> (Scheduler, Arc<std::sync::Mutex<Vec<i64>>>) {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let instance = RecordingInstance(sizes.clone(), Duration::ZERO);
        let config = format!(
            "max_batch_size: {max_batch_size} dynamic_batching {{ max_queue_delay_microseconds: {} }}",
            delay.as_micros()
        );
        let (scheduler, _) = start(policy(&config), vec![Box::new(instance)]);
        (scheduler, sizes)
    }

    #[tokio::test]
    async fn instances_execute_in_parallel() {
        let barrier = Arc::new(Barrier::new(2));
        let instances: Vec<Box<dyn ModelInstance>> =
            (0..2).map(|_| Box::new(RendezvousInstance(barrier.clone())) as Box<dyn ModelInstance>).collect();
        let (scheduler, _) = start(policy("max_batch_size: 8"), instances);
        let options = RequestOptions::default();
        let both = async {
            tokio::join!(scheduler.execute(request(1), options, None), scheduler.execute(request(2), options, None))
        };
        let (first, second) = tokio::time::timeout(Duration::from_secs(10), both).await.expect("instances deadlocked");
        assert_eq!(first.unwrap().outputs[0].data[..], [1]);
        assert_eq!(second.unwrap().outputs[0].data[..], [2]);
    }

    #[tokio::test]
    async fn queued_requests_are_batched_and_answered_separately() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let instance = RecordingInstance(sizes.clone(), Duration::from_millis(200));
        let (scheduler, statistics) = start(policy("max_batch_size: 4 dynamic_batching { }"), vec![Box::new(instance)]);
        let scheduler = Arc::new(scheduler);
        let options = RequestOptions::default();
        // The first request occupies the instance; the next five queue up
        // behind it and go as a batch of 4 and a batch of 1.
        let first = tokio::spawn({
            let scheduler = Arc::clone(&scheduler);
            async move { scheduler.execute(request(0), options, None).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answers =
            futures::future::join_all((1..6).map(|value| scheduler.execute(request(value), options, None))).await;
        let first = first.await.unwrap().unwrap();
        assert_eq!((&first.outputs[0].data[..], first.position), (&[0][..], BatchPosition::ALONE));
        // Each answer knows its place in the batch that produced it.
        let positions = [(0, 4), (1, 4), (2, 4), (3, 4), (0, 1)];
        for ((value, answer), (index, answers)) in (1..6).zip(answers).zip(positions) {
            let answer = answer.unwrap();
            assert_eq!(answer.outputs[0].data[..], [value]);
            assert_eq!(answer.position, BatchPosition { index, answers });
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 4, 1]);
        let snapshot = statistics.snapshot();
        assert_eq!((snapshot.inference_count, snapshot.execution_count), (6, 3));
        assert_eq!(snapshot.batch_stats[&4].compute_infer.count, 1);
    }

    #[tokio::test]
    async fn a_batch_that_fills_up_goes_without_waiting_for_the_delay() {
        // The instance sleeps until the first request's 60 s delay ends
        // unless the request that completes the batch wakes it.
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let instance = RecordingInstance(sizes.clone(), Duration::ZERO);
        let (scheduler, _) = start(
            policy("max_batch_size: 4 dynamic_batching { max_queue_delay_microseconds: 60000000 }"),
            vec![Box::new(instance)],
        );
        let options = RequestOptions::default();
        let all = futures::future::join_all((0..4).map(|value| scheduler.execute(request(value), options, None)));
        let answers = tokio::time::timeout(Duration::from_secs(10), all).await.expect("the full batch waited");
        for (value, answer) in (0..4).zip(answers) {
            assert_eq!(answer.unwrap().outputs[0].data[..], [value]);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![4]);
    }

    #[tokio::test]
    async fn a_lone_request_waits_the_whole_delay_whether_polled_or_slept() {
        // 200 µs is polled through entirely; of 5 ms the instance sleeps
        // most and polls the end (`spin::BATCH_WAIT_SPIN`).
        for delay in [Duration::from_micros(200), Duration::from_millis(5)] {
            let (scheduler, sizes) = recording_batcher(4, delay);
            for value in 0..3 {
                let sent = Instant::now();
                let answer = tokio::time::timeout(
                    Duration::from_secs(10),
                    scheduler.execute(request(value), RequestOptions::default(), None),
                )
                .await
                .expect("the batch never went")
                .unwrap();
                assert_eq!(answer.outputs[0].data[..], [value]);
                assert!(sent.elapsed() >= delay, "answered after {:?}, before the {delay:?} delay", sent.elapsed());
            }
            assert_eq!(*sizes.lock().unwrap(), vec![1, 1, 1]);
        }
    }

    #[tokio::test]
    async fn an_almost_full_batch_is_polled_for_briefly_then_goes_as_soon_as_it_is_full() {
        let delay = Duration::from_secs(2);
        let (scheduler, sizes) = recording_batcher(8, delay);
        let scheduler = Arc::new(scheduler);
        let send = |value| {
            let scheduler = Arc::clone(&scheduler);
            tokio::spawn(async move { scheduler.execute(request(value), RequestOptions::default(), None).await })
        };
        // Five rows leave the batch three short of going: the fourth woke the
        // instance to poll, and with no request coming it sleeps again.
        let mut answers: Vec<_> = (0..5).map(send).collect();
        let asleep = async {
            loop {
                {
                    let state = scheduler.shared.lock();
                    if state.queue.len() == 5 && state.sleeping_instances == 1 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), asleep)
            .await
            .expect("the instance kept polling an incomplete batch");
        assert!(sizes.lock().unwrap().is_empty(), "an incomplete batch went before its delay");
        let completed = Instant::now();
        answers.extend((5..8).map(send));
        for (value, answer) in (0..8).zip(answers) {
            let answer = tokio::time::timeout(Duration::from_secs(10), answer).await.expect("the batch never went");
            assert_eq!(answer.unwrap().unwrap().outputs[0].data[..], [value]);
        }
        assert!(completed.elapsed() < delay, "the full batch waited for its delay");
        assert_eq!(*sizes.lock().unwrap(), vec![8]);
    }

    #[tokio::test]
    async fn after_a_batch_the_next_request_goes_on_time_with_or_without_the_idle_alarm() {
        let delay = Duration::from_millis(200);
        let (scheduler, sizes) = recording_batcher(2, delay);
        let options = RequestOptions::default();
        let scheduler = &scheduler;
        let lone = |value| async move {
            let sent = Instant::now();
            let answer =
                tokio::time::timeout(Duration::from_secs(10), scheduler.execute(request(value), options, None))
                    .await
                    .expect("the lone request never went")
                    .unwrap();
            assert_eq!(answer.outputs[0].data[..], [value]);
            let waited = sent.elapsed();
            // Neither early nor late: an alarm later than the delay would
            // leave the request waiting for it.
            assert!(waited >= delay && waited < delay * 7 / 4, "answered after {waited:?} with a {delay:?} delay");
        };
        for round in 0..2 {
            let pair = futures::future::join(
                scheduler.execute(request(0), options, None),
                scheduler.execute(request(1), options, None),
            );
            let (first, second) =
                tokio::time::timeout(Duration::from_secs(10), pair).await.expect("the full batch waited");
            assert_eq!(
                (&first.unwrap().outputs[0].data[..], &second.unwrap().outputs[0].data[..]),
                (&[0][..], &[1][..])
            );
            // After the batch of two the instance sleeps with an alarm set.
            let armed = spin_until(Duration::from_secs(5), || scheduler.shared.lock().idle_alarm.is_some());
            assert!(armed, "no idle alarm after a batch");
            if round == 1 {
                // Past the alarm the instance sleeps until signalled.
                tokio::time::sleep(delay * 2).await;
                assert!(scheduler.shared.lock().idle_alarm.is_none());
            }
            lone(2).await;
        }
        assert_eq!(*sizes.lock().unwrap(), vec![2, 1, 2, 1]);
    }

    #[tokio::test]
    async fn an_answer_found_without_running_keeps_its_turn_when_ordering_is_preserved() {
        let cached = || vec![Tensor { name: "y".into(), ..request(9).inputs[0].clone() }];
        let slow = || Box::new(RecordingInstance(Default::default(), Duration::from_millis(300)));
        let (unordered, _) = start(policy("max_batch_size: 1"), vec![slow()]);
        let (ordered, _) =
            start(policy("max_batch_size: 1 dynamic_batching { preserve_ordering: true }"), vec![slow()]);
        for (scheduler, keeps_order) in [(unordered, false), (ordered, true)] {
            let scheduler = Arc::new(scheduler);
            let running = tokio::spawn({
                let scheduler = Arc::clone(&scheduler);
                async move { scheduler.execute(request(0), RequestOptions::default(), None).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Without ordering the answer is there at the first poll; with
            // it, the answer waits for the request that arrived before.
            let mut found = std::pin::pin!(scheduler.answer_without_running(cached()));
            let answer = match futures::poll!(&mut found) {
                std::task::Poll::Ready(answer) => {
                    assert!(!keeps_order, "answered before the request that arrived first");
                    answer
                }
                std::task::Poll::Pending => {
                    assert!(keeps_order, "waited without preserve_ordering");
                    found.await
                }
            };
            assert_eq!(answer.unwrap().outputs, cached());
            assert!(running.await.unwrap().is_ok());
        }
    }

    #[tokio::test]
    async fn a_full_queue_rejects_with_unavailable() {
        let instance = RecordingInstance(Default::default(), Duration::from_millis(300));
        let (scheduler, statistics) = start(
            policy("max_batch_size: 1 dynamic_batching { default_queue_policy { max_queue_size: 1 } }"),
            vec![Box::new(instance)],
        );
        let scheduler = Arc::new(scheduler);
        let options = RequestOptions::default();
        let running = tokio::spawn({
            let scheduler = Arc::clone(&scheduler);
            async move { scheduler.execute(request(0), options, None).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One more fits in the queue behind the running request; a third
        // does not.
        let (queued, rejected) =
            tokio::join!(scheduler.execute(request(1), options, None), scheduler.execute(request(2), options, None));
        assert_eq!(queued.unwrap().outputs[0].data[..], [1]);
        let rejected = rejected.unwrap_err();
        assert_eq!(rejected.kind(), crate::error::ErrorKind::Unavailable);
        assert!(rejected.message().starts_with("Exceeds maximum queue size"), "{}", rejected.message());
        assert!(running.await.unwrap().is_ok());
        // As in Triton, the refused request counts neither as a success nor
        // as a failure.
        let counts = statistics.snapshot().inference_stats;
        assert_eq!((counts.success.count, counts.fail.count), (2, 0));
    }

    /// Echoes its input after a pause, and records when it is dropped.
    struct DropRecordingInstance(Arc<AtomicBool>);

    impl ModelInstance for DropRecordingInstance {
        fn execute(&mut self, inputs: &[Tensor], _: &[String], _: &mut ExecutionTimes) -> Result<Vec<Tensor>> {
            std::thread::sleep(Duration::from_millis(200));
            Ok(vec![Tensor { name: "y".into(), ..inputs[0].clone() }])
        }
    }

    impl Drop for DropRecordingInstance {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn stop_answers_the_queue_then_releases_the_instances() {
        let dropped: Vec<Arc<AtomicBool>> = (0..2).map(|_| Arc::default()).collect();
        let instances: Vec<Box<dyn ModelInstance>> = dropped
            .iter()
            .map(|flag| Box::new(DropRecordingInstance(Arc::clone(flag))) as Box<dyn ModelInstance>)
            .collect();
        // A minute's delay: the queued requests would wait for it unless
        // stopping sends them at once.
        let (scheduler, _) =
            start(policy("max_batch_size: 8 dynamic_batching { max_queue_delay_microseconds: 60000000 }"), instances);
        let scheduler = Arc::new(scheduler);
        let options = RequestOptions::default();
        let queued: Vec<_> = (0..3)
            .map(|value| {
                let scheduler = Arc::clone(&scheduler);
                tokio::spawn(async move { scheduler.execute(request(value), options, None).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stopping = tokio::task::spawn_blocking({
            let scheduler = Arc::clone(&scheduler);
            move || scheduler.stop()
        });
        tokio::time::timeout(Duration::from_secs(10), stopping).await.expect("stop hung").unwrap();
        // Stop returned only after both instances were dropped, and after
        // every queued request had its answer.
        assert!(dropped.iter().all(|flag| flag.load(Ordering::SeqCst)));
        for (value, answer) in (0..3).zip(queued) {
            assert_eq!(answer.await.unwrap().unwrap().outputs[0].data[..], [value]);
        }
        let refused = scheduler.execute(request(9), options, None).await.unwrap_err();
        assert_eq!(refused.kind(), crate::error::ErrorKind::Unavailable);
        assert!(refused.message().contains("being unloaded"), "{}", refused.message());
    }

    #[tokio::test]
    async fn a_panicking_instance_reports_an_error_and_keeps_serving() {
        let (scheduler, _) = start(policy("max_batch_size: 1"), vec![Box::new(PanickingInstance)]);
        for _ in 0..2 {
            let error = scheduler.execute(request(0), RequestOptions::default(), None).await.unwrap_err();
            assert!(error.message().contains("panicked"), "{}", error.message());
            assert!(error.message().starts_with("model 'm' version 1 (instance 'm_0'): "), "{}", error.message());
        }
    }

    #[test]
    fn options_come_from_parameters() {
        let parameters = Parameters::from([
            ("priority".to_string(), ParameterValue::Int64(2)),
            ("timeout".to_string(), ParameterValue::Uint64(1500)),
        ]);
        let options = RequestOptions::from_parameters("m", &parameters).unwrap();
        assert_eq!(options, RequestOptions { priority: Some(2), timeout: Some(Duration::from_micros(1500)) });
        let bad = Parameters::from([("priority".to_string(), ParameterValue::String("high".into()))]);
        assert_eq!(
            RequestOptions::from_parameters("m", &bad).unwrap_err().message(),
            "model 'm': the 'priority' parameter must be a non-negative integer, not \"high\""
        );
    }
}
