//! The neutral load generator: a closed-loop KServe v2 gRPC client
//! (`inference.GRPCInferenceService/ModelInfer`) that drives any server
//! speaking the protocol (this one, Triton, Seldon MLServer) at a fixed
//! concurrency for a fixed time, with a bound on the request count, and
//! prints one JSON object with throughput and latency percentiles.
//!
//!     cargo bench --bench loadgen -- --url http://127.0.0.1:8001 --model mlp_batching \
//!         --workload mlp --concurrency 32 --warmup 1 --duration 5
//!
//! Each of `concurrency` tasks sends one request (batch 1), waits for the
//! answer and sends the next, over one HTTP/2 connection by default (as
//! tritonclient and perf_analyzer do), through a lean client written on
//! `h2` (`unary_grpc.rs`) so that the generator takes as little of the
//! machine's CPU as it can. Inputs go in `raw_input_contents`
//! (what tritonclient sends; MLServer decodes them too), or with
//! `--contents typed` in the typed `contents` fields. The first answer is
//! checked (output sizes, and the values for `simple`) before measuring.
//! Throughput counts the answers that arrive within the measurement window;
//! latencies are those of the same answers.

#[path = "common.rs"]
mod common;
#[path = "corked_socket.rs"]
mod corked_socket;
#[path = "unary_grpc.rs"]
mod unary_grpc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use prost::Message;
use serde_json::json;
use tritonrs::proto::inference::model_infer_request::InferInputTensor;
use tritonrs::proto::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};

use common::{Workload, latency_summary};
use unary_grpc::UnaryClient;

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Contents {
    /// `raw_input_contents`, little-endian bytes.
    Raw,
    /// `inputs[].contents.int_contents` / `fp32_contents`.
    Typed,
}

#[derive(Parser, Debug)]
#[command(about = "Closed-loop KServe v2 gRPC load generator")]
struct Args {
    /// gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    url: String,
    #[arg(long)]
    model: String,
    #[arg(long, value_enum)]
    workload: Workload,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Upper bound on the requests sent (warm-up included).
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    #[arg(long, value_enum, default_value_t = Contents::Raw)]
    contents: Contents,
    /// HTTP/2 connections; the tasks take turns.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Client runtime threads (1: a single-threaded runtime, which leaves
    /// the most CPU to the server on a small machine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    }
    .expect("a tokio runtime");
    if let Err(message) = runtime.block_on(run(args)) {
        eprintln!("loadgen: {message}");
        std::process::exit(1);
    }
}

fn request(args: &Args) -> ModelInferRequest {
    let mut request = ModelInferRequest { model_name: args.model.clone(), ..Default::default() };
    for input in args.workload.inputs(1) {
        let mut tensor = InferInputTensor {
            name: input.name.to_string(),
            datatype: input.datatype.to_string(),
            shape: input.shape.clone(),
            ..Default::default()
        };
        match args.contents {
            Contents::Raw => request.raw_input_contents.push(Bytes::from(input.data)),
            Contents::Typed => {
                let mut contents = InferTensorContents::default();
                match input.datatype {
                    "INT32" => contents.int_contents = bytemuck::pod_collect_to_vec(&input.data),
                    _ => contents.fp32_contents = bytemuck::pod_collect_to_vec(&input.data),
                }
                tensor.contents = Some(contents);
            }
        }
        request.inputs.push(tensor);
    }
    request
}

/// Checks an answer to a batch-1 request.
fn check(workload: Workload, response: &ModelInferResponse) -> Result<(), String> {
    for (index, spec) in workload.outputs().iter().enumerate() {
        let position = response.outputs.iter().position(|output| output.name == spec.name);
        let Some(position) = position else {
            return Err(format!("the answer has no output {}: {response:?}", spec.name));
        };
        let output = &response.outputs[position];
        let bytes: Vec<u8> = if let Some(raw) = response.raw_output_contents.get(position) {
            raw.to_vec()
        } else if let Some(contents) = &output.contents {
            match spec.datatype {
                "INT32" => common::le_bytes(&contents.int_contents),
                _ => common::le_bytes(&contents.fp32_contents),
            }
        } else {
            Vec::new()
        };
        if bytes.len() != spec.row_bytes {
            return Err(format!("output {} has {} bytes, expected {}", spec.name, bytes.len(), spec.row_bytes));
        }
        if workload == Workload::Simple {
            let values: Vec<i32> = bytemuck::pod_collect_to_vec(&bytes);
            let expected: Vec<i32> = (0..16).map(|j| if index == 0 { j + 1 } else { j - 1 }).collect();
            if values != expected {
                return Err(format!("output {} is {values:?}, expected {expected:?}", spec.name));
            }
        }
    }
    Ok(())
}

