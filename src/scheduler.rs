//! Per model version scheduling: a queue of validated requests and the
//! execution instances that take from it, each on a thread of its own so
//! that N instances run N requests at once and a slow model never holds up
//! another model's requests.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

use tokio::sync::oneshot;

use crate::backend::ModelInstance;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::validation::ValidatedRequest;

struct Job {
    request: ValidatedRequest,
    reply: oneshot::Sender<Result<Vec<Tensor>>>,
}

/// The queue and instances of one loaded model version.
pub struct Scheduler {
    label: String,
    queue: async_channel::Sender<Job>,
}

impl Scheduler {
    /// Starts one thread per instance. `label` names the model version in
    /// thread names and messages.
    pub fn start(label: &str, instances: Vec<(String, Box<dyn ModelInstance>)>) -> Result<Self> {
        let (queue, jobs) = async_channel::unbounded::<Job>();
        for (name, instance) in instances {
            let jobs = jobs.clone();
            thread::Builder::new()
                .name(name.clone())
                .spawn(move || run_instance(&name, instance, jobs))
                .map_err(|error| Error::internal(format!("{label}: cannot start an instance thread: {error}")))?;
        }
        Ok(Self { label: label.to_string(), queue })
    }

    /// Queues a request and waits for its outputs. If the caller stops
    /// waiting (the client went away), a request still in the queue is
    /// dropped without executing.
    pub async fn execute(&self, request: ValidatedRequest) -> Result<Vec<Tensor>> {
        let (reply, response) = oneshot::channel();
        self.queue
            .send(Job { request, reply })
            .await
            .map_err(|_| Error::unavailable(format!("{} is shutting down", self.label)))?;
        response.await.map_err(|_| Error::internal(format!("{}: the instance stopped before answering", self.label)))?
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Instances finish what is queued, then their threads end.
        self.queue.close();
    }
}

fn run_instance(name: &str, mut instance: Box<dyn ModelInstance>, jobs: async_channel::Receiver<Job>) {
    while let Ok(job) = jobs.recv_blocking() {
        if job.reply.is_closed() {
            tracing::debug!(instance = name, "skipping a request whose client went away");
            continue;
        }
        let request = job.request;
        let outcome = catch_unwind(AssertUnwindSafe(|| instance.execute(&request.inputs, &request.outputs)))
            .unwrap_or_else(|_| Err(Error::internal(format!("instance '{name}' panicked while executing a request"))));
        // The client may have gone away meanwhile; nobody is left to tell.
        let _ = job.reply.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::tensor::DataType;

    /// Echoes its inputs after waiting at a barrier shared by all instances,
    /// so the test only finishes if the instances run at the same time.
    struct RendezvousInstance(Arc<Barrier>);

    impl ModelInstance for RendezvousInstance {
        fn execute(&mut self, inputs: &[Tensor], _: &[String]) -> Result<Vec<Tensor>> {
            self.0.wait();
            Ok(inputs.to_vec())
        }
    }

    struct PanickingInstance;

    impl ModelInstance for PanickingInstance {
        fn execute(&mut self, _: &[Tensor], _: &[String]) -> Result<Vec<Tensor>> {
            panic!("backend bug")
        }
    }

    fn request(value: u8) -> ValidatedRequest {
        ValidatedRequest {
            batch_size: 1,
            inputs: vec![Tensor {
                name: "x".into(),
                datatype: DataType::Uint8,
                shape: vec![1],
                data: Bytes::from(vec![value]),
            }],
            outputs: vec!["x".into()],
        }
    }

    #[tokio::test]
    async fn instances_execute_in_parallel() {
        let barrier = Arc::new(Barrier::new(2));
        let instances: Vec<(String, Box<dyn ModelInstance>)> = (0..2)
            .map(|i| (format!("m_{i}"), Box::new(RendezvousInstance(barrier.clone())) as Box<dyn ModelInstance>))
            .collect();
        let scheduler = Scheduler::start("model 'm' version 1", instances).unwrap();
        let both = async { tokio::join!(scheduler.execute(request(1)), scheduler.execute(request(2))) };
        let (first, second) = tokio::time::timeout(Duration::from_secs(10), both).await.expect("instances deadlocked");
        assert_eq!(first.unwrap()[0].data[..], [1]);
        assert_eq!(second.unwrap()[0].data[..], [2]);
    }

    #[tokio::test]
    async fn a_panicking_instance_reports_an_error_and_keeps_serving() {
        let scheduler = Scheduler::start(
            "model 'p' version 1",
            vec![("p_0".into(), Box::new(PanickingInstance) as Box<dyn ModelInstance>)],
        )
        .unwrap();
        for _ in 0..2 {
            let error = scheduler.execute(request(0)).await.unwrap_err();
            assert!(error.message().contains("panicked"), "{}", error.message());
        }
    }
}
