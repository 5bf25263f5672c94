//! Per model version scheduling: a queue with priority levels and queue
//! policies, Triton's dynamic batcher, and the execution instances, each on
//! a thread of its own so that N instances run N batches at once and a slow
//! model never holds up another model's requests.
//!
//! One scheduler task per model version owns the queue. Callers send it
//! requests; it decides when to send which batch to a free instance; the
//! instance thread answers each request of the batch directly.

mod batch;
mod batcher;
mod instance;
mod ordering;
mod policy;
mod queue;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

pub use policy::{DynamicBatching, QueuePolicy, SchedulingPolicy, TimeoutAction};

use self::batcher::{Decision, decide};
use self::instance::InstanceContext;
use self::ordering::Responder;
use self::queue::{Pending, Removal, RequestQueue};
use crate::backend::ModelInstance;
use crate::error::{Error, Result};
use crate::inference::{ParameterValue, Parameters};
use crate::statistics::StatisticsRecorder;
use crate::tensor::Tensor;
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
                    "model '{model}': the '{key}' parameter must be a non-negative integer, not {other:?}"
                ))),
            }
        };
        Ok(Self { priority: unsigned("priority")?, timeout: unsigned("timeout")?.map(Duration::from_micros) })
    }
}

enum Command {
    Enqueue { pending: Pending, level: usize },
    Cancel(u64),
}

/// The queue and instances of one loaded model version.
pub struct Scheduler {
    label: String,
    policy: Arc<SchedulingPolicy>,
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
}

impl Scheduler {
    /// Starts the scheduler task and one thread per instance. `label` names
    /// the model version in thread names and messages. Must be called
    /// inside a tokio runtime.
    pub fn start(
        label: &str,
        policy: SchedulingPolicy,
        instances: Vec<(String, Box<dyn ModelInstance>)>,
        statistics: Arc<StatisticsRecorder>,
    ) -> Result<Self> {
        let policy = Arc::new(policy);
        let preserve_ordering = policy.dynamic.as_ref().is_some_and(|dynamic| dynamic.preserve_ordering);
        let responder = Arc::new(Responder::new(preserve_ordering));
        let (batches, batch_receiver) = async_channel::unbounded();
        let (free, free_receiver) = mpsc::unbounded_channel();
        let instance_count = instances.len();
        for (name, backend_instance) in instances {
            let context = InstanceContext {
                name: name.clone(),
                responder: Arc::clone(&responder),
                statistics: Arc::clone(&statistics),
            };
            let (batch_receiver, free) = (batch_receiver.clone(), free.clone());
            thread::Builder::new()
                .name(name)
                .spawn(move || instance::run(context, backend_instance, batch_receiver, free))
                .map_err(|error| Error::internal(format!("{label}: cannot start an instance thread: {error}")))?;
        }
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let task = SchedulerTask {
            label: label.to_string(),
            policy: Arc::clone(&policy),
            queue: RequestQueue::new(policy.levels.clone()),
            instances: instance_count,
            free_instances: instance_count,
            batches,
            responder,
            statistics,
            next_sequence: 0,
        };
        tokio::spawn(task.run(command_receiver, free_receiver));
        Ok(Self { label: label.to_string(), policy, commands, next_id: AtomicU64::new(0) })
    }

    /// Queues a request and waits for its outputs. If the caller stops
    /// waiting (its client went away), the request leaves the queue and
    /// never runs.
    pub async fn execute(&self, request: ValidatedRequest, options: RequestOptions) -> Result<Vec<Tensor>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let level = self.policy.level_for(options.priority);
        let arrived = Instant::now();
        let deadline = self.policy.levels[level - 1].timeout_for(options.timeout).map(|timeout| arrived + timeout);
        let (reply, answer) = oneshot::channel();
        let pending = Pending { request, id, sequence: 0, arrived, deadline, reply };
        self.commands
            .send(Command::Enqueue { pending, level })
            .map_err(|_| Error::unavailable(format!("{} is shutting down", self.label)))?;
        let cancel_on_drop = CancelOnDrop { id, commands: &self.commands, armed: true };
        let outcome = answer.await;
        cancel_on_drop.disarm();
        outcome.map_err(|_| Error::internal(format!("{}: the scheduler stopped before answering", self.label)))?
    }
}

/// Tells the scheduler to drop a request whose caller stopped waiting.
struct CancelOnDrop<'a> {
    id: u64,
    commands: &'a mpsc::UnboundedSender<Command>,
    armed: bool,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            // The scheduler may be gone already; then so is the queue.
            let _ = self.commands.send(Command::Cancel(self.id));
        }
    }
}

/// The task that owns one model version's queue.
struct SchedulerTask {
    label: String,
    policy: Arc<SchedulingPolicy>,
    queue: RequestQueue,
    instances: usize,
    free_instances: usize,
    batches: async_channel::Sender<Vec<Pending>>,
    responder: Arc<Responder>,
    statistics: Arc<StatisticsRecorder>,
    next_sequence: u64,
}

