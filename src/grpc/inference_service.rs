//! `inference.GRPCInferenceService`: health, metadata, configuration and
//! inference over the core model manager.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::answer_pacing::AnswerPacing;
use super::codec::{decode_repository_parameters, decode_request, encode_response, encode_statistics, status_of};
use super::trace_timing::{CallArrived, SendTrace};
use crate::identity::ServerIdentity;
use crate::inference::{ParameterValue, Parameters, parse_model_version};
use crate::logging::LogControl;
use crate::model_control::{LoadOptions, UnloadOptions};
use crate::model_manager::{ModelManager, TensorMetadata};
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::inference::model_metadata_response::TensorMetadata as ProtoTensorMetadata;
use crate::proto::inference::*;
use crate::shared_memory::MemoryKind;
use crate::shutdown::ShutdownSignal;
use crate::trace::{Activity, RequestTrace, SettingsUpdate, TRACEPARENT, TraceSettings, Tracer};

/// How many stream requests may run ahead of the response being sent; more
/// than this and the stream stops reading until responses drain.
const STREAM_WINDOW: usize = 256;

/// The gRPC inference service.
pub struct InferenceService {
    manager: Arc<ModelManager>,
    identity: ServerIdentity,
    logging: Arc<LogControl>,
    tracer: Arc<Tracer>,
    shutdown: ShutdownSignal,
    pacing: AnswerPacing,
}

impl InferenceService {
    /// A service over `manager`. Once `shutdown` fires, streams stop reading
    /// new requests, answer the ones they have, and end. Made on the
    /// runtime it will serve from, which decides whether the answers of a
    /// batch are paced ([`AnswerPacing`]).
    pub fn new(
        manager: Arc<ModelManager>,
        identity: ServerIdentity,
        logging: Arc<LogControl>,
        tracer: Arc<Tracer>,
        shutdown: ShutdownSignal,
    ) -> Self {
        Self { manager, identity, logging, tracer, shutdown, pacing: AnswerPacing::for_current_runtime() }
    }
}

/// A name field where Triton's protocol reads empty as "every one" (the
/// models of ModelStatistics, the regions of the shared-memory calls).
fn one_or_every(name: &str) -> Option<&str> {
    Some(name).filter(|name| !name.is_empty())
}

fn tensor_metadata(tensors: Vec<TensorMetadata>) -> Vec<ProtoTensorMetadata> {
    tensors
        .into_iter()
        .map(|tensor| ProtoTensorMetadata {
            name: tensor.name,
            datatype: tensor.datatype.protocol_name().to_string(),
            shape: tensor.shape,
        })
        .collect()
}

