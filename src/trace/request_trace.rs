//! The trace of one sampled request: the moments it passed through the
//! frontend, the queue and its model instance, and (at the `TENSORS` level)
//! its tensors, written as Triton's JSON trace entries once every part of
//! the server that held it has let it go.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use opentelemetry::trace::SpanContext;
use serde_json::{Value, json};

use super::clock::MonotonicClock;
use super::scope::ActiveScope;
use super::settings::TraceLevel;
use crate::tensor::{DataType, Tensor, le_chunks, split_byte_strings};

/// A moment in the life of a request, by Triton's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// The HTTP request's headers arrived.
    HttpRecvStart,
    /// Its body was read.
    HttpRecvEnd,
    /// The response started to go out.
    HttpSendStart,
    /// The response was handed to the connection.
    HttpSendEnd,
    /// The gRPC call arrived.
    GrpcWaitReadStart,
    /// Its request message was read.
    GrpcWaitReadEnd,
    /// The response message started to go out.
    GrpcSendStart,
    /// The response was handed to the connection.
    GrpcSendEnd,
    /// The core took the request.
    RequestStart,
    /// It entered its model's queue.
    QueueStart,
    /// Its batch started on an instance.
    ComputeStart,
    /// The batch's inputs were ready for the backend.
    ComputeInputEnd,
    /// The backend finished running the model.
    ComputeOutputStart,
    /// The batch's outputs were split back per request.
    ComputeEnd,
    /// Its response was complete.
    InferResponseComplete,
    /// The core was done with it.
    RequestEnd,
}

impl Activity {
    /// The name Triton's trace files use.
    pub fn name(self) -> &'static str {
        match self {
            Self::HttpRecvStart => "HTTP_RECV_START",
            Self::HttpRecvEnd => "HTTP_RECV_END",
            Self::HttpSendStart => "HTTP_SEND_START",
            Self::HttpSendEnd => "HTTP_SEND_END",
            Self::GrpcWaitReadStart => "GRPC_WAITREAD_START",
            Self::GrpcWaitReadEnd => "GRPC_WAITREAD_END",
            Self::GrpcSendStart => "GRPC_SEND_START",
            Self::GrpcSendEnd => "GRPC_SEND_END",
            Self::RequestStart => "REQUEST_START",
            Self::QueueStart => "QUEUE_START",
            Self::ComputeStart => "COMPUTE_START",
            Self::ComputeInputEnd => "COMPUTE_INPUT_END",
            Self::ComputeOutputStart => "COMPUTE_OUTPUT_START",
            Self::ComputeEnd => "COMPUTE_END",
            Self::InferResponseComplete => "INFER_RESPONSE_COMPLETE",
            Self::RequestEnd => "REQUEST_END",
        }
    }
}

/// Where a traced tensor was seen, by Triton's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorActivity {
    /// An input as it entered the queue.
    QueueInput,
    /// An output as the model produced it.
    BackendOutput,
}

impl TensorActivity {
    fn name(self) -> &'static str {
        match self {
            Self::QueueInput => "TENSOR_QUEUE_INPUT",
            Self::BackendOutput => "TENSOR_BACKEND_OUTPUT",
        }
    }
}

/// The model version that served a traced request, and the request's id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestIdentity {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: i64,
    /// The client's request id; empty when it sent none.
    pub request_id: String,
}

/// What a trace has gathered so far.
#[derive(Default)]
pub(super) struct Record {
    /// Who served it, once the core resolved that.
    pub(super) request: Option<RequestIdentity>,
    timestamps: Vec<(Activity, Instant)>,
    tensors: Vec<(TensorActivity, Tensor)>,
    /// The traces of its steps, when it is an ensemble's request: their
    /// ids and records, in the order they finished.
    pub(super) steps: Vec<(u64, Record)>,
}

impl Record {
    /// The moments recorded, in the order they happened.
    pub(super) fn timeline(&self) -> Vec<(Activity, Instant)> {
        let mut timestamps = self.timestamps.clone();
        timestamps.sort_by_key(|(_, moment)| *moment);
        timestamps
    }

