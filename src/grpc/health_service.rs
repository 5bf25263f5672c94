//! `grpc.health.v1.Health`: SERVING once the server is ready, for load
//! balancers and Kubernetes gRPC probes.

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

/// Services a health request may name: the whole server (empty name) or
/// the inference service.
const KNOWN_SERVICES: [&str; 2] = ["", "inference.GRPCInferenceService"];

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
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if !KNOWN_SERVICES.contains(&service.as_str()) {
            return Err(Status::not_found(format!("unknown service '{service}'")));
        }
        Ok(Response::new(status_of(self.manager.server_ready())))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        if !KNOWN_SERVICES.contains(&service.as_str()) {
            // The health protocol answers an unknown service on the stream
            // and keeps it open, in case the service appears later.
            let unknown = HealthCheckResponse { status: ServingStatus::ServiceUnknown as i32 };
            let stream = futures::stream::once(async move { Ok(unknown) })
                .chain(futures::stream::pending())
                .take_until(self.shutdown.clone().fired());
            return Ok(Response::new(Box::pin(stream)));
        }
        let updates = WatchStream::new(self.manager.subscribe_readiness())
            .map(|ready| Ok(status_of(ready)))
            .take_until(self.shutdown.clone().fired());
        Ok(Response::new(Box::pin(updates)))
    }
}
