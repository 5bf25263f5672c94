//! Starting the real server binary for integration tests: it listens on an
//! ephemeral loopback port, and is stopped by PID when the test ends.

#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tonic::transport::Channel;
use tritonrs::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tritonrs::proto::inference::model_infer_request::InferInputTensor;
use tritonrs::proto::inference::{ModelInferRequest, ModelInferResponse, ServerReadyRequest};

/// The repository root.
/// The extensions ServerMetadata and `GET /v2` must list, in order: what
/// clients may call.
pub const EXTENSIONS: [&str; 10] = [
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "model_configuration",
    "binary_tensor_data",
    "statistics",
    "schedule_policy",
    "logging",
    "trace",
];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example model repository.
pub fn examples() -> PathBuf {
    root().join("examples/model_repository")
}

/// The test model repository (identity and busy_loop models).
pub fn test_models() -> PathBuf {
    root().join("tests/model_repository")
}

/// A running server process.
pub struct TestServer {
    child: Child,
    /// `127.0.0.1:PORT` of the gRPC endpoint.
    pub grpc_address: String,
    /// `127.0.0.1:PORT` of the HTTP endpoint.
    pub http_address: String,
    /// `127.0.0.1:PORT` of the metrics endpoint.
    pub metrics_address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts the binary with the given extra arguments on ephemeral ports
    /// and waits until the gRPC, HTTP and metrics endpoints are up (not
    /// necessarily ready).
    pub fn start(args: &[&str]) -> Self {
        Self::start_binary(Path::new(env!("CARGO_BIN_EXE_tritonrs")), args)
    }

    /// Like [`TestServer::start`] with another path to the binary.
    pub fn start_binary(binary: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .args(["--grpc-address=127.0.0.1", "--grpc-port=0", "--http-address=127.0.0.1", "--http-port=0"])
            .args(["--metrics-address=127.0.0.1", "--metrics-port=0"])
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = mpsc::channel();
        // Information comes on stdout, warnings and errors on stderr, as
        // from Triton; both are read for the whole run so that neither pipe
        // fills up.
        let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("stdout is piped"));
        let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("stderr is piped"));
        for stream in [stdout, stderr] {
            let (lines, address_tx) = (Arc::clone(&log), address_tx.clone());
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    for (protocol, marker) in [
                        ("grpc", "Started GRPCInferenceService at "),
                        ("http", "Started HTTPService at "),
                        ("metrics", "Started Metrics Service at "),
                    ] {
                        if let Some(address) = line.split(marker).nth(1) {
                            let _ = address_tx.send((protocol, address.trim().trim_end_matches('"').to_string()));
                        }
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let (mut grpc_address, mut http_address, mut metrics_address) = (String::new(), String::new(), String::new());
        while grpc_address.is_empty() || http_address.is_empty() || metrics_address.is_empty() {
            match address_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(("grpc", address)) => grpc_address = address,
                Ok(("http", address)) => http_address = address,
                Ok((_, address)) => metrics_address = address,
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not start listening; log:\n{}", log.lock().unwrap().join("\n"));
                }
            }
        }
        Self { child, grpc_address, http_address, metrics_address, log }
    }

    /// Starts a server on the example and test repositories and waits until
    /// it is ready.
    pub async fn start_ready(args: &[&str]) -> Self {
        let examples = format!("--model-repository={}", examples().display());
        let test_models = format!("--model-repository={}", test_models().display());
        let mut all = vec![examples.as_str(), test_models.as_str()];
        all.extend_from_slice(args);
        let server = Self::start(&all);
        server.wait_ready().await;
        server
    }

    /// A client connected to the server.
    pub async fn client(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel().await).max_decoding_message_size(usize::MAX)
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_address))
            .expect("a valid URI")
            .connect()
            .await
            .expect("the server accepts connections")
    }

    /// The URL of `path` on the HTTP endpoint.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_address)
    }

    /// Waits up to 30 s for ServerReady.
    pub async fn wait_ready(&self) {
        let mut client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client.server_ready(ServerReadyRequest {}).await.map(|r| r.into_inner().ready).unwrap_or(false) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not become ready; log:\n{}", self.log());
    }

    /// Waits up to 30 s until the server has finished loading models,
    /// whether or not all of them loaded.
    pub async fn wait_loaded(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let log = self.log();
            if log.contains("server is ready") || log.contains("but not ready") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not finish loading; log:\n{}", self.log());
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `timeout` for the process to exit by itself. Polls
    /// asynchronously so the test's own connections keep being served
    /// while the server drains them.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait works") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Sends SIGTERM and asserts a clean exit (code 0) within 10 s.
    pub async fn stop(mut self) {
        self.terminate();
        let status = self.wait_exit(Duration::from_secs(10)).await;
        assert!(matches!(status, Some(status) if status.success()), "server exit: {status:?}; log:\n{}", self.log());
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Copies a model directory of the example or test repository into
/// `repository` under `name`.
pub fn copy_model(source: &Path, repository: &Path, name: &str) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy_dir(source, &repository.join(name));
}

/// Copies the example `simple` into `repository` as model `name`, its
/// configuration renamed to match and `extra_config` appended to it.
pub fn copy_simple_as(repository: &Path, name: &str, extra_config: &str) {
    copy_model(&examples().join("simple"), repository, name);
    let path = repository.join(name).join("config.pbtxt");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, config.replace("\"simple\"", &format!("\"{name}\"")) + extra_config).unwrap();
}

/// An INT32 input with raw little-endian contents.
pub fn int32_input(name: &str, shape: &[i64], values: &[i32]) -> (InferInputTensor, Bytes) {
    let raw: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
    let tensor =
        InferInputTensor { name: name.into(), datatype: "INT32".into(), shape: shape.to_vec(), ..Default::default() };
    (tensor, Bytes::from(raw))
}

/// A raw-contents request.
pub fn request(model: &str, inputs: Vec<(InferInputTensor, Bytes)>) -> ModelInferRequest {
    let (inputs, raw_input_contents) = inputs.into_iter().unzip();
    ModelInferRequest { model_name: model.into(), inputs, raw_input_contents, ..Default::default() }
}

/// A `simple` request with INPUT0 = 0..16 and INPUT1 = 1 per row.
pub fn simple_request(batch: usize) -> ModelInferRequest {
    let input0: Vec<i32> = (0..batch).flat_map(|_| 0..16).collect();
    let input1 = vec![1; batch * 16];
    let shape = [batch as i64, 16];
    request("simple", vec![int32_input("INPUT0", &shape, &input0), int32_input("INPUT1", &shape, &input1)])
}

/// Decodes the INT32 raw output called `name`.
pub fn int32_output(response: &ModelInferResponse, name: &str) -> Vec<i32> {
    let index = response.outputs.iter().position(|output| output.name == name).expect("output present");
    response.raw_output_contents[index]
        .chunks_exact(4)
        .map(|chunk| i32::from_le_bytes(chunk.try_into().unwrap()))
        .collect()
}

/// Asserts a `simple` response for [`simple_request`] holds the right sums
/// and differences.
pub fn assert_simple_response(response: &ModelInferResponse, batch: usize) {
    let sums: Vec<i32> = (0..batch).flat_map(|_| 1..17).collect();
    let differences: Vec<i32> = (0..batch).flat_map(|_| -1..15).collect();
    assert_eq!(int32_output(response, "OUTPUT0"), sums);
    assert_eq!(int32_output(response, "OUTPUT1"), differences);
}
