//! Instance groups, the dynamic batcher, queue policies and statistics,
//! end to end. Each test serves `batch_busy_loop` (its run time chosen by
//! the request) under a configuration of its own, keeps the instance busy
//! with one long request, and watches what happens to the requests that
//! queue up behind it.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestServer, copy_model, test_models};
use tonic::Code;
use tonic::transport::Channel;
use tritonrs::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient as Client;
use tritonrs::proto::inference::infer_parameter::ParameterChoice;
use tritonrs::proto::inference::model_infer_request::InferInputTensor;
use tritonrs::proto::inference::{
    InferParameter, ModelInferRequest, ModelInferResponse, ModelStatistics, ModelStatisticsRequest,
};

/// These tests reason about what waits in a queue while one request runs,
/// so they run one at a time rather than competing for the two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serves `batch_busy_loop` as model `m` with `config` (name and inputs are
/// auto-completed from the model file).
async fn serve(config: &str) -> (TestServer, tempfile::TempDir) {
    let repository = tempfile::tempdir().unwrap();
    copy_model(&test_models().join("batch_busy_loop"), repository.path(), "m");
    std::fs::write(repository.path().join("m/config.pbtxt"), config).unwrap();
    let server = TestServer::start(&[&format!("--model-repository={}", repository.path().display())]);
    server.wait_ready().await;
    (server, repository)
}

/// A request that loops `iterations` times and carries `payload` as one row.
fn busy(iterations: i64, payload: &[f32]) -> ModelInferRequest {
    let tensors = vec![
        InferInputTensor {
            name: "ITERATIONS".into(),
            datatype: "INT64".into(),
            shape: vec![1, 1],
            ..Default::default()
        },
        InferInputTensor {
            name: "PAYLOAD".into(),
            datatype: "FP32".into(),
            shape: vec![1, payload.len() as i64],
            ..Default::default()
        },
    ];
    let raw = vec![
        Bytes::copy_from_slice(&iterations.to_le_bytes()),
        Bytes::from(payload.iter().flat_map(|value| value.to_le_bytes()).collect::<Vec<u8>>()),
    ];
    ModelInferRequest { model_name: "m".into(), inputs: tensors, raw_input_contents: raw, ..Default::default() }
}

fn with_parameter(mut request: ModelInferRequest, key: &str, value: i64) -> ModelInferRequest {
    request
        .parameters
        .insert(key.into(), InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(value)) });
    request
}

/// Checks that a response carries its own request's values back.
fn assert_echoes(response: &ModelInferResponse, iterations: i64, payload: &[f32]) {
    let count = i64::from_le_bytes(response.raw_output_contents[0][..8].try_into().unwrap());
    assert_eq!(count, iterations);
    let echoed: Vec<f32> =
        response.raw_output_contents[1].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(echoed, payload);
    assert_eq!(response.outputs[1].shape, [1, payload.len() as i64]);
}

/// Iterations that keep the model busy for about `target`.
async fn iterations_for(client: &mut Client<Channel>, target: Duration) -> i64 {
    let probe = 200_000;
    let mut fastest = Duration::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        client.model_infer(busy(probe, &[0.0])).await.unwrap();
        fastest = fastest.min(started.elapsed());
    }
    (target.as_secs_f64() / fastest.as_secs_f64() * probe as f64) as i64
}

/// Starts a long request and returns once it is surely running.
async fn occupy(server: &TestServer, iterations: i64) -> tokio::task::JoinHandle<ModelInferResponse> {
    let mut client = server.client().await;
    let long = tokio::spawn(async move { client.model_infer(busy(iterations, &[-1.0])).await.unwrap().into_inner() });
    tokio::time::sleep(Duration::from_millis(150)).await;
    long
}

async fn statistics(client: &mut Client<Channel>) -> ModelStatistics {
    let request = ModelStatisticsRequest { name: "m".into(), version: String::new() };
    client.model_statistics(request).await.unwrap().into_inner().model_stats.remove(0)
}

