//! The gRPC side of restricted protocol categories
//! (`--grpc-restricted-protocol`): a call to a method of a restricted
//! category fails with UNAVAILABLE unless its metadata carries the
//! category's `triton-grpc-protocol-<key>` header with its value, as in
//! Triton. Server reflection belongs to no category and stays open.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tower::{Layer, Service};

use crate::restricted_api::{ApiCategory, ApiRestrictions};

/// The category of a gRPC method, from its path
/// (`/inference.GRPCInferenceService/ModelInfer`).
fn category_of(path: &str) -> Option<ApiCategory> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let category = match (service, method) {
        ("grpc.health.v1.Health", _) => ApiCategory::Health,
        ("inference.GRPCInferenceService", method) => match method {
            "ServerLive" | "ServerReady" | "ModelReady" => ApiCategory::Health,
            "ServerMetadata" | "ModelMetadata" => ApiCategory::Metadata,
            "ModelInfer" | "ModelStreamInfer" => ApiCategory::Inference,
            "ModelConfig" => ApiCategory::ModelConfig,
            "ModelStatistics" => ApiCategory::Statistics,
            "RepositoryIndex" | "RepositoryModelLoad" | "RepositoryModelUnload" => ApiCategory::ModelRepository,
            "TraceSetting" => ApiCategory::Trace,
            "LogSettings" => ApiCategory::Logging,
            method if method.contains("SharedMemory") => ApiCategory::SharedMemory,
            _ => return None,
        },
        _ => return None,
    };
    Some(category)
}

/// Puts [`RestrictedCalls`] around the services.
#[derive(Debug, Clone)]
pub struct RestrictionLayer {
    restrictions: Arc<ApiRestrictions>,
}

impl RestrictionLayer {
    /// A layer that enforces `restrictions`.
    pub fn new(restrictions: ApiRestrictions) -> Self {
        Self { restrictions: Arc::new(restrictions) }
    }
}

impl<S> Layer<S> for RestrictionLayer {
    type Service = RestrictedCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RestrictedCalls { inner, restrictions: Arc::clone(&self.restrictions) }
    }
}

/// Passes on the calls that their category's restriction allows and
/// answers the others with UNAVAILABLE.
#[derive(Debug, Clone)]
pub struct RestrictedCalls<S> {
    inner: S,
    restrictions: Arc<ApiRestrictions>,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for RestrictedCalls<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    ResponseBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        if self.restrictions.is_empty() {
            return Either::Left(self.inner.call(request));
        }
        let restriction = category_of(request.uri().path()).and_then(|category| self.restrictions.of(category));
        match restriction {
            Some(restriction) if !restriction.allows(request.headers()) => {
                let message = format!("This protocol is restricted, expecting header '{}'", restriction.header());
                Either::Right(ready(Ok(Status::unavailable(message).into_http())))
            }
            _ => Either::Left(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_fall_in_tritons_categories() {
        let inference = |method: &str| category_of(&format!("/inference.GRPCInferenceService/{method}"));
        assert_eq!(inference("ServerReady"), Some(ApiCategory::Health));
        assert_eq!(inference("ModelMetadata"), Some(ApiCategory::Metadata));
        assert_eq!(inference("ModelStreamInfer"), Some(ApiCategory::Inference));
        assert_eq!(inference("RepositoryModelLoad"), Some(ApiCategory::ModelRepository));
        assert_eq!(inference("CudaSharedMemoryRegister"), Some(ApiCategory::SharedMemory));
        assert_eq!(inference("SystemSharedMemoryStatus"), Some(ApiCategory::SharedMemory));
        assert_eq!(inference("LogSettings"), Some(ApiCategory::Logging));
        assert_eq!(inference("NoSuchMethod"), None);
        assert_eq!(category_of("/grpc.health.v1.Health/Watch"), Some(ApiCategory::Health));
        assert_eq!(category_of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), None);
        assert_eq!(category_of("garbage"), None);
    }
}
