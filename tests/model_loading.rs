//! How the server loads a model repository and reports models that fail.

mod common;

use std::time::Duration;

use common::{TestServer, copy_model, copy_simple_as, examples, simple_request};
use tonic::Code;
use tonic::transport::Channel;
use tritonrs::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tritonrs::proto::inference::{
    ModelInferRequest, ModelMetadataRequest, ModelReadyRequest, ModelStatisticsRequest, ServerReadyRequest,
};

fn metadata(name: &str) -> ModelMetadataRequest {
    ModelMetadataRequest { name: name.into(), version: String::new() }
}

/// Why `model` is not serving: its metadata is refused as UNAVAILABLE, with
/// the reason as the message.
async fn unavailable_reason(client: &mut GrpcInferenceServiceClient<Channel>, model: &str) -> String {
    let error = client.model_metadata(metadata(model)).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    error.message().to_string()
}

#[tokio::test]
async fn a_missing_onnx_runtime_library_is_explained() {
    let repository = format!("--model-repository={}", examples().display());
    let server = TestServer::start(&[
        &repository,
        "--exit-on-error=false",
        "--backend-config=onnxruntime,library=/nonexistent/libonnxruntime.so.1.31.1",
    ]);
    server.wait_loaded().await;
    let mut client = server.client().await;
    assert!(!client.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let reason = unavailable_reason(&mut client, "simple").await;
    assert!(reason.contains("/nonexistent/libonnxruntime.so.1.31.1"), "{reason}");
    assert!(server.log().contains("does not exist"), "{}", server.log());
    server.stop().await;
}

#[tokio::test]
async fn a_failing_model_stops_the_server_unless_told_otherwise() {
    let repository = tempfile::tempdir().unwrap();
    copy_model(&examples().join("simple"), repository.path(), "simple");
    copy_model(&examples().join("simple"), repository.path(), "broken");
    std::fs::write(repository.path().join("broken/config.pbtxt"), "name: \"broken\"\nmax_batch_size: eight\n").unwrap();
    let flag = format!("--model-repository={}", repository.path().display());

    // Triton's default, --exit-on-error=true: load everything, then exit 1.
    let mut strict = TestServer::start(&[&flag]);
    let status = strict.wait_exit(Duration::from_secs(30)).await.expect("the server exits by itself");
    assert_eq!(status.code(), Some(1), "log:\n{}", strict.log());
    assert!(strict.log().contains("broken/config.pbtxt"), "{}", strict.log());

    let server = TestServer::start(&[&flag, "--exit-on-error=false"]);
    server.wait_loaded().await;
    let mut client = server.client().await;
    let response = client.model_infer(simple_request(1)).await.unwrap().into_inner();
    common::assert_simple_response(&response, 1);
    let ready = ModelReadyRequest { name: "broken".into(), version: String::new() };
    assert!(!client.model_ready(ready).await.unwrap().into_inner().ready);
    let reason = unavailable_reason(&mut client, "broken").await;
    assert!(reason.contains("line 2"), "{reason}");
    // Its statistics are an error too, not an empty list that would pass for
    // an idle model.
    let statistics = |name: &str, version: &str| ModelStatisticsRequest { name: name.into(), version: version.into() };
    let error = client.model_statistics(statistics("broken", "")).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.message().contains("line 2"), "{}", error.message());
    // Every model's statistics list the ready versions; as in Triton, a
    // version without a model name is ignored.
    for version in ["", "1"] {
        let all = client.model_statistics(statistics("", version)).await.unwrap().into_inner();
        assert_eq!(all.model_stats.iter().map(|stats| stats.name.as_str()).collect::<Vec<_>>(), ["simple"]);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_model_in_two_repositories_is_refused() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    copy_model(&examples().join("simple"), first.path(), "simple");
    copy_model(&examples().join("simple"), second.path(), "simple");
    copy_model(&examples().join("scale_fp16"), second.path(), "scale_fp16");
    let server = TestServer::start(&[
        &format!("--model-repository={}", first.path().display()),
        &format!("--model-repository={}", second.path().display()),
        "--exit-on-error=false",
    ]);
    server.wait_loaded().await;
    let mut client = server.client().await;
    let reason = unavailable_reason(&mut client, "simple").await;
    assert!(reason.contains("more than one repository"), "{reason}");
    assert!(client.model_metadata(metadata("scale_fp16")).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn gpu_instances_without_a_usable_gpu_fail_with_the_reason() {
    let repository = tempfile::tempdir().unwrap();
    copy_model(&examples().join("simple"), repository.path(), "simple");
    copy_simple_as(repository.path(), "on_gpu", "instance_group [ { kind: KIND_GPU count: 1 } ]\n");
    let server =
        TestServer::start(&[&format!("--model-repository={}", repository.path().display()), "--exit-on-error=false"]);
    server.wait_loaded().await;
    let mut client = server.client().await;
    let reason = unavailable_reason(&mut client, "on_gpu").await;
    assert!(reason.contains("KIND_GPU instances need"), "{reason}");
    // KIND_AUTO on a server without a GPU means the CPU.
    let response = client.model_infer(simple_request(1)).await.unwrap().into_inner();
    common::assert_simple_response(&response, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_missing_repository_is_a_startup_error() {
    let mut server = TestServer::start(&["--model-repository=/nonexistent/models"]);
    let status = server.wait_exit(Duration::from_secs(30)).await.expect("the server exits by itself");
    assert_eq!(status.code(), Some(1));
    assert!(server.log().contains("cannot read model repository '/nonexistent/models'"), "{}", server.log());
}

#[tokio::test]
async fn a_model_whose_instances_are_all_passive_fails_to_load() {
    // Triton never sends requests to passive instances: such a model could
    // only leave its requests waiting.
    let repository = tempfile::tempdir().unwrap();
    copy_model(&examples().join("simple"), repository.path(), "simple");
    copy_simple_as(repository.path(), "idle", "instance_group [ { kind: KIND_CPU passive: true } ]\n");
    let server =
        TestServer::start(&[&format!("--model-repository={}", repository.path().display()), "--exit-on-error=false"]);
    server.wait_loaded().await;
    let mut client = server.client().await;
    let reason = unavailable_reason(&mut client, "idle").await;
    assert!(reason.contains("every instance group is passive"), "{reason}");
    let response = client.model_infer(simple_request(1)).await.unwrap().into_inner();
    common::assert_simple_response(&response, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_model_file_may_be_a_directory_holding_model_onnx() {
    // Triton's layout for models whose weights sit in files beside them:
    // <model>/<version>/model.onnx/model.onnx. With and without a
    // configuration (the second is auto-completed from that file).
    let repository = tempfile::tempdir().unwrap();
    for name in ["simple", "simple_auto"] {
        copy_model(&examples().join("simple"), repository.path(), name);
        let version = repository.path().join(name).join("1");
        std::fs::rename(version.join("model.onnx"), version.join("weights.onnx")).unwrap();
        std::fs::create_dir(version.join("model.onnx")).unwrap();
        std::fs::rename(version.join("weights.onnx"), version.join("model.onnx/model.onnx")).unwrap();
    }
    std::fs::remove_file(repository.path().join("simple_auto/config.pbtxt")).unwrap();
    let server = TestServer::start(&[&format!("--model-repository={}", repository.path().display())]);
    server.wait_ready().await;
    let mut client = server.client().await;
    for name in ["simple", "simple_auto"] {
        let request = ModelInferRequest { model_name: name.into(), ..simple_request(1) };
        let response = client.model_infer(request).await.unwrap().into_inner();
        common::assert_simple_response(&response, 1);
    }
    server.stop().await;
}

/// A `model_warmup` for the simple model: `batch_size` rows of zeros and
/// of the file `ones` (under the model's `warmup/` folder), `count` times.
fn simple_warmup(batch_size: u32, count: u32, ones_file: &str) -> String {
    format!(
        r#"model_warmup [ {{ name: "zeros and ones" batch_size: {batch_size} count: {count}
             inputs {{ key: "INPUT0" value: {{ data_type: TYPE_INT32 dims: [ 16 ] zero_data: true }} }}
             inputs {{ key: "INPUT1" value: {{ data_type: TYPE_INT32 dims: [ 16 ] input_data_file: "{ones_file}" }} }} }} ]
"#
    )
}

#[tokio::test]
async fn every_instance_runs_the_warmup_samples_before_the_model_is_ready() {
    let repository = tempfile::tempdir().unwrap();
    let warmup = simple_warmup(4, 2, "ones");
    copy_simple_as(repository.path(), "warm", &format!("instance_group [ {{ count: 2 kind: KIND_CPU }} ]\n{warmup}"));
    let ones: Vec<u8> = [1i32; 16].iter().flat_map(|one| one.to_le_bytes()).collect();
    std::fs::create_dir(repository.path().join("warm/warmup")).unwrap();
    std::fs::write(repository.path().join("warm/warmup/ones"), ones).unwrap();
    // The same sample naming a file that is not there fails the model.
    copy_simple_as(repository.path(), "cold", &simple_warmup(1, 1, "missing"));
    let server =
        TestServer::start(&[&format!("--model-repository={}", repository.path().display()), "--exit-on-error=false"]);
    server.wait_loaded().await;
    let mut client = server.client().await;
    // As in Triton, the warmup executions show in the statistics: 2
    // instances x 2 iterations of a batch of 4.
    let request = ModelStatisticsRequest { name: "warm".into(), version: String::new() };
    let stats = client.model_statistics(request).await.unwrap().into_inner().model_stats.remove(0);
    assert_eq!((stats.execution_count, stats.inference_count), (4, 16));
    assert_eq!(
        stats
            .batch_stats
            .iter()
            .map(|batch| (batch.batch_size, batch.compute_infer.unwrap().count))
            .collect::<Vec<_>>(),
        [(4, 4)]
    );
    let response =
        client.model_infer(ModelInferRequest { model_name: "warm".into(), ..simple_request(1) }).await.unwrap();
    common::assert_simple_response(&response.into_inner(), 1);

    let reason = unavailable_reason(&mut client, "cold").await;
    assert!(reason.contains("warmup sample 'zeros and ones': input 'INPUT1': cannot read '"), "{reason}");
    assert!(reason.contains("cold/warmup/missing'"), "{reason}");
    server.stop().await;
}
