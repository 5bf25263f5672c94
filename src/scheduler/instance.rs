//! The thread of one execution instance: it takes batches from the
//! scheduler, runs them on its backend instance, and answers each request.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::batch::{merge_inputs, split_outputs, union_of_outputs};
use super::ordering::Responder;
use super::queue::Pending;
use crate::backend::ModelInstance;
use crate::error::{Error, Result};
use crate::statistics::{ExecutionTimes, StatisticsRecorder};
use crate::tensor::Tensor;
use crate::validation::ValidatedRequest;

/// What an instance thread shares with the scheduler.
pub struct InstanceContext {
    /// Instance name, for messages.
    pub name: String,
    /// Where answers go.
    pub responder: Arc<Responder>,
    /// Where figures go.
    pub statistics: Arc<StatisticsRecorder>,
}

/// Runs batches until the scheduler closes the channel; tells the scheduler
/// after each batch that the instance is free again.
pub fn run(
    context: InstanceContext,
    mut instance: Box<dyn ModelInstance>,
    batches: async_channel::Receiver<Vec<Pending>>,
    free: mpsc::UnboundedSender<()>,
) {
    while let Ok(batch) = batches.recv_blocking() {
        execute_batch(&context, instance.as_mut(), batch);
        if free.send(()).is_err() {
            break;
        }
    }
}

fn execute_batch(context: &InstanceContext, instance: &mut dyn ModelInstance, batch: Vec<Pending>) {
    let started = Instant::now();
    // Requests whose callers left while they waited are not run.
    let (live, gone): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|pending| !pending.reply.is_closed());
    for pending in gone {
        tracing::debug!(instance = %context.name, "dropping a request whose client went away");
        context.responder.respond(
            pending.sequence,
            pending.reply,
            Err(Error::unavailable("the request was cancelled")),
        );
    }
    if live.is_empty() {
        return;
    }
    let requests: Vec<&ValidatedRequest> = live.iter().map(|pending| &pending.request).collect();
    let mut times = ExecutionTimes::default();
    let outcome = catch_unwind(AssertUnwindSafe(|| run_batch(instance, &requests, &mut times))).unwrap_or_else(|_| {
        Err(Error::internal(format!("instance '{}' panicked while executing a batch", context.name)))
    });
    let finished = Instant::now();
    match outcome {
        Ok(shares) => {
            let batch_size = requests.iter().map(|request| request.batch_size as u64).sum();
            let queued: Vec<_> =
                live.iter().map(|pending| started.saturating_duration_since(pending.arrived)).collect();
            let totals: Vec<_> =
                live.iter().map(|pending| finished.saturating_duration_since(pending.arrived)).collect();
            context.statistics.record_execution(batch_size, times, &queued, &totals);
            for (pending, share) in live.into_iter().zip(shares) {
                context.responder.respond(pending.sequence, pending.reply, Ok(share));
            }
        }
        Err(error) => {
            for pending in live {
                context.statistics.record_failure(finished.saturating_duration_since(pending.arrived));
                context.responder.respond(pending.sequence, pending.reply, Err(error.clone()));
            }
        }
    }
}

fn run_batch(
    instance: &mut dyn ModelInstance,
    requests: &[&ValidatedRequest],
    times: &mut ExecutionTimes,
) -> Result<Vec<Vec<Tensor>>> {
    let merging = Instant::now();
    let inputs = merge_inputs(requests);
    let outputs = union_of_outputs(requests);
    times.input += merging.elapsed();
    let produced = instance.execute(&inputs, &outputs, times)?;
    let splitting = Instant::now();
    let shares = split_outputs(produced, requests);
    times.output += splitting.elapsed();
    shares
}
