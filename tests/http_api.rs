//! The KServe v2 REST API and the cloud routes end to end: the real binary,
//! a reqwest client.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{TestServer, copy_model, copy_simple_as, examples};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

fn simple_body() -> Value {
    json!({
        "id": "req-7",
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [(0..16).collect::<Vec<i32>>()]},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": vec![1; 16]},
        ]
    })
}

async fn get_json(server: &TestServer, path: &str) -> (StatusCode, Value) {
    let response = client().get(server.url(path)).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_json(server: &TestServer, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = client().post(server.url(path)).json(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn metadata_health_and_config() {
    let server = TestServer::start_ready(&[]).await;
    let (status, metadata) = get_json(&server, "/v2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metadata["name"], "triton");
    assert_eq!(metadata["extensions"], json!(common::EXTENSIONS));
    for path in ["/v2/health/live", "/v2/health/ready", "/v2/models/simple/ready", "/v2/models/simple/versions/1/ready"]
    {
        assert_eq!(client().get(server.url(path)).send().await.unwrap().status(), StatusCode::OK, "{path}");
    }
    let not_ready = client().get(server.url("/v2/models/simple/versions/2/ready")).send().await.unwrap();
    assert_eq!(not_ready.status(), StatusCode::BAD_REQUEST);
    // With the reason, as Triton sends one.
    let reason: Value = not_ready.json().await.unwrap();
    assert!(reason["error"].as_str().unwrap().contains("has no version 2"), "{reason}");

    let (status, model) = get_json(&server, "/v2/models/simple").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(model["versions"], json!(["1"]));
    assert_eq!(model["inputs"][0], json!({"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}));

    let (status, config) = get_json(&server, "/v2/models/scale_fp16/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["max_batch_size"], 4);
    assert_eq!(config["input"][0]["dims"], json!([4]));
    assert_eq!(config["input"][0]["data_type"], "TYPE_FP16");
    assert_eq!(config["instance_group"][0]["kind"], "KIND_CPU");

    let (status, error) = get_json(&server, "/v2/models/no_such_model").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"].as_str().unwrap().contains("no_such_model"), "{error}");
    let (status, error) = get_json(&server, "/v2/cudasharedmemory/status").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(error["error"].as_str().unwrap().contains("--allow-client-shm=true"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn json_inference_and_its_errors() {
    let server = TestServer::start_ready(&[]).await;
    let (status, response) = post_json(&server, "/v2/models/simple/infer", &simple_body()).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["id"], "req-7");
    assert_eq!(response["model_version"], "1");
    assert_eq!(response["outputs"][0]["name"], "OUTPUT0");
    assert_eq!(response["outputs"][0]["shape"], json!([1, 16]));
    assert_eq!(response["outputs"][0]["data"], json!((1..17).collect::<Vec<i32>>()));
    assert_eq!(response["outputs"][1]["data"], json!((-1..15).collect::<Vec<i32>>()));

    let mut wrong_shape = simple_body();
    wrong_shape["inputs"][0]["shape"] = json!([2, 8]);
    let cases = [
        (
            "/v2/models/simple/infer",
            wrong_shape,
            StatusCode::BAD_REQUEST,
            "input 'INPUT0' has shape [2,8], expected [-1,16]",
        ),
        ("/v2/models/simple/infer", json!({"inputs": 5}), StatusCode::BAD_REQUEST, "not a valid inference request"),
        (
            "/v2/models/no_such_model/infer",
            simple_body(),
            StatusCode::NOT_FOUND,
            "Request for unknown model: 'no_such_model' is not found",
        ),
        ("/v2/models/simple/versions/7/infer", simple_body(), StatusCode::NOT_FOUND, "has no version 7"),
        ("/v2/models/simple/versions/x/infer", simple_body(), StatusCode::BAD_REQUEST, "version 'x'"),
    ];
    for (path, body, expected_status, expected) in cases {
        let (status, error) = post_json(&server, path, &body).await;
        assert_eq!(status, expected_status, "{error}");
        assert!(error["error"].as_str().unwrap().contains(expected), "expected '{expected}' in {error}");
    }
    let not_json = client().post(server.url("/v2/models/simple/infer")).body("{\"inputs\": [").send().await.unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let (status, response) = post_json(&server, "/v2/models/simple/infer", &simple_body()).await;
    assert_eq!((status, &response["outputs"][0]["data"][15]), (StatusCode::OK, &json!(16)));
    server.stop().await;
}

/// A request body in Triton's binary tensor data form: JSON, then bytes.
fn binary_body(json: &Value, binary: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(json).unwrap();
    let header_length = body.len();
    body.extend_from_slice(binary);
    (body, header_length)
}

/// Posts a body in the binary form and splits the 200 answer into its JSON
/// and the binary data after it.
async fn post_binary(server: &TestServer, path: &str, header_length: usize, body: Vec<u8>) -> (Value, Vec<u8>) {
    let response = client()
        .post(server.url(path))
        .header("Inference-Header-Content-Length", header_length)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let json_length: usize = response.headers()["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let bytes = response.bytes().await.unwrap();
    (serde_json::from_slice(&bytes[..json_length]).unwrap(), bytes[json_length..].to_vec())
}

#[tokio::test]
async fn binary_tensor_data_both_ways() {
    let server = TestServer::start_ready(&[]).await;
    let input0: Vec<u8> = (0..16i32).flat_map(i32::to_le_bytes).collect();
    let input1: Vec<u8> = [3i32; 16].iter().flat_map(|value| value.to_le_bytes()).collect();
    let json = json!({
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
        ],
        "outputs": [{"name": "OUTPUT1", "parameters": {"binary_data": true}}, {"name": "OUTPUT0"}],
    });
    let (body, header_length) = binary_body(&json, &[input0, input1].concat());
    let (header, binary) = post_binary(&server, "/v2/models/simple/infer", header_length, body).await;
    assert_eq!(header["outputs"][0]["name"], "OUTPUT1");
    assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 64);
    assert_eq!(header["outputs"][1]["data"], json!((3..19).collect::<Vec<i32>>()));
    let differences: Vec<i32> =
        binary.chunks_exact(4).map(|chunk| i32::from_le_bytes(chunk.try_into().unwrap())).collect();
    assert_eq!(differences, (-3..13).collect::<Vec<i32>>());

    // The raw binary form: the body is the data of the only input.
    let halves: Vec<u8> = [2.0f32, 4.0, -8.0, 1.0].iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let (header, binary) = post_binary(&server, "/v2/models/scale_fp16/infer", 0, halves).await;
    assert_eq!(header["outputs"][0]["shape"], json!([1, 4]));
    let scaled: Vec<f32> = binary.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
    assert_eq!(scaled, [1.0, 2.0, -4.0, 0.5]);
    server.stop().await;
}

#[tokio::test]
async fn gzip_requests_and_responses() {
    let server = TestServer::start_ready(&[]).await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&serde_json::to_vec(&simple_body()).unwrap()).unwrap();
    let response = client()
        .post(server.url("/v2/models/simple/infer"))
        .header("Content-Encoding", "gzip")
        .header("Accept-Encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut decompressed = String::new();
    flate2::read::GzDecoder::new(&response.bytes().await.unwrap()[..]).read_to_string(&mut decompressed).unwrap();
    let response: Value = serde_json::from_str(&decompressed).unwrap();
    assert_eq!(response["outputs"][0]["data"][0], 1);
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let server = TestServer::start_ready(&["--http-max-input-size=1024"]).await;
    let response = client().post(server.url("/v2/models/simple/infer")).body(vec![b' '; 2048]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("1024"), "{error}");

    // Small on the wire, too large once decompressed.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; 1 << 20]).unwrap();
    let response = client()
        .post(server.url("/v2/models/simple/infer"))
        .header("Content-Encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = post_json(&server, "/v2/models/simple/infer", &simple_body()).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn health_is_503_while_a_model_is_broken() {
    let repository = tempfile::tempdir().unwrap();
    copy_model(&examples().join("simple"), repository.path(), "simple");
    copy_simple_as(repository.path(), "broken", "");
    std::fs::remove_file(repository.path().join("broken/1/model.onnx")).unwrap();
    let server =
        TestServer::start(&[&format!("--model-repository={}", repository.path().display()), "--exit-on-error=false"]);
    server.wait_loaded().await;
    let (status, error) = get_json(&server, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("broken version 1 is UNAVAILABLE") && message.contains("model.onnx"), "{error}");
    assert_eq!(client().get(server.url("/v2/health/ready")).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let (status, _) = post_json(&server, "/v2/models/simple/infer", &simple_body()).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn predict_picks_the_model_and_takes_instances() {
    let server = TestServer::start_ready(&[]).await;
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ready"})));

    // Several models and no model_name header: the answer lists them.
    let (status, error) = post_json(&server, "/predict", &json!({"instances": [[1, 2, 3, 4]]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error["error"].as_str().unwrap();
    let (_, models) = message.split_once("the models are: ").unwrap_or_default();
    let models: Vec<&str> = models.split(", ").collect();
    assert!(["scale_fp16", "simple", "simple_string"].iter().all(|name| models.contains(name)), "{error}");

    // Ten rows for a model with max_batch_size 4: three batches, in order.
    let instances: Vec<Vec<f32>> = (0..10).map(|row| vec![row as f32; 4]).collect();
    let response = client()
        .post(server.url("/predict"))
        .header("model_name", "scale_fp16")
        .header("model_version", "1")
        .json(&json!({"instances": instances, "parameters": {"note": "ignored by the model"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let predictions: Value = response.json().await.unwrap();
    let expected: Vec<Vec<f32>> = (0..10).map(|row| vec![row as f32 * 0.5; 4]).collect();
    assert_eq!(predictions, json!({ "predictions": expected }));

    // A v2 body on /predict is answered like /v2/.../infer.
    let response =
        client().post(server.url("/predict")).header("model_name", "simple").json(&simple_body()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response: Value = response.json().await.unwrap();
    assert_eq!(response["outputs"][0]["data"][15], 16);

    let response = client()
        .post(server.url("/predict"))
        .header("model_name", "simple")
        .json(&json!({"instances": [[1]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("needs a model with one input"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn predict_routes_and_default_model_are_configurable() {
    let server =
        TestServer::start_ready(&["--predict-route=/score", "--health-route=/healthz", "--predict-model=scale_fp16"])
            .await;
    let (status, _) = get_json(&server, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, predictions) = post_json(&server, "/score", &json!({"instances": [[2, 2, 2, 2]]})).await;
    assert_eq!((status, predictions), (StatusCode::OK, json!({"predictions": [[1.0, 1.0, 1.0, 1.0]]})));
    let (status, _) = post_json(&server, "/predict", &json!({"instances": [[2, 2, 2, 2]]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;

    // A repository of one model needs no name at all.
    let repository = tempfile::tempdir().unwrap();
    copy_model(&examples().join("scale_fp16"), repository.path(), "only");
    let server = TestServer::start(&[&format!("--model-repository={}", repository.path().display())]);
    server.wait_ready().await;
    let (status, predictions) = post_json(&server, "/predict", &json!({"instances": [[4, 4, 4, 4]]})).await;
    assert_eq!((status, predictions), (StatusCode::OK, json!({"predictions": [[2.0, 2.0, 2.0, 2.0]]})));
    server.stop().await;
}