/// Sends each request in order, 20 ms apart so they queue in that order,
/// and collects the outcomes with the moment each finished.
async fn send_in_order(
    server: &TestServer,
    requests: Vec<tonic::Request<ModelInferRequest>>,
) -> Vec<(Result<ModelInferResponse, tonic::Status>, Instant)> {
    let mut tasks = Vec::new();
    for request in requests {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let outcome = client.model_infer(request).await.map(tonic::Response::into_inner);
            (outcome, Instant::now())
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

#[tokio::test]
async fn requests_merge_up_to_preferred_sizes_and_never_above_max_batch_size() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) = serve(
        "max_batch_size: 8
         dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 2000000 }
         instance_group [ { count: 1 kind: KIND_CPU } ]",
    )
    .await;
    let mut client = server.client().await;
    let long_iterations = iterations_for(&mut client, Duration::from_millis(800)).await;
    let before = statistics(&mut client).await;
    let long = occupy(&server, long_iterations).await;
    let requests: Vec<_> = (0..16).map(|i| tonic::Request::new(busy(i, &[i as f32, 100.0 + i as f32]))).collect();
    let outcomes = futures::future::join_all(requests.into_iter().map(|request| {
        let mut client = client.clone();
        async move { client.model_infer(request).await.unwrap().into_inner() }
    }))
    .await;
    for (i, response) in outcomes.iter().enumerate() {
        assert_echoes(response, i as i64, &[i as f32, 100.0 + i as f32]);
    }
    long.await.unwrap();
    let after = statistics(&mut client).await;
    assert_eq!(after.inference_count - before.inference_count, 17);
    let new_batches: Vec<(u64, u64)> = after
        .batch_stats
        .iter()
        .map(|batch| {
            let earlier = before.batch_stats.iter().find(|old| old.batch_size == batch.batch_size);
            let count = batch.compute_infer.unwrap().count - earlier.map_or(0, |old| old.compute_infer.unwrap().count);
            (batch.batch_size, count)
        })
        .filter(|&(_, count)| count > 0)
        .collect();
    // The long request ran alone; the sixteen behind it filled two batches
    // of the largest preferred size.
    assert_eq!(new_batches, vec![(1, 1), (8, 2)], "batches: {new_batches:?}");
    assert_eq!(after.execution_count - before.execution_count, 3);
    server.stop().await;
}

#[tokio::test]
async fn requests_with_different_shapes_are_not_merged() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) =
        serve("max_batch_size: 8 dynamic_batching { } instance_group [ { count: 1 kind: KIND_CPU } ]").await;
    let mut client = server.client().await;
    let long = occupy(&server, iterations_for(&mut client, Duration::from_millis(600)).await).await;
    let payloads: Vec<Vec<f32>> = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0, 7.0], vec![8.0, 9.0, 10.0]];
    let requests = payloads.iter().map(|payload| tonic::Request::new(busy(1, payload))).collect();
    let outcomes = send_in_order(&server, requests).await;
    for ((outcome, _), payload) in outcomes.iter().zip(&payloads) {
        assert_echoes(outcome.as_ref().unwrap(), 1, payload);
    }
    long.await.unwrap();
    let stats = statistics(&mut client).await;
    // Two batches of two (one per width) after the long request, never one
    // of four.
    let sizes: Vec<(u64, u64)> =
        stats.batch_stats.iter().map(|batch| (batch.batch_size, batch.compute_infer.unwrap().count)).collect();
    assert!(sizes.contains(&(2, 2)), "{sizes:?}");
    assert!(sizes.iter().all(|&(size, _)| size <= 2), "{sizes:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_rejects_with_unavailable() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) = serve(
        "max_batch_size: 1
         dynamic_batching { default_queue_policy { max_queue_size: 2 } }
         instance_group [ { count: 1 kind: KIND_CPU } ]",
    )
    .await;
    let mut client = server.client().await;
    let long = occupy(&server, iterations_for(&mut client, Duration::from_millis(800)).await).await;
    let requests = (0..4).map(|i| tonic::Request::new(busy(i, &[i as f32]))).collect();
    let outcomes = send_in_order(&server, requests).await;
    for (i, (outcome, _)) in outcomes.iter().enumerate() {
        match outcome {
            Ok(response) if i < 2 => assert_echoes(response, i as i64, &[i as f32]),
            Err(status) if i >= 2 => {
                assert_eq!(status.code(), Code::Unavailable);
                // Triton's words, which clients match on.
                assert!(status.message().starts_with("Exceeds maximum queue size"), "{}", status.message());
            }
            other => panic!("request {i}: unexpected {other:?}"),
        }
    }
    long.await.unwrap();
    // Over HTTP the same rejection is a 503.
    let long = occupy(&server, iterations_for(&mut client, Duration::from_millis(800)).await).await;
    let http = reqwest::Client::new();
    let body = serde_json::json!({"inputs": [
        {"name": "ITERATIONS", "shape": [1, 1], "datatype": "INT64", "data": [1]},
        {"name": "PAYLOAD", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]});
    let posts = (0..3).map(|_| http.post(server.url("/v2/models/m/infer")).json(&body).send());
    let statuses: Vec<u16> =
        futures::future::join_all(posts).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|&&status| status == 503).count(), 1, "{statuses:?}");
    long.await.unwrap();
    // As in Triton, requests refused at the door are not counted as failed
    // inferences: they never entered the queue.
    let stats = statistics(&mut client).await.inference_stats.unwrap();
    assert_eq!(stats.fail.unwrap().count, 0);
    assert_eq!(stats.success.unwrap().count, stats.queue.unwrap().count);
    server.stop().await;
}