fn encode_trace_settings(settings: TraceSettings) -> TraceSettingResponse {
    let settings = settings
        .to_protocol()
        .into_iter()
        .map(|(name, value)| (name, trace_setting_response::SettingValue { value }))
        .collect();
    TraceSettingResponse { settings }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.manager.server_ready() }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let version = parse_model_version(&request.name, &request.version).map_err(status_of)?;
        Ok(Response::new(ModelReadyResponse { ready: self.manager.model_ready(&request.name, version) }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: self.identity.name.clone(),
            version: self.identity.version.clone(),
            extensions: self.identity.extensions.clone(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let version = parse_model_version(&request.name, &request.version).map_err(status_of)?;
        let metadata = self.manager.model_metadata(&request.name, version).map_err(status_of)?;
        Ok(Response::new(ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions.iter().map(i64::to_string).collect(),
            platform: metadata.platform,
            inputs: tensor_metadata(metadata.inputs),
            outputs: tensor_metadata(metadata.outputs),
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let arrived = request.extensions().get::<CallArrived>().map(|arrived| arrived.0);
        let traceparent = match self.tracer.follows_callers() {
            true => request.metadata().get(TRACEPARENT).and_then(|value| value.to_str().ok()).map(str::to_owned),
            false => None,
        };
        let request = decode_request(request.into_inner()).map_err(status_of)?;
        let trace = self.tracer.sample(&request.model_name, traceparent.as_deref());
        if let Some(trace) = &trace {
            let read = Instant::now();
            trace.stamp_at(Activity::GrpcWaitReadStart, arrived.unwrap_or(read));
            trace.stamp_at(Activity::GrpcWaitReadEnd, read);
        }
        let response = self.manager.infer(request, trace.clone()).await.map_err(status_of)?;
        self.pacing.wait_turn(response.batch_position).await;
        let mut response = Response::new(encode_response(response));
        if let Some(trace) = trace {
            response.extensions_mut().insert(SendTrace(trace));
        }
        Ok(response)
    }

    type ModelStreamInferStream = ResponseStream;

    /// Requests on one stream run concurrently; their responses are sent in
    /// the order the requests arrived, and a failed request becomes an
    /// `error_message` on the stream, which stays open.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let incoming = request.into_inner();
        let (pending, queued) = mpsc::channel(STREAM_WINDOW);
        let manager = Arc::clone(&self.manager);
        let tracer = Arc::clone(&self.tracer);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut messages = std::pin::pin!(incoming.take_until(shutdown.fired()));
            while let Some(message) = messages.next().await {
                let next = match message {
                    Ok(message) => {
                        let (manager, tracer) = (Arc::clone(&manager), Arc::clone(&tracer));
                        Ok(StreamedRequest(tokio::spawn(
                            async move { stream_response(&manager, &tracer, message).await },
                        )))
                    }
                    // The client cancelled or the connection broke: nothing
                    // more to read, and nobody to answer.
                    Err(status) if status.code() == tonic::Code::Cancelled => break,
                    // A message that could not be read (malformed, too large,
                    // badly compressed): the stream ends with that status
                    // after the answers before it, so the client learns why.
                    Err(status) => Err(status),
                };
                let failed = next.is_err();
                if pending.send(next).await.is_err() || failed {
                    break;
                }
            }
        });
        let responses = ReceiverStream::new(queued).then(|next| async move {
            let mut task = next?;
            let (response, trace) = (&mut task.0).await.unwrap_or_else(|error| {
                let failed = ModelStreamInferResponse {
                    error_message: format!("the request failed inside the server: {error}"),
                    infer_response: None,
                };
                (failed, None)
            });
            // A streamed response is sent as the stream hands it on.
            if let Some(trace) = trace {
                trace.stamp(Activity::GrpcSendStart);
                trace.stamp(Activity::GrpcSendEnd);
            }
            Ok(response)
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let request = request.into_inner();
        let version = parse_model_version(&request.name, &request.version).map_err(status_of)?;
        let config = self.manager.model_config(&request.name, version).map_err(status_of)?;
        Ok(Response::new(ModelConfigResponse { config: Some((*config).clone()) }))
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let request = request.into_inner();
        let version = parse_model_version(&request.name, &request.version).map_err(status_of)?;
        let statistics = self.manager.statistics(one_or_every(&request.name), version).map_err(status_of)?;
        Ok(Response::new(encode_statistics(statistics)))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let entries = self.manager.repository_index(request.into_inner().ready).map_err(status_of)?;
        let models = entries
            .into_iter()
            .map(|entry| repository_index_response::ModelIndex {
                name: entry.name,
                version: entry.version.map(|version| version.to_string()).unwrap_or_default(),
                state: entry.state.unwrap_or_default().to_string(),
                reason: entry.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let request = request.into_inner();
        let parameters = decode_repository_parameters(request.parameters);
        let options = LoadOptions::from_parameters(&request.model_name, &parameters).map_err(status_of)?;
        self.manager.load_model(&request.model_name, options).await.map_err(status_of)?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let request = request.into_inner();
        let parameters = decode_repository_parameters(request.parameters);
        let options = UnloadOptions::from_parameters(&request.model_name, &parameters).map_err(status_of)?;
        self.manager.unload_model(&request.model_name, options).await.map_err(status_of)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<SystemSharedMemoryStatusResponse>, Status> {
        let name = request.into_inner().name;
        let regions = self
            .manager
            .shared_memory()
            .status(one_or_every(&name))
            .map_err(status_of)?
            .into_iter()
            .map(|region| {
                let status = system_shared_memory_status_response::RegionStatus {
                    name: region.name.clone(),
                    key: region.key,
                    offset: region.offset,
                    byte_size: region.byte_size,
                };
                (region.name, status)
            })
            .collect();
        Ok(Response::new(SystemSharedMemoryStatusResponse { regions }))
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<SystemSharedMemoryRegisterResponse>, Status> {
        let request = request.into_inner();
        let registry = self.manager.shared_memory();
        registry.register(&request.name, &request.key, request.offset, request.byte_size).map_err(status_of)?;
        Ok(Response::new(SystemSharedMemoryRegisterResponse {}))
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<SystemSharedMemoryUnregisterResponse>, Status> {
        let name = request.into_inner().name;
        self.manager.shared_memory().unregister(MemoryKind::System, one_or_every(&name)).map_err(status_of)?;
        Ok(Response::new(SystemSharedMemoryUnregisterResponse {}))
    }

    async fn cuda_shared_memory_status(
        &self,
        request: Request<CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<CudaSharedMemoryStatusResponse>, Status> {
        let name = request.into_inner().name;
        let regions = self
            .manager
            .shared_memory()
            .cuda_status(one_or_every(&name))
            .map_err(status_of)?
            .into_iter()
            .map(|region| {
                let status = cuda_shared_memory_status_response::RegionStatus {
                    name: region.name.clone(),
                    device_id: region.device_id,
                    byte_size: region.byte_size,
                };
                (region.name, status)
            })
            .collect();
        Ok(Response::new(CudaSharedMemoryStatusResponse { regions }))
    }

    async fn cuda_shared_memory_register(
        &self,
        request: Request<CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<CudaSharedMemoryRegisterResponse>, Status> {
        let request = request.into_inner();
        self.manager
            .register_cuda_shared_memory(request.name, request.raw_handle, request.device_id, request.byte_size)
            .await
            .map_err(status_of)?;
        Ok(Response::new(CudaSharedMemoryRegisterResponse {}))
    }

    async fn cuda_shared_memory_unregister(
        &self,
        request: Request<CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<CudaSharedMemoryUnregisterResponse>, Status> {
        let name = request.into_inner().name;
        self.manager.shared_memory().unregister(MemoryKind::Cuda, one_or_every(&name)).map_err(status_of)?;
        Ok(Response::new(CudaSharedMemoryUnregisterResponse {}))
    }

    /// Reads, or changes and reads, the global trace settings or those of
    /// the model the request names (which must be ready).
    async fn trace_setting(
        &self,
        request: Request<TraceSettingRequest>,
    ) -> Result<Response<TraceSettingResponse>, Status> {
        let request = request.into_inner();
        let model = (!request.model_name.is_empty()).then_some(request.model_name.as_str());
        if let Some(model) = model {
            self.manager.check_model_ready(model, None).map_err(status_of)?;
        }
        let settings = if request.settings.is_empty() {
            self.tracer.settings(model)
        } else {
            let changes: Vec<(String, Vec<String>)> =
                request.settings.into_iter().map(|(name, setting)| (name, setting.value)).collect();
            let update = SettingsUpdate::parse(&changes).map_err(status_of)?;
            self.tracer.update(model, update).map_err(status_of)?
        };
        Ok(Response::new(encode_trace_settings(settings)))
    }

    async fn log_settings(
        &self,
        request: Request<LogSettingsRequest>,
    ) -> Result<Response<LogSettingsResponse>, Status> {
        use log_settings_request::setting_value::ParameterChoice as Requested;
        use log_settings_response::setting_value::ParameterChoice as Reported;
        let changes: Parameters = request
            .into_inner()
            .settings
            .into_iter()
            .filter_map(|(key, value)| {
                let value = match value.parameter_choice? {
                    Requested::BoolParam(on) => ParameterValue::Bool(on),
                    Requested::Uint32Param(level) => ParameterValue::Uint64(u64::from(level)),
                    Requested::StringParam(text) => ParameterValue::String(text),
                };
                Some((key, value))
            })
            .collect();
        let settings = self.logging.update(&changes).map_err(status_of)?;
        let setting = |choice| log_settings_response::SettingValue { parameter_choice: Some(choice) };
        let settings = [
            ("log_file", setting(Reported::StringParam(settings.file))),
            ("log_info", setting(Reported::BoolParam(settings.info))),
            ("log_warning", setting(Reported::BoolParam(settings.warning))),
            ("log_error", setting(Reported::BoolParam(settings.error))),
            ("log_verbose_level", setting(Reported::Uint32Param(settings.verbose_level))),
            ("log_format", setting(Reported::StringParam(settings.format.name().to_string()))),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
        Ok(Response::new(LogSettingsResponse { settings }))
    }
}

/// The task running one streamed request. When the client cancels the
/// stream, tonic drops the response stream and with it these handles, and
/// the tasks are aborted: a request still queued leaves its queue and never
/// runs, as Triton cancels the requests of a cancelled stream. (A client
/// that only closes its sending side still gets every answer.)
struct StreamedRequest(JoinHandle<(ModelStreamInferResponse, Option<Arc<RequestTrace>>)>);

impl Drop for StreamedRequest {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one streamed request, returning its response and, if it was
/// traced, its trace. Errors keep the request's model, version and id so
/// the client can tell which request failed.
async fn stream_response(
    manager: &ModelManager,
    tracer: &Tracer,
    message: ModelInferRequest,
) -> (ModelStreamInferResponse, Option<Arc<RequestTrace>>) {
    // The message was read just before this task started.
    let read = tracer.may_sample().then(Instant::now);
    let echo = ModelInferResponse {
        model_name: message.model_name.clone(),
        model_version: message.model_version.clone(),
        id: message.id.clone(),
        ..Default::default()
    };
    let mut trace = None;
    let outcome = match decode_request(message) {
        Ok(request) => {
            trace = tracer.sample(&request.model_name, None);
            if let (Some(trace), Some(read)) = (&trace, read) {
                trace.stamp_at(Activity::GrpcWaitReadStart, read);
                trace.stamp_at(Activity::GrpcWaitReadEnd, read);
            }
            manager.infer(request, trace.clone()).await
        }
        Err(error) => Err(error),
    };
    let (error_message, mut infer_response) = match outcome {
        Ok(response) => (String::new(), encode_response(response)),
        Err(error) => (error.message().to_string(), echo),
    };
    // Every answer is its request's last (this server runs no decoupled
    // models); Triton marks each one so, and clients that asked for
    // `triton_enable_empty_final_response` wait for the mark.
    infer_response.parameters.insert(
        "triton_final_response".to_string(),
        InferParameter { parameter_choice: Some(infer_parameter::ParameterChoice::BoolParam(true)) },
    );
    (ModelStreamInferResponse { error_message, infer_response: Some(infer_response) }, trace)
}
