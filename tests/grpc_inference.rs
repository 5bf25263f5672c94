//! The gRPC inference protocol end to end: the real binary, a tonic client.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestServer, assert_simple_response, int32_input, int32_output, request, simple_request};
use futures::StreamExt;
use tonic::Code;
use tritonrs::proto::health::HealthCheckRequest;
use tritonrs::proto::health::health_check_response::ServingStatus;
use tritonrs::proto::health::health_client::HealthClient;
use tritonrs::proto::inference::infer_parameter::ParameterChoice;
use tritonrs::proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use tritonrs::proto::inference::*;

#[tokio::test]
async fn health_and_metadata_describe_the_repository() {
    let server = TestServer::start_ready(&[]).await;
    let mut client = server.client().await;

    assert!(client.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(client.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let ready = |name: &str, version: &str| ModelReadyRequest { name: name.into(), version: version.into() };
    assert!(client.model_ready(ready("simple", "")).await.unwrap().into_inner().ready);
    assert!(client.model_ready(ready("simple", "1")).await.unwrap().into_inner().ready);
    assert!(!client.model_ready(ready("simple", "2")).await.unwrap().into_inner().ready);
    assert!(!client.model_ready(ready("no_such_model", "")).await.unwrap().into_inner().ready);

    let metadata = client.server_metadata(ServerMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(metadata.name, "triton");
    assert_eq!(metadata.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(metadata.extensions, common::EXTENSIONS);

    let model = client
        .model_metadata(ModelMetadataRequest { name: "simple".into(), version: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(model.versions, ["1"]);
    assert_eq!(model.platform, "onnxruntime_onnx");
    let inputs: Vec<(&str, &str, &[i64])> =
        model.inputs.iter().map(|t| (t.name.as_str(), t.datatype.as_str(), t.shape.as_slice())).collect();
    assert_eq!(inputs, [("INPUT0", "INT32", &[-1, 16][..]), ("INPUT1", "INT32", &[-1, 16][..])]);

    let error = client
        .model_metadata(ModelMetadataRequest { name: "no_such_model".into(), version: String::new() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(error.message().contains("no_such_model"), "{}", error.message());
    server.stop().await;
}

#[tokio::test]
async fn model_config_is_auto_completed_like_triton() {
    let server = TestServer::start_ready(&[]).await;
    let mut client = server.client().await;
    let config = |name: &str| ModelConfigRequest { name: name.into(), version: String::new() };

    let simple = client.model_config(config("simple")).await.unwrap().into_inner().config.unwrap();
    assert_eq!(simple.max_batch_size, 8);
    assert_eq!(simple.backend, "onnxruntime");
    assert_eq!(simple.default_model_filename, "model.onnx");
    assert_eq!(simple.instance_group.len(), 1);
    assert_eq!(simple.instance_group[0].count, 2);
    assert_eq!(simple.instance_group[0].kind(), model_instance_group::Kind::Cpu);

    // No config.pbtxt: everything comes from the ONNX file.
    let scale = client.model_config(config("scale_fp16")).await.unwrap().into_inner().config.unwrap();
    assert_eq!(scale.name, "scale_fp16");
    assert_eq!(scale.platform, "onnxruntime_onnx");
    assert_eq!(scale.max_batch_size, 4);
    assert_eq!(scale.input.len(), 1);
    assert_eq!(scale.input[0].name, "INPUT");
    assert_eq!(scale.input[0].data_type(), DataType::TypeFp16);
    assert_eq!(scale.input[0].dims, [4]);
    assert_eq!(scale.output[0].name, "OUTPUT");

    // A fixed first dimension cannot be a batch dimension.
    let busy = client.model_config(config("busy_loop")).await.unwrap().into_inner().config.unwrap();
    assert_eq!(busy.max_batch_size, 0);
    assert_eq!(busy.input[0].dims, [1]);
    server.stop().await;
}

#[tokio::test]
async fn infer_returns_sums_and_differences() {
    let server = TestServer::start_ready(&[]).await;
    let mut client = server.client().await;
    for batch in [1, 3, 8] {
        let mut infer = simple_request(batch);
        infer.id = format!("batch-{batch}");
        let response = client.model_infer(infer).await.unwrap().into_inner();
        assert_eq!(response.id, format!("batch-{batch}"));
        assert_eq!(response.model_name, "simple");
        assert_eq!(response.model_version, "1");
        assert_eq!(response.outputs[0].shape, [batch as i64, 16]);
        assert_simple_response(&response, batch);
    }

    // Only the requested output comes back.
    let mut infer = simple_request(1);
    infer.outputs = vec![InferRequestedOutputTensor { name: "OUTPUT1".into(), ..Default::default() }];
    let response = client.model_infer(infer).await.unwrap().into_inner();
    assert_eq!(response.outputs.len(), 1);
    assert_eq!(int32_output(&response, "OUTPUT1"), (-1..15).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn inference_answers_are_compressed_at_the_level_asked_for() {
    use tonic::codec::CompressionEncoding::{Deflate, Gzip};
    let encoding_of = |metadata: &tonic::metadata::MetadataMap| {
        metadata.get("grpc-encoding").map(|value| value.to_str().unwrap().to_string())
    };
    for (level, accepted, expected) in [
        ("none", &[Gzip, Deflate][..], None),
        ("low", &[Deflate, Gzip][..], Some("gzip")),
        ("high", &[Deflate, Gzip][..], Some("deflate")),
        ("high", &[Gzip][..], Some("gzip")),
    ] {
        let server = TestServer::start_ready(&[&format!("--grpc-infer-response-compression-level={level}")]).await;
        let mut client = server.client().await;
        for encoding in accepted {
            client = client.accept_compressed(*encoding);
        }
        let response = client.model_infer(simple_request(4)).await.unwrap();
        assert_eq!(encoding_of(response.metadata()).as_deref(), expected, "level {level}, accepting {accepted:?}");
        assert_simple_response(response.get_ref(), 4);
        // As in Triton, only inference answers are compressed.
        let metadata = ModelMetadataRequest { name: "simple".into(), version: String::new() };
        let response = client.model_metadata(metadata).await.unwrap();
        assert_eq!(encoding_of(response.metadata()), None, "level {level}");
        assert_eq!(response.get_ref().name, "simple");
        server.stop().await;
    }
}

#[tokio::test]
async fn typed_contents_and_bytes_tensors() {
    let server = TestServer::start_ready(&[]).await;
    let mut client = server.client().await;
    let strings = |values: Vec<String>| InferTensorContents {
        bytes_contents: values.into_iter().map(String::into_bytes).collect(),
        ..Default::default()
    };
    let input = |name: &str, contents| InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![1, 16],
        contents: Some(contents),
        ..Default::default()
    };
    let infer = ModelInferRequest {
        model_name: "simple_string".into(),
        inputs: vec![
            input("INPUT0", strings((0..16).map(|i| i.to_string()).collect())),
            input("INPUT1", strings((0..16).map(|i| (i * 10).to_string()).collect())),
        ],
        ..Default::default()
    };
    let response = client.model_infer(infer).await.unwrap().into_inner();
    let index = response.outputs.iter().position(|output| output.name == "OUTPUT0").unwrap();
    assert_eq!(response.outputs[index].datatype, "BYTES");
    let raw = &response.raw_output_contents[index];
    let mut sums = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        sums.push(String::from_utf8(rest[4..4 + length].to_vec()).unwrap());
        rest = &rest[4 + length..];
    }
    assert_eq!(sums, (0..16).map(|i| (i * 11).to_string()).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn every_invalid_request_is_rejected_and_the_server_keeps_serving() {
    let server = TestServer::start_ready(&[]).await;
    let mut client = server.client().await;
    let good = || int32_input("INPUT1", &[1, 16], &[1; 16]);
    let cases: Vec<(ModelInferRequest, Code, &str)> = vec![
        (
            request(
                "simple",
                vec![int32_input("INPUT0", &[1, 16], &[0; 16]), good(), int32_input("EXTRA", &[1, 16], &[0; 16])],
            ),
            Code::InvalidArgument,
            "unexpected input 'EXTRA'",
        ),
        (request("simple", vec![good()]), Code::InvalidArgument, "missing input 'INPUT0'"),
        (
            request(
                "simple",
                vec![
                    (
                        InferInputTensor { datatype: "FP32".into(), ..int32_input("INPUT0", &[1, 16], &[0; 16]).0 },
                        Bytes::from(vec![0u8; 64]),
                    ),
                    good(),
                ],
            ),
            Code::InvalidArgument,
            "input 'INPUT0' has datatype FP32, expected INT32",
        ),
        (
            request("simple", vec![int32_input("INPUT0", &[1, 15], &[0; 15]), good()]),
            Code::InvalidArgument,
            "input 'INPUT0' has shape [1,15], expected [-1,16]",
        ),
        (
            request(
                "simple",
                vec![int32_input("INPUT0", &[9, 16], &[0; 144]), int32_input("INPUT1", &[9, 16], &[0; 144])],
            ),
            Code::InvalidArgument,
            "input 'INPUT0' has batch size 9, expected 1 to max_batch_size 8",
        ),
        (
            request("simple", vec![(int32_input("INPUT0", &[1, 16], &[0; 16]).0, Bytes::from(vec![0u8; 60])), good()]),
            Code::InvalidArgument,
            "input 'INPUT0' has 60 bytes of data, expected 64",
        ),
        (
            request(
                "identity_bytes",
                vec![(
                    InferInputTensor {
                        name: "INPUT0".into(),
                        datatype: "BYTES".into(),
                        shape: vec![1, 1],
                        ..Default::default()
                    },
                    Bytes::from_static(b"\x09\x00\x00\x00abc"),
                )],
            ),
            Code::InvalidArgument,
            "input 'INPUT0' has malformed BYTES data: element 0 declares 9 bytes but only 3 remain",
        ),
        (
            ModelInferRequest {
                outputs: vec![InferRequestedOutputTensor { name: "OUTPUT7".into(), ..Default::default() }],
                ..simple_request(1)
            },
            Code::InvalidArgument,
            "unexpected requested output 'OUTPUT7'",
        ),
        (
            ModelInferRequest { model_version: "abc".into(), ..simple_request(1) },
            Code::InvalidArgument,
            "version 'abc'",
        ),
        (
            ModelInferRequest { model_version: "7".into(), ..simple_request(1) },
            Code::NotFound,
            "model 'simple' has no version 7",
        ),
        (
            ModelInferRequest { model_name: "no_such_model".into(), ..simple_request(1) },
            Code::NotFound,
            "Request for unknown model: 'no_such_model' is not found; it is not in the model repository",
        ),
    ];
    for (bad, code, expected) in cases {
        let error = client.model_infer(bad).await.unwrap_err();
        assert_eq!(error.code(), code, "{}", error.message());
        assert!(error.message().contains(expected), "expected '{expected}' in '{}'", error.message());
        // Nothing was lost: the next good request still works.
        let response = client.model_infer(simple_request(2)).await.unwrap().into_inner();
        assert_simple_response(&response, 2);
    }
    assert!(client.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
    server.stop().await;
}

#[tokio::test]
async fn shared_memory_rpcs_are_off_unless_clients_are_allowed_shared_memory() {
    let server = TestServer::start_ready(&[]).await;
    let mut client = server.client().await;
    let error = client.cuda_shared_memory_status(CudaSharedMemoryStatusRequest::default()).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.message().contains("--allow-client-shm=true"), "{}", error.message());
    let error = client.system_shared_memory_status(SystemSharedMemoryStatusRequest::default()).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.message().contains("--allow-client-shm=true"), "{}", error.message());
    server.stop().await;
}

#[tokio::test]
async fn stream_answers_in_order_and_survives_bad_requests() {
    let server = TestServer::start_ready(&[]).await;
    let mut client = server.client().await;
    let requests: Vec<ModelInferRequest> = (0..40)
        .map(|i| {
            let mut infer = if i % 10 == 3 {
                ModelInferRequest { model_name: "no_such_model".into(), ..simple_request(1) }
            } else {
                simple_request(1 + i % 4)
            };
            infer.id = format!("request-{i}");
            infer
        })
        .collect();
    let mut responses = client.model_stream_infer(futures::stream::iter(requests)).await.unwrap().into_inner();
    let mut seen = 0;
    while let Some(message) =
        tokio::time::timeout(Duration::from_secs(30), responses.next()).await.expect("stream stalled")
    {
        let message = message.unwrap();
        let response = message.infer_response.unwrap();
        assert_eq!(response.id, format!("request-{seen}"), "responses come back in request order");
        // Each answer is its request's last, and says so as Triton does.
        let final_mark = response.parameters.get("triton_final_response").and_then(|p| p.parameter_choice.clone());
        assert_eq!(final_mark, Some(ParameterChoice::BoolParam(true)));
        if seen % 10 == 3 {
            assert!(message.error_message.contains("no_such_model"), "{}", message.error_message);
        } else {
            assert!(message.error_message.is_empty(), "{}", message.error_message);
            assert_simple_response(&response, 1 + seen % 4);
        }
        seen += 1;
    }
    assert_eq!(seen, 40);
    server.stop().await;
}

#[tokio::test]
async fn health_service_serves_once_ready() {
    let server = TestServer::start_ready(&[]).await;
    let mut health = HealthClient::new(server.channel().await);
    // As in Triton, any service name gets the server's readiness, so a
    // Kubernetes probe works whatever service it is configured with.
    for service in ["", "inference.GRPCInferenceService", "any.Service"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(status.status(), ServingStatus::Serving);
    }
    let mut watch = health.watch(HealthCheckRequest::default()).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    server.stop().await;
}

fn busy_request(iterations: i64) -> ModelInferRequest {
    let tensor =
        InferInputTensor { name: "ITERATIONS".into(), datatype: "INT64".into(), shape: vec![1], ..Default::default() };
    request("busy_loop", vec![(tensor, Bytes::copy_from_slice(&iterations.to_le_bytes()))])
}

fn busy_count(response: &ModelInferResponse) -> i64 {
    i64::from_le_bytes(response.raw_output_contents[0][..8].try_into().unwrap())
}

/// Iterations of busy_loop that take at least `target` on this machine.
async fn calibrate_busy_loop(server: &TestServer, target: Duration) -> i64 {
    let mut client = server.client().await;
    let probe = 200_000;
    let started = Instant::now();
    let response = client.model_infer(busy_request(probe)).await.unwrap().into_inner();
    assert_eq!(busy_count(&response), probe);
    let per_iteration = started.elapsed().as_secs_f64() / probe as f64;
    (target.as_secs_f64() / per_iteration) as i64
}

#[tokio::test]
async fn a_slow_model_does_not_delay_other_models() {
    let server = TestServer::start_ready(&[]).await;
    let iterations = calibrate_busy_loop(&server, Duration::from_secs(2)).await;
    let mut busy_client = server.client().await;
    let busy = tokio::spawn(async move {
        let started = Instant::now();
        let response = busy_client.model_infer(busy_request(iterations)).await.unwrap().into_inner();
        (busy_count(&response), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut client = server.client().await;
    let started = Instant::now();
    for _ in 0..20 {
        let response = client.model_infer(simple_request(1)).await.unwrap().into_inner();
        assert_simple_response(&response, 1);
    }
    let simple_time = started.elapsed();
    assert!(!busy.is_finished(), "the busy request finished before 20 simple requests did ({simple_time:?})");
    let (count, busy_time) = busy.await.unwrap();
    assert_eq!(count, iterations);
    assert!(simple_time < busy_time / 2, "simple requests took {simple_time:?}, the busy one {busy_time:?}");
    server.stop().await;
}

#[tokio::test]
async fn sigterm_answers_in_flight_requests_then_exits_cleanly() {
    let server = TestServer::start_ready(&[]).await;
    let iterations = calibrate_busy_loop(&server, Duration::from_millis(1500)).await;
    let mut in_flight = Vec::new();
    for _ in 0..2 {
        let mut client = server.client().await;
        in_flight.push(tokio::spawn(async move { client.model_infer(busy_request(iterations)).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    for request in in_flight {
        let response = request.await.unwrap().expect("an in-flight request is answered during shutdown").into_inner();
        assert_eq!(busy_count(&response), iterations);
    }
    let mut server = server;
    let status = server.wait_exit(Duration::from_secs(10)).await.expect("the server exits after draining");
    assert!(status.success(), "exit status {status:?}");
    let log = server.log();
    assert!(log.contains("received SIGTERM"), "{log}");
    // Every model's instances are released before the process exits.
    let unloaded = log.find("unloaded model=simple version=1").unwrap_or_else(|| panic!("no unload in: {log}"));
    let stopped = log.find("server stopped").unwrap_or_else(|| panic!("no stop in: {log}"));
    assert!(unloaded < stopped, "{log}");
}

#[tokio::test]
async fn the_repository_index_lists_the_models_and_mode_none_refuses_loads() {
    let server = TestServer::start_ready(&[]).await;
    let mut client = server.client().await;
    let index = client.repository_index(RepositoryIndexRequest::default()).await.unwrap().into_inner();
    let simple = index.models.iter().find(|model| model.name == "simple").expect("simple is in the index");
    assert_eq!((simple.version.as_str(), simple.state.as_str(), simple.reason.as_str()), ("1", "READY", ""));
    let ready = client.repository_index(RepositoryIndexRequest { ready: true, ..Default::default() }).await.unwrap();
    assert_eq!(ready.into_inner().models.len(), index.models.len(), "every example model is ready");

    let load = RepositoryModelLoadRequest { model_name: "simple".into(), ..Default::default() };
    let error = client.repository_model_load(load).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.message().contains("--model-control-mode=explicit"), "{}", error.message());
    let unload = RepositoryModelUnloadRequest { model_name: "simple".into(), ..Default::default() };
    assert_eq!(client.repository_model_unload(unload).await.unwrap_err().code(), Code::Unavailable);
    // Refused, so nothing changed.
    let response = client.model_infer(simple_request(2)).await.unwrap().into_inner();
    assert_simple_response(&response, 2);
    server.stop().await;
}

/// Sends `body` as the whole request body of a ModelInfer call over a bare
/// HTTP/2 connection and returns the answer's status, from its trailers or,
/// for a trailers-only answer, its headers.
async fn raw_model_infer(address: &str, body: Bytes) -> tonic::Status {
    let socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let (sender, connection) = h2::client::handshake(socket).await.unwrap();
    tokio::spawn(connection);
    let mut sender = sender.ready().await.unwrap();
    let request = http::Request::post(format!("http://{address}/inference.GRPCInferenceService/ModelInfer"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (answer, mut stream) = sender.send_request(request, false).unwrap();
    stream.send_data(body, true).unwrap();
    let answer = answer.await.unwrap();
    let (head, mut body) = answer.into_parts();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or(head.headers);
    tonic::Status::from_header_map(&trailers).expect("the answer carries a grpc-status")
}

/// A message with gRPC's 5-byte prefix.
fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut framed = vec![flag];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

#[tokio::test]
async fn model_infer_bodies_that_are_not_one_message_are_rejected_and_the_server_keeps_serving() {
    use prost::Message;
    let server = TestServer::start_ready(&[]).await;
    let message = simple_request(1).encode_to_vec();

    let ok = raw_model_infer(&server.grpc_address, Bytes::from(framed(0, &message))).await;
    assert_eq!(ok.code(), Code::Ok, "a well-framed call succeeds: {ok:?}");

    let mut two = framed(0, &message);
    two.extend(framed(0, &message));
    let refusals = [
        (Vec::new(), "Missing request message."),
        (framed(1, &message), "compressed-flag but no grpc-encoding"),
        (two, "carries one message"),
        (framed(0, &message)[..3].to_vec(), "inside the message prefix"),
    ];
    for (body, expected) in refusals {
        let status = raw_model_infer(&server.grpc_address, Bytes::from(body)).await;
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(status.message().contains(expected), "{status:?} should say {expected:?}");
    }

    let mut client = server.client().await;
    let response = client.model_infer(simple_request(2)).await.unwrap().into_inner();
    assert_simple_response(&response, 2);
    server.stop().await;
}

/// How long an HTTP/2 connection to `address` that opens no stream stays
/// open, up to `limit` (`None`: still open then).
async fn idle_connection_lifetime(address: &str, limit: Duration) -> Option<Duration> {
    let socket = tokio::net::TcpStream::connect(address).await.unwrap();
    // The sender stays alive, so the client does not close the connection.
    let (_sender, connection) = h2::client::handshake(socket).await.unwrap();
    let opened = Instant::now();
    tokio::time::timeout(limit, connection).await.ok().map(|_| opened.elapsed())
}

#[tokio::test]
async fn connections_end_at_their_max_age_and_clients_reconnect() {
    let aged = TestServer::start_ready(&["--grpc-max-connection-age=300", "--grpc-max-connection-age-grace=100"]).await;
    let plain = TestServer::start_ready(&[]).await;
    let lifetime = idle_connection_lifetime(&aged.grpc_address, Duration::from_secs(10)).await;
    assert!(lifetime.is_some_and(|life| life >= Duration::from_millis(250)), "{lifetime:?}");
    assert_eq!(idle_connection_lifetime(&plain.grpc_address, Duration::from_secs(1)).await, None);
    // A client past the age reconnects and goes on.
    let mut client = aged.client().await;
    for _ in 0..3 {
        let response = client.model_infer(simple_request(2)).await.unwrap().into_inner();
        assert_simple_response(&response, 2);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    aged.stop().await;
    plain.stop().await;
}

/// Whether the server sends an HTTP/2 PING on an idle connection to
/// `address` within `limit`, read off the raw frames.
async fn pings_idle_peer(address: &str, limit: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    // The client preface, then an empty SETTINGS frame.
    socket.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    socket.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let read_frames = async {
        loop {
            let mut header = [0u8; 9];
            if socket.read_exact(&mut header).await.is_err() {
                return false;
            }
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; length];
            if socket.read_exact(&mut payload).await.is_err() {
                return false;
            }
            const PING: u8 = 6;
            if header[3] == PING {
                return true;
            }
        }
    };
    tokio::time::timeout(limit, read_frames).await.unwrap_or(false)
}

#[tokio::test]
async fn keepalive_times_set_by_flags_ping_idle_peers() {
    // Times a user sets: an HTTP/2 PING after 200 idle milliseconds.
    let pinging = TestServer::start_ready(&["--grpc-keepalive-time=200", "--grpc-keepalive-timeout=5000"]).await;
    assert!(pings_idle_peer(&pinging.grpc_address, Duration::from_secs(5)).await);
    // Triton's defaults ping after two idle hours (the kernel's TCP
    // keepalive does it here): nothing in the first second.
    let plain = TestServer::start_ready(&[]).await;
    assert!(!pings_idle_peer(&plain.grpc_address, Duration::from_secs(1)).await);
    pinging.stop().await;
    plain.stop().await;
}
