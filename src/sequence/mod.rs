//! Triton's sequence batcher, for stateful models: the requests of one
//! sequence (one correlation ID) run one after another, each with the
//! control inputs the configuration asks for and the implicit state the
//! previous request left; requests of different sequences batch together
//! in the model version's scheduler.
//!
//! A sequence holds one of the version's sequence slots from its first
//! request until its END request has run, or until it has been idle for
//! `max_sequence_idle_microseconds`; a sequence that finds every slot taken
//! waits in a backlog, in arrival order. There are as many slots as the
//! instances can hold at once: `max_batch_size` per instance (the `direct`
//! strategy), or `max_candidate_sequences` per instance (`oldest`).
//!
//! ONNX Runtime models keep no state between calls, so which instance and
//! batch row a sequence's requests run in is not visible to the model; the
//! strategies differ here in how long the batcher waits for a batch
//! (`max_queue_delay_microseconds`), its preferred sizes and ordering
//! (`oldest`), which the scheduler takes from [`dynamic_batching`].

mod controls;
mod request;
mod state;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use controls::SequenceControls;
pub use request::{CorrelationId, SequenceRequest};
pub use state::{INITIAL_STATE_DIRECTORY, ImplicitState};

use crate::error::{Error, Result};
use crate::model_config::ModelConfig;
use crate::proto::inference::model_config::SchedulingChoice;
use crate::proto::inference::model_sequence_batching::StrategyChoice;
use crate::proto::inference::{ModelDynamicBatching, ModelSequenceBatching};
use crate::scheduler::Executed;
use crate::tensor::Tensor;
use crate::validation::ValidatedRequest;

/// How long a sequence may go without requests before its slot is given
/// back, when the configuration does not say (Triton's default, 1 s).
pub const DEFAULT_MAX_SEQUENCE_IDLE: Duration = Duration::from_secs(1);

/// The `sequence_batching` section of a configuration, if it has one.
pub fn sequence_batching(config: &ModelConfig) -> Option<&ModelSequenceBatching> {
    match &config.scheduling_choice {
        Some(SchedulingChoice::SequenceBatching(batching)) => Some(batching),
        _ => None,
    }
}

/// The names of the inputs (controls and states) and outputs (states) that
/// a model's `sequence_batching` section gives to the server to provide and
/// keep; none for a model without it.
pub fn server_tensors(config: &ModelConfig) -> (Vec<String>, Vec<String>) {
    let Some(batching) = sequence_batching(config) else {
        return Default::default();
    };
    let controls = batching.control_input.iter().map(|control| control.name.clone());
    let inputs = controls.chain(batching.state.iter().map(|state| state.input_name.clone())).collect();
    (inputs, batching.state.iter().map(|state| state.output_name.clone()).collect())
}

/// The dynamic-batching settings the scheduler runs a sequence model's
/// requests with: the chosen strategy's `max_queue_delay_microseconds`,
/// and for `oldest` its `preferred_batch_size` and `preserve_ordering`
/// (`direct` when none is chosen: no delay, no preferred sizes).
pub fn dynamic_batching(batching: &ModelSequenceBatching) -> ModelDynamicBatching {
    match &batching.strategy_choice {
        Some(StrategyChoice::Oldest(oldest)) => ModelDynamicBatching {
            max_queue_delay_microseconds: oldest.max_queue_delay_microseconds,
            preferred_batch_size: oldest.preferred_batch_size.clone(),
            preserve_ordering: oldest.preserve_ordering,
            ..Default::default()
        },
        Some(StrategyChoice::Direct(direct)) => ModelDynamicBatching {
            max_queue_delay_microseconds: direct.max_queue_delay_microseconds,
            ..Default::default()
        },
        None => ModelDynamicBatching::default(),
    }
}