    /// Appends the record's JSON entries, then its steps' (each naming
    /// `id` as its parent, as Triton's composing model traces do).
    fn entries(&self, id: u64, parent_id: Option<u64>, clock: MonotonicClock, entries: &mut Vec<Value>) {
        let mut header = json!({ "id": id });
        if let Some(request) = &self.request {
            header["model_name"] = json!(request.model);
            header["model_version"] = json!(request.version);
            if !request.request_id.is_empty() {
                header["request_id"] = json!(request.request_id);
            }
        }
        if let Some(parent_id) = parent_id {
            header["parent_id"] = json!(parent_id);
        }
        entries.push(header);
        for (activity, moment) in self.timeline() {
            entries.push(json!({
                "id": id,
                "timestamps": [{ "name": activity.name(), "ns": clock.nanoseconds(moment) }],
            }));
        }
        for (activity, tensor) in &self.tensors {
            entries.push(json!({
                "id": id,
                "activity": activity.name(),
                "tensor": {
                    "name": tensor.name,
                    "data": data_text(tensor),
                    "shape": tensor.shape.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
                    "dtype": tensor.datatype.protocol_name(),
                },
            }));
        }
        for (step_id, step) in &self.steps {
            step.entries(*step_id, Some(id), clock, entries);
        }
    }
}

/// The trace of one sampled request. Shared by the parts of the server
/// the request passes through; written when the last of them lets it go.
pub struct RequestTrace {
    id: u64,
    /// Where trace ids come from, shared with the tracer, so that an
    /// ensemble's steps get ids of their own.
    ids: Arc<AtomicU64>,
    level: TraceLevel,
    clock: MonotonicClock,
    /// The settings that sampled it, which say where it is written.
    scope: Arc<ActiveScope>,
    /// The caller's span, when the request came with a W3C `traceparent`
    /// (mode `opentelemetry`).
    parent: Option<SpanContext>,
    /// The trace of the ensemble request this one is a step of: it takes
    /// this trace's record when this one is done, and writes or sends it
    /// with its own.
    ensemble: Option<Arc<RequestTrace>>,
    record: Mutex<Record>,
}

impl RequestTrace {
    pub(super) fn new(
        ids: Arc<AtomicU64>,
        clock: MonotonicClock,
        scope: Arc<ActiveScope>,
        parent: Option<SpanContext>,
    ) -> Self {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let level = scope.settings().level;
        Self { id, ids, level, clock, scope, parent, ensemble: None, record: Mutex::new(Record::default()) }
    }

    /// The trace of one step of this ensemble request: an id of its own,
    /// the same settings, and this trace as its parent, which writes it
    /// (with `parent_id`) or sends its spans (under the ensemble's model
    /// span) with its own.
    pub fn step(self: &Arc<Self>) -> Arc<RequestTrace> {
        Arc::new(Self {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            ids: Arc::clone(&self.ids),
            level: self.level,
            clock: self.clock,
            scope: Arc::clone(&self.scope),
            parent: None,
            ensemble: Some(Arc::clone(self)),
            record: Mutex::new(Record::default()),
        })
    }

    /// The caller's span, if the request named one.
    pub(super) fn parent(&self) -> Option<&SpanContext> {
        self.parent.as_ref()
    }

    /// The trace's id, unique in this server's run.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn record(&self) -> MutexGuard<'_, Record> {
        // Only pushes happen under the lock, so a poisoned one is intact.
        self.record.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `activity` happens now.
    pub fn stamp(&self, activity: Activity) {
        self.stamp_at(activity, Instant::now());
    }

    /// Records that `activity` happened at `moment`.
    pub fn stamp_at(&self, activity: Activity, moment: Instant) {
        if self.level.timestamps {
            self.record().timestamps.push((activity, moment));
        }
    }

    /// Names the model version that serves the request, and its id.
    pub fn identify(&self, model: &str, version: i64, request_id: &str) {
        self.record().request =
            Some(RequestIdentity { model: model.to_string(), version, request_id: request_id.to_string() });
    }