impl SchedulerTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, mut free: mpsc::UnboundedReceiver<()>) {
        let mut closing = false;
        let mut wake_at: Option<Instant> = None;
        loop {
            let sleep = async move {
                match wake_at {
                    Some(moment) => tokio::time::sleep_until(moment.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv(), if !closing => match command {
                    Some(Command::Enqueue { pending, level }) => self.enqueue(pending, level),
                    Some(Command::Cancel(id)) => self.cancel(id),
                    None => closing = true,
                },
                Some(()) = free.recv() => self.free_instances += 1,
                () = sleep => {}
            }
            wake_at = self.dispatch(closing);
            if closing && self.queue.is_empty() && self.free_instances == self.instances {
                break;
            }
        }
        // Closing the batch channel ends the instance threads.
        self.batches.close();
    }

    fn enqueue(&mut self, mut pending: Pending, level: usize) {
        pending.sequence = self.next_sequence;
        self.next_sequence += 1;
        if let Err(rejected) = self.queue.push(level, pending) {
            let limit = self.queue.policy(level).max_queue_size;
            self.statistics.record_failure(rejected.arrived.elapsed());
            let error = Error::unavailable(format!(
                "{}: the queue is full ({limit} requests wait at priority level {level}); try again later",
                self.label
            ));
            self.responder.respond(rejected.sequence, rejected.reply, Err(error));
        }
    }

    fn cancel(&mut self, id: u64) {
        if let Some(pending) = self.queue.cancel(id) {
            tracing::debug!(scheduler = %self.label, "dropped a request whose client went away");
            self.responder.respond(
                pending.sequence,
                pending.reply,
                Err(Error::unavailable("the request was cancelled")),
            );
        }
    }

    /// Rejects timed-out requests, sends every batch that is due to free
    /// instances, and returns when to look again.
    fn dispatch(&mut self, closing: bool) -> Option<Instant> {
        let now = Instant::now();
        for Removal::TimedOut(pending) in self.queue.expire(now) {
            let waited = now.saturating_duration_since(pending.arrived);
            self.statistics.record_failure(waited);
            let error = Error::unavailable(format!(
                "{}: the request timed out after waiting {} µs in the queue",
                self.label,
                waited.as_micros()
            ));
            self.responder.respond(pending.sequence, pending.reply, Err(error));
        }
        let mut batch_due = None;
        while self.free_instances > 0 {
            match decide(&self.queue, &self.policy, now, closing) {
                Decision::Dispatch(count) => {
                    let batch = self.queue.take_front(count);
                    self.free_instances -= 1;
                    if let Err(error) = self.batches.try_send(batch) {
                        // Only possible once the instances are gone.
                        for pending in error.into_inner() {
                            let error = Error::unavailable(format!("{}: no instance is running", self.label));
                            self.responder.respond(pending.sequence, pending.reply, Err(error));
                        }
                    }
                }
                Decision::WaitUntil(moment) => {
                    batch_due = Some(moment);
                    break;
                }
                Decision::Idle => break,
            }
        }
        [batch_due, self.queue.next_deadline()].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use bytes::Bytes;

    use super::*;
    use crate::model_config::parse_text_format;
    use crate::statistics::ExecutionTimes;
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
        let named =
            instances.into_iter().enumerate().map(|(index, instance)| (format!("m_{index}"), instance)).collect();
        (Scheduler::start("model 'm' version 1", policy, named, Arc::clone(&statistics)).unwrap(), statistics)
    }

    #[tokio::test]
    async fn instances_execute_in_parallel() {
        let barrier = Arc::new(Barrier::new(2));
        let instances: Vec<Box<dyn ModelInstance>> =
            (0..2).map(|_| Box::new(RendezvousInstance(barrier.clone())) as Box<dyn ModelInstance>).collect();
        let (scheduler, _) = start(policy("max_batch_size: 8"), instances);
        let options = RequestOptions::default();
        let both =
            async { tokio::join!(scheduler.execute(request(1), options), scheduler.execute(request(2), options)) };
        let (first, second) = tokio::time::timeout(Duration::from_secs(10), both).await.expect("instances deadlocked");
        assert_eq!(first.unwrap()[0].data[..], [1]);
        assert_eq!(second.unwrap()[0].data[..], [2]);
    }

    #[tokio::test]
    async fn queued_requests_are_batched_and_answered_separately() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let instance = RecordingInstance(sizes.clone(), Duration::from_millis(200));
        let (scheduler, statistics) = start(policy("max_batch_size: 4 dynamic_batching { }"), vec![Box::new(instance)]);
        let options = RequestOptions::default();
        // The first request occupies the instance; the next five queue up
        // behind it and go as a batch of 4 and a batch of 1.
        let answers = futures::future::join_all((0..6).map(|value| scheduler.execute(request(value), options))).await;
        for (value, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap()[0].data[..], [value as u8]);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 4, 1]);
        let snapshot = statistics.snapshot();
        assert_eq!((snapshot.inference_count, snapshot.execution_count), (6, 3));
        assert_eq!(snapshot.batch_stats[&4].compute_infer.count, 1);
    }

    #[tokio::test]
    async fn a_full_queue_rejects_with_unavailable() {
        let instance = RecordingInstance(Default::default(), Duration::from_millis(300));
        let (scheduler, statistics) = start(
            policy("max_batch_size: 1 dynamic_batching { default_queue_policy { max_queue_size: 1 } }"),
            vec![Box::new(instance)],
        );
        let options = RequestOptions::default();
        let answers = futures::future::join_all((0..3).map(|value| scheduler.execute(request(value), options))).await;
        let rejected: Vec<_> = answers.iter().filter_map(|answer| answer.as_ref().err()).collect();
        assert_eq!(rejected.len(), 1, "{answers:?}");
        assert_eq!(rejected[0].kind(), crate::error::ErrorKind::Unavailable);
        assert!(rejected[0].message().contains("queue is full"), "{}", rejected[0].message());
        assert_eq!(statistics.snapshot().inference_stats.fail.count, 1);
    }

    #[tokio::test]
    async fn a_panicking_instance_reports_an_error_and_keeps_serving() {
        let (scheduler, _) = start(policy("max_batch_size: 1"), vec![Box::new(PanickingInstance)]);
        for _ in 0..2 {
            let error = scheduler.execute(request(0), RequestOptions::default()).await.unwrap_err();
            assert!(error.message().contains("panicked"), "{}", error.message());
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
        assert!(RequestOptions::from_parameters("m", &bad).unwrap_err().message().contains("'priority'"));
    }
}