/// Checks a `sequence_batching` section without reading any file: its
/// control inputs and states, which must not be configuration inputs, and
/// the `oldest` strategy's preferred batch sizes.
pub fn check_config(config: &ModelConfig, batching: &ModelSequenceBatching) -> Result<(), String> {
    if batching.iterative_sequence {
        return Err(
            "sequence_batching: iterative_sequence is for decoupled models, which this server does not run".to_string()
        );
    }
    let controls = SequenceControls::from_config(batching)?;
    let configured = |name: &str| config.input.iter().any(|input| input.name == name);
    if let Some((name, _)) = controls.inputs().into_iter().find(|(name, _)| configured(name)) {
        return Err(format!(
            "sequence_batching: control input '{name}' is also a configuration input; the server provides it, so \
             leave it out of 'input'"
        ));
    }
    for state in &batching.state {
        if configured(&state.input_name) {
            return Err(format!(
                "sequence_batching: state input '{}' is also a configuration input; the server provides it, so \
                 leave it out of 'input'",
                state.input_name
            ));
        }
    }
    if let Some(StrategyChoice::Oldest(oldest)) = &batching.strategy_choice {
        for &size in &oldest.preferred_batch_size {
            if size < 1 || size > config.max_batch_size.max(1) {
                return Err(format!(
                    "sequence_batching: oldest preferred_batch_size {size} must be 1 to max_batch_size {}",
                    config.max_batch_size
                ));
            }
        }
    }
    Ok(())
}

/// The sequences of one model version and what each request of them gets.
pub struct SequenceBatcher {
    label: String,
    model: String,
    batching: bool,
    controls: SequenceControls,
    states: Vec<ImplicitState>,
    sequences: Arc<Sequences>,
    /// Dropped with the batcher, which ends the reaper thread.
    _stop_reaper: mpsc::Sender<()>,
}

/// The active sequences and the slots they hold, shared with the reaper.
struct Sequences {
    active: Mutex<HashMap<CorrelationId, Entry>>,
    slots: Arc<Semaphore>,
    max_idle: Duration,
    /// Requests waiting for their sequence's turn or a slot, before the
    /// scheduler's queue.
    waiting: AtomicUsize,
}

impl Sequences {
    fn lock(&self) -> MutexGuard<'_, HashMap<CorrelationId, Entry>> {
        // Every section under this lock is short and panic-free.
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the sequences that have had no request for `max_idle`,
    /// giving their slots back.
    fn release_idle(&self, label: &str) {
        let now = Instant::now();
        self.lock().retain(|id, entry| {
            let keep = entry.requests > 0 || now.duration_since(entry.last_used) < self.max_idle;
            if !keep {
                tracing::debug!(model = label, sequence = %id, "released a sequence idle for its maximum idle time");
            }
            keep
        });
    }
}

/// One active sequence, as the map of active sequences holds it.
struct Entry {
    sequence: Arc<Sequence>,
    /// Its requests that are waiting or running: a sequence with any is
    /// never idle.
    requests: usize,
    last_used: Instant,
}

/// A sequence: its requests take turns on this lock, in arrival order.
struct Sequence {
    turn: tokio::sync::Mutex<SequenceState>,
}

struct SequenceState {
    /// The slot it holds, once it has one.
    slot: Option<OwnedSemaphorePermit>,
    /// The next request's state inputs, one per configured state.
    states: Vec<Tensor>,
}