    /// Records tensors seen at `activity`, at the `TENSORS` level (their
    /// bytes are shared, not copied; they are formatted when the trace is
    /// written).
    pub fn tensors<'a>(&self, activity: TensorActivity, tensors: impl IntoIterator<Item = &'a Tensor>) {
        if self.level.tensors {
            self.record().tensors.extend(tensors.into_iter().map(|tensor| (activity, tensor.clone())));
        }
    }

    /// The trace as Triton's JSON entries, comma-separated: one naming the
    /// model, one per timestamp in the order they happened, one per tensor;
    /// then the same for each of its steps.
    pub(super) fn entries(&self) -> String {
        let mut entries = Vec::new();
        self.record().entries(self.id, None, self.clock, &mut entries);
        entries.iter().map(Value::to_string).collect::<Vec<_>>().join(",")
    }
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace").field("id", &self.id).field("level", &self.level).finish_non_exhaustive()
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        match &self.ensemble {
            Some(ensemble) => {
                let record = std::mem::take(&mut *self.record());
                ensemble.record().steps.push((self.id, record));
            }
            None => self.scope.finish(self),
        }
    }
}

/// A tensor's elements as Triton's traces write them: comma-separated,
/// booleans as 0 and 1, strings in double quotes.
fn data_text(tensor: &Tensor) -> String {
    fn join<T: ToString>(values: impl Iterator<Item = T>) -> String {
        values.map(|value| value.to_string()).collect::<Vec<_>>().join(",")
    }
    let data = &tensor.data;
    match tensor.datatype {
        DataType::Bool => join(data.iter().map(|&byte| u8::from(byte != 0))),
        DataType::Uint8 => join(data.iter()),
        DataType::Int8 => join(data.iter().map(|&byte| byte as i8)),
        DataType::Uint16 => join(le_chunks::<2>(data).map(u16::from_le_bytes)),
        DataType::Int16 => join(le_chunks::<2>(data).map(i16::from_le_bytes)),
        DataType::Uint32 => join(le_chunks::<4>(data).map(u32::from_le_bytes)),
        DataType::Int32 => join(le_chunks::<4>(data).map(i32::from_le_bytes)),
        DataType::Uint64 => join(le_chunks::<8>(data).map(u64::from_le_bytes)),
        DataType::Int64 => join(le_chunks::<8>(data).map(i64::from_le_bytes)),
        DataType::Fp16 => join(le_chunks::<2>(data).map(half::f16::from_le_bytes)),
        DataType::Bf16 => join(le_chunks::<2>(data).map(half::bf16::from_le_bytes)),
        DataType::Fp32 => join(le_chunks::<4>(data).map(f32::from_le_bytes)),
        DataType::Fp64 => join(le_chunks::<8>(data).map(f64::from_le_bytes)),
        DataType::Bytes => match split_byte_strings(data) {
            Ok(elements) => {
                join(elements.into_iter().map(|element| format!("\"{}\"", String::from_utf8_lossy(element))))
            }
            Err(_) => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::encode_byte_strings;

    fn tensor(datatype: DataType, data: Vec<u8>) -> Tensor {
        Tensor { name: "t".into(), datatype, shape: vec![1, 2], data: data.into() }
    }

    #[test]
    fn tensor_data_is_written_element_by_element() {
        let ints: Vec<u8> = [-3i32, 7].iter().flat_map(|value| value.to_le_bytes()).collect();
        assert_eq!(data_text(&tensor(DataType::Int32, ints)), "-3,7");
        let floats: Vec<u8> = [0.1f32, 2.5].iter().flat_map(|value| value.to_le_bytes()).collect();
        assert_eq!(data_text(&tensor(DataType::Fp32, floats)), "0.1,2.5");
        assert_eq!(data_text(&tensor(DataType::Bool, vec![0, 3])), "0,1");
        assert_eq!(data_text(&tensor(DataType::Int8, vec![255, 1])), "-1,1");
        let strings = encode_byte_strings::<_, &[u8]>([b"ab".as_slice(), b"c\"d".as_slice()]);
        assert_eq!(data_text(&tensor(DataType::Bytes, strings.to_vec())), "\"ab\",\"c\"d\"");
    }
}