struct TaskOutcome {
    latencies: Vec<Duration>,
    last_completion: Option<Instant>,
    errors: u64,
    first_error: Option<String>,
}

async fn run(args: Args) -> Result<(), String> {
    let mut connections: Vec<UnaryClient> = Vec::new();
    for _ in 0..args.connections.max(1) {
        let connect = UnaryClient::connect(&args.url, MODEL_INFER);
        let connection = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| format!("connecting to {} took longer than 5 s", args.url))??;
        connections.push(connection);
    }
    let request = unary_grpc::frame(&request(&args));
    let first = tokio::time::timeout(Duration::from_secs(30), connections[0].clone().call(request.clone()))
        .await
        .map_err(|_| "the first request took longer than 30 s".to_string())?
        .map_err(|error| format!("the first request failed: {error}"))?;
    let first =
        ModelInferResponse::decode(first).map_err(|error| format!("the first answer does not decode: {error}"))?;
    check(args.workload, &first)?;

    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for index in 0..args.concurrency.max(1) {
        let mut client = connections[index % connections.len()].clone();
        let request = request.clone();
        let issued = Arc::clone(&issued);
        let max_requests = args.max_requests;
        tasks.push(tokio::spawn(async move {
            let mut outcome = TaskOutcome {
                latencies: Vec::with_capacity(65_536),
                last_completion: None,
                errors: 0,
                first_error: None,
            };
            loop {
                let sent = Instant::now();
                if sent >= end || issued.fetch_add(1, Ordering::Relaxed) >= max_requests {
                    break;
                }
                let answer = client.call(request.clone()).await.and_then(|message| {
                    ModelInferResponse::decode(message).map_err(|error| format!("the answer does not decode: {error}"))
                });
                let done = Instant::now();
                match answer {
                    Ok(_) if done >= measure_from && done <= end => {
                        outcome.latencies.push(done - sent);
                        outcome.last_completion = Some(done);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        outcome.errors += 1;
                        outcome.first_error.get_or_insert(error);
                        // Do not spin on a server that refuses everything.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            outcome
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut last_completion = None;
    for task in tasks {
        let outcome = task.await.map_err(|error| format!("a client task failed: {error}"))?;
        latencies.extend(outcome.latencies);
        errors += outcome.errors;
        first_error = first_error.or(outcome.first_error);
        last_completion = last_completion.max(outcome.last_completion);
    }
    let hit_limit = issued.load(Ordering::Relaxed) >= args.max_requests;
    let window_end = if hit_limit { last_completion.unwrap_or(end).min(end) } else { end };
    let window = window_end.saturating_duration_since(measure_from).as_secs_f64();
    let count = latencies.len();
    let mut report = json!({
        "tool": "loadgen",
        "url": args.url,
        "model": args.model,
        "workload": args.workload.name(),
        "concurrency": args.concurrency,
        "contents": format!("{:?}", args.contents).to_lowercase(),
        "connections": args.connections,
        "client_threads": args.threads,
        "warmup_s": args.warmup,
        "window_s": window,
        "requests": count,
        "errors": errors,
        "first_error": first_error,
        "hit_request_limit": hit_limit,
        "throughput": if window > 0.0 { count as f64 / window } else { 0.0 },
    });
    if let (Some(object), serde_json::Value::Object(summary)) =
        (report.as_object_mut(), latency_summary(&mut latencies))
    {
        object.extend(summary);
    }
    println!("{report}");
    if count == 0 {
        return Err(format!("no request succeeded in the window ({errors} errors: {first_error:?})"));
    }
    Ok(())
}