impl SequenceBatcher {
    /// The batcher of a version of `config` (which has `sequence_batching`)
    /// with `instance_count` instances; reads initial states from the
    /// model's directory.
    pub fn new(label: &str, config: &ModelConfig, model_dir: &Path, instance_count: usize) -> Result<Self> {
        let invalid = |why: String| Error::invalid_argument(format!("{label}: {why}"));
        let batching = sequence_batching(config)
            .ok_or_else(|| Error::internal(format!("{label}: the configuration has no sequence_batching")))?;
        let controls = SequenceControls::from_config(batching).map_err(invalid)?;
        let states = ImplicitState::from_config(batching, config.max_batch_size, model_dir).map_err(invalid)?;
        let per_instance = match &batching.strategy_choice {
            Some(StrategyChoice::Oldest(oldest)) if oldest.max_candidate_sequences > 0 => {
                oldest.max_candidate_sequences as usize
            }
            _ => config.max_batch_size.max(1) as usize,
        };
        let max_idle = match batching.max_sequence_idle_microseconds {
            0 => DEFAULT_MAX_SEQUENCE_IDLE,
            micros => Duration::from_micros(micros),
        };
        let sequences = Arc::new(Sequences {
            active: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(per_instance * instance_count.max(1))),
            max_idle,
            waiting: AtomicUsize::new(0),
        });
        let (stop_reaper, stopped) = mpsc::channel::<()>();
        let reaper_sequences = Arc::clone(&sequences);
        let reaper_label = label.to_string();
        // Often enough that a slot comes back soon after its sequence's
        // idle time, rarely enough to cost nothing.
        let period = (max_idle / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
        std::thread::Builder::new()
            .name(format!("{}-sequences", config.name))
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    reaper_sequences.release_idle(&reaper_label);
                }
            })
            .map_err(|error| Error::internal(format!("{label}: cannot start the sequence reaper thread: {error}")))?;
        Ok(Self {
            label: label.to_string(),
            model: config.name.clone(),
            batching: config.max_batch_size > 0,
            controls,
            states,
            sequences,
            _stop_reaper: stop_reaper,
        })
    }

    /// Runs one request of a sequence with `run` (the version's scheduler),
    /// after the sequence's earlier requests and once the sequence holds a
    /// slot; adds the control and state inputs, keeps the state outputs
    /// for the next request and hands back only the outputs the request
    /// asked for.
    pub async fn run<F, Fut>(
        &self,
        sequence: Option<SequenceRequest>,
        mut request: ValidatedRequest,
        run: F,
    ) -> Result<Executed>
    where
        F: FnOnce(ValidatedRequest) -> Fut,
        Fut: Future<Output = Result<Executed>>,
    {
        let model = &self.model;
        // Triton's words first: clients match on them.
        let sequence = sequence.ok_or_else(|| {
            Error::invalid_argument(format!(
                "inference request to model '{model}' must specify a non-zero or non-empty correlation ID"
            ))
        })?;
        if self.batching && request.batch_size != 1 {
            return Err(Error::invalid_argument(format!(
                "inference request to model '{model}' must specify batch-size 1 due to requirements of sequence \
                 batcher (it has {})",
                request.batch_size
            )));
        }
        let controls = self.controls.tensors(model, &sequence, self.batching)?;
        let (entry, _request_done) = self.enter(&sequence)?;
        let waiting = Waiting::new(&self.sequences.waiting);
        let mut state = entry.turn.lock().await;
        if sequence.start {
            state.states = self.initial_states();
        }
        if state.slot.is_none() {
            let slot = Arc::clone(&self.sequences.slots)
                .acquire_owned()
                .await
                .map_err(|_| Error::unavailable(format!("{}: the model is being unloaded", self.label)))?;
            state.slot = Some(slot);
        }
        request.inputs.extend(controls);
        request.inputs.extend(state.states.iter().cloned());
        let requested = request.outputs.len();
        for implicit in &self.states {
            if !request.outputs.contains(&implicit.output_name) {
                request.outputs.push(implicit.output_name.clone());
            }
        }
        // From here the request waits in the scheduler's queue, which
        // counts it.
        drop(waiting);
        let outcome = run(request).await;
        let outcome = outcome.and_then(|mut executed| {
            for (implicit, kept) in self.states.iter().zip(&mut state.states) {
                let output =
                    executed.outputs.iter().find(|output| output.name == implicit.output_name).ok_or_else(|| {
                        Error::internal(format!(
                            "{}: the model did not produce state '{}'",
                            self.label, implicit.output_name
                        ))
                    })?;
                *kept = Tensor { name: implicit.input_name.clone(), ..output.clone() };
            }
            executed.outputs.truncate(requested);
            Ok(executed)
        });
        if sequence.end {
            // The sequence is over, whatever its last request's outcome:
            // its slot goes to the next sequence in the backlog.
            state.slot = None;
        }
        outcome
    }

    /// Requests waiting for their sequence's turn or a slot: Triton counts
    /// them as pending, with the requests in the queue.
    pub fn waiting_requests(&self) -> usize {
        self.sequences.waiting.load(Ordering::Relaxed)
    }

    fn initial_states(&self) -> Vec<Tensor> {
        self.states.iter().map(|state| state.initial.clone()).collect()
    }

    /// Finds the request's sequence, starting one for a START request, and
    /// counts the request as waiting in it until the returned guard drops.
    /// An END request retires the correlation ID at once, so that a later
    /// START with the same ID begins a new sequence.
    fn enter(&self, request: &SequenceRequest) -> Result<(Arc<Sequence>, RequestDone<'_>)> {
        let mut active = self.sequences.lock();
        let now = Instant::now();
        let sequence = match active.get_mut(&request.id) {
            Some(entry) => {
                if request.start {
                    tracing::warn!(
                        "sequence {} for model '{}' has a conflict: the previous sequence did not end before this \
                         sequence start, so it ends early",
                        request.id,
                        self.model
                    );
                }
                entry.requests += 1;
                entry.last_used = now;
                Arc::clone(&entry.sequence)
            }
            None if request.start => {
                let sequence = Arc::new(Sequence {
                    turn: tokio::sync::Mutex::new(SequenceState { slot: None, states: self.initial_states() }),
                });
                let entry = Entry { sequence: Arc::clone(&sequence), requests: 1, last_used: now };
                active.insert(request.id.clone(), entry);
                sequence
            }
            None => {
                return Err(Error::invalid_argument(format!(
                    "inference request for sequence {} to model '{}' must specify the START flag on the first \
                     request of the sequence",
                    request.id, self.model
                )));
            }
        };
        if request.end {
            active.remove(&request.id);
        }
        drop(active);
        let done = RequestDone { sequences: &self.sequences, id: request.id.clone(), sequence: Arc::clone(&sequence) };
        Ok((sequence, done))
    }
}

