//! `grpc.health.v1.Health`: SERVING once the server is ready, for load
//! balancers and Kubernetes gRPC probes. Like Triton, it answers for the
//! server whatever service a probe names, so a probe configured with any
//! service name works as it does against Triton.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::model_manager::ModelManager;
use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::health_server::Health;
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};
use crate::shutdown::ShutdownSignal;

/// The gRPC health service.
pub struct HealthService {
    manager: Arc<ModelManager>,
    shutdown: ShutdownSignal,
}

impl HealthService {
    /// A health service reporting `manager`'s readiness; its Watch streams
    /// end when `shutdown` fires so they do not hold the server open.
    pub fn new(manager: Arc<ModelManager>, shutdown: ShutdownSignal) -> Self {
        Self { manager, shutdown }
    }
}

fn status_of(ready: bool) -> HealthCheckResponse {
    let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
    HealthCheckResponse { status: status as i32 }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, _: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(status_of(self.manager.server_ready())))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let updates = WatchStream::new(self.manager.subscribe_readiness())
            .map(|ready| Ok(status_of(ready)))
            .take_until(self.shutdown.clone().fired());
        Ok(Response::new(Box::pin(updates)))
    }
}