#[tokio::test]
async fn timed_out_requests_are_rejected_and_later_ones_succeed() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) = serve(
        "max_batch_size: 1
         dynamic_batching {
           priority_levels: 2 default_priority_level: 2
           default_queue_policy { default_timeout_microseconds: 200000 }
           priority_queue_policy { key: 1 value { default_timeout_microseconds: 200000 timeout_action: DELAY } }
         }
         instance_group [ { count: 1 kind: KIND_CPU } ]",
    )
    .await;
    let mut client = server.client().await;
    let long = occupy(&server, iterations_for(&mut client, Duration::from_millis(1200)).await).await;
    let requests = vec![
        tonic::Request::new(busy(1, &[1.0])),
        // Level 1 delays late requests instead of rejecting them.
        tonic::Request::new(with_parameter(busy(2, &[2.0]), "priority", 1)),
    ];
    let started = Instant::now();
    let outcomes = send_in_order(&server, requests).await;
    let long_done = long.await.unwrap();
    assert_echoes(&long_done, i64::from_le_bytes(long_done.raw_output_contents[0][..8].try_into().unwrap()), &[-1.0]);
    let (rejected, rejected_at) = &outcomes[0];
    let status = rejected.as_ref().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().starts_with("Request timeout expired"), "{}", status.message());
    assert!(
        rejected_at.duration_since(started) < Duration::from_millis(900),
        "rejected only after {:?}",
        rejected_at.duration_since(started)
    );
    assert_echoes(outcomes[1].0.as_ref().unwrap(), 2, &[2.0]);
    let later = client.model_infer(busy(3, &[3.0])).await.unwrap().into_inner();
    assert_echoes(&later, 3, &[3.0]);
    server.stop().await;
}

#[tokio::test]
async fn a_request_can_shorten_its_timeout_where_allowed() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) = serve(
        "max_batch_size: 1
         dynamic_batching {
           default_queue_policy { default_timeout_microseconds: 60000000 allow_timeout_override: true }
         }
         instance_group [ { count: 1 kind: KIND_CPU } ]",
    )
    .await;
    let mut client = server.client().await;
    let long = occupy(&server, iterations_for(&mut client, Duration::from_millis(800)).await).await;
    let requests = vec![
        tonic::Request::new(with_parameter(busy(1, &[1.0]), "timeout", 100_000)),
        tonic::Request::new(busy(2, &[2.0])),
        // 0 is what Triton's clients send for "no timeout of my own".
        tonic::Request::new(with_parameter(busy(3, &[3.0]), "timeout", 0)),
    ];
    let outcomes = send_in_order(&server, requests).await;
    long.await.unwrap();
    assert_eq!(outcomes[0].0.as_ref().unwrap_err().code(), Code::Unavailable);
    assert_echoes(outcomes[1].0.as_ref().unwrap(), 2, &[2.0]);
    assert_echoes(outcomes[2].0.as_ref().unwrap(), 3, &[3.0]);
    server.stop().await;
}