/// Counts a request among the waiting ones until it is dropped (handed to
/// the scheduler, or its caller went away).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request out of its sequence when it is answered or its caller
/// goes away, and marks the sequence used, which restarts its idle time.
struct RequestDone<'a> {
    sequences: &'a Sequences,
    id: CorrelationId,
    sequence: Arc<Sequence>,
}

impl Drop for RequestDone<'_> {
    fn drop(&mut self) {
        let mut active = self.sequences.lock();
        // The ID may have ended, or started another sequence, meanwhile.
        if let Some(entry) = active.get_mut(&self.id)
            && Arc::ptr_eq(&entry.sequence, &self.sequence)
        {
            entry.requests -= 1;
            entry.last_used = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::error::ErrorKind;
    use crate::inference::BatchPosition;
    use crate::model_config::parse_text_format;
    use crate::statistics::ExecutionTimes;
    use crate::tensor::DataType;

    /// An accumulator, the model of Triton's implicit-state examples: its
    /// state starts as the first input and grows by each later one.
    fn accumulator(slots: usize, max_idle_micros: u64) -> SequenceBatcher {
        let config = parse_text_format(&format!(
            r#"name: "acc" max_batch_size: {slots}
               input {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }}
               output {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }}
               sequence_batching {{
                 max_sequence_idle_microseconds: {max_idle_micros}
                 control_input [ {{ name: "START" control [ {{ kind: CONTROL_SEQUENCE_START
                                                               int32_false_true: [ 0, 1 ] }} ] }} ]
                 state [ {{ input_name: "IN_STATE" output_name: "OUT_STATE" data_type: TYPE_INT32 dims: [ 1 ] }} ]
               }}"#
        ))
        .unwrap();
        SequenceBatcher::new("model 'acc' version 1", &config, Path::new("/nowhere"), 1).unwrap()
    }

    fn int(tensor: &Tensor) -> i32 {
        i32::from_le_bytes(tensor.data[..4].try_into().unwrap())
    }

    fn tensor(name: &str, value: i32) -> Tensor {
        Tensor {
            name: name.into(),
            datatype: DataType::Int32,
            shape: vec![1, 1],
            data: Bytes::copy_from_slice(&value.to_le_bytes()),
        }
    }

    /// What the accumulator model computes, as the scheduler would run it.
    async fn run_accumulator(request: ValidatedRequest) -> Result<Executed> {
        let input = |name: &str| int(request.inputs.iter().find(|tensor| tensor.name == name).unwrap());
        let sum = if input("START") == 1 { input("INPUT") } else { input("IN_STATE") + input("INPUT") };
        let outputs = request.outputs.iter().map(|name| tensor(name, sum)).collect();
        Ok(Executed { outputs, position: BatchPosition::ALONE, times: ExecutionTimes::default() })
    }

    fn request(value: i32) -> ValidatedRequest {
        ValidatedRequest { batch_size: 1, inputs: vec![tensor("INPUT", value)], outputs: vec!["OUTPUT".into()] }
    }

    fn step(id: u64, start: bool, end: bool) -> Option<SequenceRequest> {
        Some(SequenceRequest { id: CorrelationId::Number(id), start, end })
    }

    async fn send(batcher: &SequenceBatcher, sequence: Option<SequenceRequest>, value: i32) -> Result<Vec<Tensor>> {
        batcher.run(sequence, request(value), run_accumulator).await.map(|executed| executed.outputs)
    }

    #[tokio::test]
    async fn state_carries_from_request_to_request_and_stays_inside() {
        let batcher = accumulator(4, 1_000_000);
        let mut sums = Vec::new();
        for (value, start, end) in [(1, true, false), (2, false, false), (3, false, true)] {
            let outputs = send(&batcher, step(7, start, end), value).await.unwrap();
            // The state output is the server's: the client gets only what
            // it asked for.
            assert_eq!(outputs.iter().map(|output| output.name.as_str()).collect::<Vec<_>>(), ["OUTPUT"]);
            sums.push(int(&outputs[0]));
        }
        assert_eq!(sums, [1, 3, 6]);
        // Sequences keep their own state, and a START begins anew.
        send(&batcher, step(8, true, false), 10).await.unwrap();
        send(&batcher, step(9, true, false), 100).await.unwrap();
        assert_eq!(int(&send(&batcher, step(8, false, false), 5).await.unwrap()[0]), 15);
        assert_eq!(int(&send(&batcher, step(9, false, false), 5).await.unwrap()[0]), 105);
        assert_eq!(int(&send(&batcher, step(9, true, false), 1).await.unwrap()[0]), 1);
        assert_eq!(batcher.sequences.lock().len(), 2);
    }

    #[tokio::test]
    async fn requests_outside_a_started_sequence_are_refused_in_tritons_words() {
        let batcher = accumulator(4, 1_000_000);
        let cases = [
            (None, "inference request to model 'acc' must specify a non-zero or non-empty correlation ID"),
            (
                step(3, false, false),
                "inference request for sequence 3 to model 'acc' must specify the START flag on the first request \
                 of the sequence",
            ),
        ];
        for (sequence, expected) in cases {
            let error = send(&batcher, sequence, 1).await.unwrap_err();
            assert_eq!((error.kind(), error.message()), (ErrorKind::InvalidArgument, expected));
        }
        // The END request retires the ID: the next request must start again.
        send(&batcher, step(3, true, true), 1).await.unwrap();
        assert!(send(&batcher, step(3, false, false), 1).await.unwrap_err().message().contains("START flag"));
        let mut batch = request(1);
        batch.batch_size = 2;
        let error = batcher.run(step(4, true, false), batch, run_accumulator).await.unwrap_err();
        assert!(error.message().contains("must specify batch-size 1 due to requirements of sequence batcher"));
    }

    #[tokio::test]
    async fn a_sequence_waits_in_the_backlog_until_a_slot_frees() {
        // One instance that batches one row: one slot.
        let batcher = accumulator(1, 60_000_000);
        send(&batcher, step(1, true, false), 1).await.unwrap();
        let mut second = std::pin::pin!(send(&batcher, step(2, true, false), 2));
        assert!(futures::poll!(&mut second).is_pending(), "a second sequence got the only slot");
        assert_eq!(batcher.waiting_requests(), 1);
        send(&batcher, step(1, false, true), 1).await.unwrap();
        let outputs = tokio::time::timeout(Duration::from_secs(10), second).await.expect("never got the slot");
        assert_eq!(int(&outputs.unwrap()[0]), 2);
        assert_eq!(batcher.waiting_requests(), 0);
    }

    #[tokio::test]
    async fn an_idle_sequence_gives_its_slot_back() {
        let batcher = accumulator(1, 50_000);
        send(&batcher, step(1, true, false), 1).await.unwrap();
        // Sequence 2 waits for the only slot until sequence 1 has been idle
        // for 50 ms.
        let started = Instant::now();
        let outputs = tokio::time::timeout(Duration::from_secs(10), send(&batcher, step(2, true, false), 2))
            .await
            .expect("the idle sequence kept its slot");
        assert_eq!(int(&outputs.unwrap()[0]), 2);
        assert!(started.elapsed() >= Duration::from_millis(40), "released after {:?}", started.elapsed());
        let error = send(&batcher, step(1, false, false), 1).await.unwrap_err();
        assert!(error.message().contains("must specify the START flag"), "{}", error.message());
    }
}