#[tokio::test]
async fn higher_priority_requests_go_first() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Also with a model that does not batch (listing its tensors keeps
    // max_batch_size 0 from being auto-completed), whose requests go
    // through the same queue one at a time, and with as many levels as
    // Triton's own tests declare (2^64 - 1).
    let configs = [
        "max_batch_size: 1
         dynamic_batching { priority_levels: 2 default_priority_level: 2 }",
        r#"max_batch_size: 0
         input [ { name: "ITERATIONS" data_type: TYPE_INT64 dims: [ -1, 1 ] },
                 { name: "PAYLOAD" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
         output [ { name: "COUNT" data_type: TYPE_INT64 dims: [ -1, 1 ] },
                  { name: "PAYLOAD_OUT" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
         dynamic_batching { priority_levels: 18446744073709551615 default_priority_level: 4294967296 }"#,
    ];
    for config in configs {
        let (server, _repository) = serve(&format!("{config}\ninstance_group [ {{ count: 1 kind: KIND_CPU }} ]")).await;
        let mut client = server.client().await;
        // Each queued request runs long enough that the order in which the
        // answers arrive is the order in which they ran.
        let each = iterations_for(&mut client, Duration::from_millis(150)).await;
        let long = occupy(&server, each * 6).await;
        let requests = vec![
            tonic::Request::new(busy(each, &[1.0])),
            tonic::Request::new(busy(each, &[2.0])),
            tonic::Request::new(with_parameter(busy(each, &[3.0]), "priority", 1)),
        ];
        let outcomes = send_in_order(&server, requests).await;
        long.await.unwrap();
        let finished: Vec<Instant> = outcomes
            .iter()
            .map(|(outcome, at)| {
                assert!(outcome.is_ok(), "{outcome:?}");
                *at
            })
            .collect();
        assert!(
            finished[2] < finished[0] && finished[0] < finished[1],
            "the priority-1 request did not go first with {config}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_cancelled_request_never_executes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) =
        serve("max_batch_size: 1 dynamic_batching { } instance_group [ { count: 1 kind: KIND_CPU } ]").await;
    let mut client = server.client().await;
    let iterations = iterations_for(&mut client, Duration::from_millis(800)).await;
    let before = statistics(&mut client).await.inference_count;
    let long = occupy(&server, iterations).await;
    let mut request = tonic::Request::new(busy(1, &[1.0]));
    request.set_timeout(Duration::from_millis(150));
    let status = client.model_infer(request).await.unwrap_err();
    // tonic reports its own deadline as a cancellation.
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    long.await.unwrap();
    let after_long = statistics(&mut client).await;
    assert_eq!(after_long.inference_count - before, 1, "only the long request ran");
    // As in Triton, the cancelled request counts as a failure.
    assert_eq!(after_long.inference_stats.unwrap().fail.unwrap().count, 1);
    client.model_infer(busy(5, &[5.0])).await.unwrap();
    assert_eq!(statistics(&mut client).await.inference_count - before, 2);
    server.stop().await;
}

#[tokio::test]
async fn cancelling_a_stream_cancels_its_queued_requests() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) =
        serve("max_batch_size: 1 dynamic_batching { } instance_group [ { count: 1 kind: KIND_CPU } ]").await;
    let mut client = server.client().await;
    let iterations = iterations_for(&mut client, Duration::from_millis(800)).await;
    let before = statistics(&mut client).await.inference_count;
    // One stream: a long request that occupies the instance, then two that
    // queue behind it. The client cancels the stream while they wait.
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    for (count, payload) in [(iterations, -1.0), (1, 1.0), (2, 2.0)] {
        sender.send(busy(count, &[payload])).await.unwrap();
    }
    let mut streaming = server.client().await;
    let responses =
        streaming.model_stream_infer(tokio_stream::wrappers::ReceiverStream::new(requests)).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Dropping both halves of the call resets the HTTP/2 stream, as a gRPC
    // client's cancel does.
    drop((responses, sender, streaming));
    // The long request finishes; the queued ones never run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = statistics(&mut client).await;
    assert_eq!(after.inference_count - before, 1, "only the running request ran");
    assert_eq!(after.inference_stats.unwrap().fail.unwrap().count, 2);
    client.model_infer(busy(5, &[5.0])).await.unwrap();
    assert_eq!(statistics(&mut client).await.inference_count - before, 2);
    server.stop().await;
}

#[tokio::test]
async fn two_instances_run_two_requests_at_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) = serve("max_batch_size: 1 instance_group [ { count: 2 kind: KIND_CPU } ]").await;
    let mut client = server.client().await;
    let long = occupy(&server, iterations_for(&mut client, Duration::from_millis(1500)).await).await;
    // With one instance this would wait for the long request.
    let response = client.model_infer(busy(7, &[7.0])).await.unwrap().into_inner();
    assert_echoes(&response, 7, &[7.0]);
    assert!(!long.is_finished(), "the long request finished before the short one was answered");
    long.await.unwrap();
    server.stop().await;
}

/// Serves `batch_busy_loop` as models `m` and `m2`, each instance of
/// which claims `claim` copies of the global rate-limiter resource `R`.
async fn serve_rate_limited(claim: u32, args: &[&str]) -> (TestServer, tempfile::TempDir) {
    let repository = tempfile::tempdir().unwrap();
    for name in ["m", "m2"] {
        copy_model(&test_models().join("batch_busy_loop"), repository.path(), name);
        let config = format!(
            "max_batch_size: 1
             instance_group [ {{ count: 1 kind: KIND_CPU
                                rate_limiter {{ resources [ {{ name: \"R\" global: true count: {claim} }} ] }} }} ]"
        );
        std::fs::write(repository.path().join(name).join("config.pbtxt"), config).unwrap();
    }
    let repository_flag = format!("--model-repository={}", repository.path().display());
    let mut all = vec![repository_flag.as_str(), "--exit-on-error=false"];
    all.extend_from_slice(args);
    let server = TestServer::start(&all);
    server.wait_loaded().await;
    (server, repository)
}

#[tokio::test]
async fn rate_limited_instances_of_two_models_take_turns_with_a_shared_resource() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Without --rate-limit the claims are ignored, as in Triton: m2 answers
    // while m is busy. With it, m2's instance waits for m's copy of R.
    for (args, waits) in [(&[][..], false), (&["--rate-limit=execution_count"][..], true)] {
        let (server, _repository) = serve_rate_limited(1, args).await;
        let mut client = server.client().await;
        let iterations = iterations_for(&mut client, Duration::from_millis(1500)).await;
        let long = occupy(&server, iterations).await;
        let short = ModelInferRequest { model_name: "m2".into(), ..busy(7, &[7.0]) };
        let response = client.model_infer(short).await.unwrap().into_inner();
        assert_echoes(&response, 7, &[7.0]);
        assert_eq!(long.is_finished(), waits, "with {args:?}, the long request on m finished first: {}", !waits);
        assert_echoes(&long.await.unwrap(), iterations, &[-1.0]);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_claim_above_the_resource_count_fails_the_load_with_triton_words() {
    let (server, _repository) =
        serve_rate_limited(2, &["--rate-limit=execution_count", "--rate-limit-resource=r:1"]).await;
    let mut client = server.client().await;
    let ready = tritonrs::proto::inference::ModelReadyRequest { name: "m".into(), version: String::new() };
    assert!(!client.model_ready(ready).await.unwrap().into_inner().ready);
    let request = tritonrs::proto::inference::ModelMetadataRequest { name: "m".into(), version: String::new() };
    let error = client.model_metadata(request).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(
        error.message().contains(
            "Resource count for \"R\" is limited to 1 which will prevent scheduling of one or more model \
             instances, the minimum required count is 2"
        ),
        "{}",
        error.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn preserve_ordering_holds_a_later_answer_until_the_earlier_one_is_sent() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) = serve(
        "max_batch_size: 1
         dynamic_batching { preserve_ordering: true }
         instance_group [ { count: 2 kind: KIND_CPU } ]",
    )
    .await;
    let mut client = server.client().await;
    let long = iterations_for(&mut client, Duration::from_millis(800)).await;
    let started = Instant::now();
    // The short request runs at once on the second instance (as in the
    // test above) but its answer must wait for the long one's.
    let requests = vec![tonic::Request::new(busy(long, &[1.0])), tonic::Request::new(busy(3, &[3.0]))];
    let outcomes = send_in_order(&server, requests).await;
    let (first, first_at) = &outcomes[0];
    let (second, second_at) = &outcomes[1];
    assert_echoes(first.as_ref().unwrap(), long, &[1.0]);
    assert_echoes(second.as_ref().unwrap(), 3, &[3.0]);
    // The long request was calibrated to 800 ms; on a host that sped up
    // since the calibration it takes less, but still long enough that an
    // unheld short answer would come far earlier.
    let long_took = first_at.duration_since(started);
    assert!(long_took >= Duration::from_millis(250), "the long request took only {long_took:?}");
    let held = second_at.duration_since(started);
    assert!(
        held + Duration::from_millis(100) >= long_took,
        "the short request's answer came after {held:?}, before the long one's after {long_took:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn with_preserve_ordering_a_request_that_times_out_is_answered_at_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) = serve(
        "max_batch_size: 1
         dynamic_batching { preserve_ordering: true default_queue_policy { default_timeout_microseconds: 200000 } }
         instance_group [ { count: 1 kind: KIND_CPU } ]",
    )
    .await;
    let mut client = server.client().await;
    let long = occupy(&server, iterations_for(&mut client, Duration::from_millis(1500)).await).await;
    let started = Instant::now();
    let status = client.model_infer(busy(1, &[1.0])).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Only requests that run keep arrival order, as in Triton: the
    // rejection does not wait for the long request's answer.
    assert!(waited < Duration::from_millis(1000), "rejected after {waited:?}");
    assert!(!long.is_finished(), "the long request finished before the rejection");
    long.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn statistics_count_every_request_over_both_protocols() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (server, _repository) = serve("max_batch_size: 4 instance_group [ { count: 1 kind: KIND_CPU } ]").await;
    let mut client = server.client().await;
    let fresh = statistics(&mut client).await;
    assert_eq!((fresh.inference_count, fresh.execution_count, fresh.last_inference), (0, 0, 0));
    for i in 0..6 {
        client.model_infer(busy(i, &[i as f32])).await.unwrap();
    }
    // A request refused by validation never reaches the model.
    let mut wrong_type = busy(1, &[1.0]);
    wrong_type.inputs[1].datatype = "INT32".into();
    let invalid = client.model_infer(wrong_type).await;
    assert_eq!(invalid.unwrap_err().code(), Code::InvalidArgument);
    let stats = statistics(&mut client).await;
    let inference = stats.inference_stats.unwrap();
    assert_eq!(stats.inference_count, 6);
    assert_eq!(stats.execution_count, 6);
    assert!(stats.last_inference > 0);
    for phase in
        [inference.success, inference.queue, inference.compute_input, inference.compute_infer, inference.compute_output]
    {
        assert_eq!(phase.unwrap().count, 6);
    }
    assert!(inference.compute_infer.unwrap().ns > 0);
    assert_eq!(stats.batch_stats.len(), 1);
    assert_eq!(stats.batch_stats[0].batch_size, 1);

    let json: serde_json::Value =
        reqwest::get(server.url("/v2/models/m/versions/1/stats")).await.unwrap().json().await.unwrap();
    assert_eq!(json["model_stats"][0]["inference_count"], 6);
    assert_eq!(json["model_stats"][0]["version"], "1");
    assert_eq!(json["model_stats"][0]["inference_stats"]["success"]["count"], 6);
    assert_eq!(json["model_stats"][0]["response_stats"], serde_json::json!({}));
    let all: serde_json::Value = reqwest::get(server.url("/v2/models/stats")).await.unwrap().json().await.unwrap();
    assert_eq!(all["model_stats"].as_array().unwrap().len(), 1);
    server.stop().await;
}

/// The value of `series` (name and labels) on the server's metrics page.
async fn metric(server: &TestServer, series: &str) -> f64 {
    let response = reqwest::get(format!("http://{}/metrics", server.metrics_address)).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    let value = text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '));
    value.unwrap_or_else(|| panic!("no sample {series} in:\n{text}")).parse().unwrap()
}

#[tokio::test]
async fn metrics_count_requests_by_outcome_and_show_the_queue() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Level 1 waits as long as it takes; level 2 (the default) gives up
    // after 600 ms.
    let (server, _repository) = serve(
        "max_batch_size: 1
         dynamic_batching {
           priority_levels: 2 default_priority_level: 2
           priority_queue_policy { key: 2 value { default_timeout_microseconds: 600000 } }
         }
         instance_group [ { count: 1 kind: KIND_CPU } ]",
    )
    .await;
    let labels = r#"{model="m",version="1"}"#;
    let failures = |reason: &str| format!(r#"nv_inference_request_failure{{model="m",reason="{reason}",version="1"}}"#);
    assert_eq!(metric(&server, &format!("nv_inference_request_success{labels}")).await, 0.0);
    assert!(metric(&server, &format!("nv_model_load_duration_secs{labels}")).await > 0.0);
    let mut client = server.client().await;
    let iterations = iterations_for(&mut client, Duration::from_millis(1500)).await;
    let long_started = Instant::now();
    let long = occupy(&server, iterations).await;
    // Behind the long request: one that waits it out, one that times out in
    // the queue, and one whose client gives up first.
    let mut waiting_client = server.client().await;
    let waiting =
        tokio::spawn(async move { waiting_client.model_infer(with_parameter(busy(1, &[1.0]), "priority", 1)).await });
    let mut late_client = server.client().await;
    let late = tokio::spawn(async move { late_client.model_infer(busy(2, &[2.0])).await });
    let mut impatient_client = server.client().await;
    let impatient = tokio::spawn(async move {
        let mut request = tonic::Request::new(busy(3, &[3.0]));
        request.set_timeout(Duration::from_millis(400));
        impatient_client.model_infer(request).await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(metric(&server, &format!("nv_inference_pending_request_count{labels}")).await, 3.0);
    assert_echoes(&waiting.await.unwrap().unwrap().into_inner(), 1, &[1.0]);
    assert_eq!(late.await.unwrap().unwrap_err().code(), Code::Unavailable);
    assert!(impatient.await.unwrap().is_err());
    long.await.unwrap();
    // Calibrated to 1.5 s, but a host that sped up since runs it faster.
    let long_took = long_started.elapsed();
    assert!(long_took > Duration::from_millis(600), "the long request took only {long_took:?}");

    // The probes of iterations_for, the long request and the waiting one.
    let succeeded = 4.0;
    assert_eq!(metric(&server, &format!("nv_inference_request_success{labels}")).await, succeeded);
    assert_eq!(metric(&server, &format!("nv_inference_count{labels}")).await, succeeded);
    assert_eq!(metric(&server, &format!("nv_inference_exec_count{labels}")).await, succeeded);
    assert_eq!(metric(&server, &failures("REJECTED")).await, 1.0);
    assert_eq!(metric(&server, &failures("CANCELED")).await, 1.0);
    assert_eq!(metric(&server, &failures("BACKEND")).await, 0.0);
    assert_eq!(metric(&server, &format!("nv_inference_pending_request_count{labels}")).await, 0.0);
    // The long request alone ran for most of long_took, and the waiting
    // request, sent 150 ms after it, queued for the rest.
    let long_us = long_took.as_micros() as f64;
    let request_us = metric(&server, &format!("nv_inference_request_duration_us{labels}")).await;
    let infer_us = metric(&server, &format!("nv_inference_compute_infer_duration_us{labels}")).await;
    let queue_us = metric(&server, &format!("nv_inference_queue_duration_us{labels}")).await;
    assert!(
        infer_us > long_us - 300_000.0 && request_us >= infer_us + queue_us,
        "{request_us} {infer_us} {queue_us}, long request {long_us}"
    );
    assert!(queue_us > long_us - 450_000.0, "{queue_us}, long request {long_us}");
    // The metrics agree with the statistics extension.
    let stats = statistics(&mut client).await;
    let inference = stats.inference_stats.unwrap();
    assert_eq!(inference.success.unwrap().count as f64, succeeded);
    assert_eq!(inference.fail.unwrap().count, 2);
    assert_eq!((inference.compute_infer.unwrap().ns / 1000) as f64, infer_us);
    server.stop().await;
}
