//! The raw limit: a model run in-process through the `ort` crate, with the
//! ONNX Runtime library the server loads and the session settings the
//! server would give one instance of the model, without any serving in
//! between.
//!
//!     cargo bench --bench raw_onnxruntime -- --model bench/.work/models/triton/mlp_nobatching \
//!         --workload mlp --batch 1,8,32 --duration 3
//!
//! The settings come from the model directory's `config.pbtxt`, read,
//! completed and checked by the server's own `prepare_config`, through the
//! server's own `SessionOptions::from_config` (intra-op threads = cores /
//! instances unless the config sets them, graph optimization level, ...),
//! and the session is built by the server's own
//! `OnnxRuntimeBackend::build_session` on the device of the server's first
//! instance (the CUDA execution provider for `KIND_GPU`). Inputs are
//! borrowed from prepared buffers (as the server borrows request bytes).
//! Each batch size runs back to back, one call at a time, for a fixed time
//! or number of calls; the result is one JSON object on stdout.

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ort::session::SessionInputValue;
use ort::value::TensorRef;
use serde_json::json;
use tritonrs::backend::onnxruntime::{OnnxRuntimeBackend, SessionOptions};
use tritonrs::backend::{Backend, Device};
use tritonrs::model_config::AutocompleteOptions;
use tritonrs::model_manager::{instance_placements, prepare_config};
use tritonrs::repository::ModelDirectory;

use common::{Workload, latency_summary, parse_list};

#[derive(Parser, Debug)]
#[command(about = "Raw in-process ONNX Runtime throughput and latency (the limit for a server)")]
struct Args {
    /// A Triton model directory: config.pbtxt and 1/model.onnx.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum)]
    workload: Workload,
    /// Batch sizes, comma-separated.
    #[arg(long, default_value = "1,8,32", value_parser = parse_list)]
    batch: std::vec::Vec<usize>,
    /// Seconds of measurement per batch size.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Seconds of unmeasured calls before each measurement.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Upper bound on the measured calls per batch size.
    #[arg(long, default_value_t = 2_000_000)]
    max_calls: usize,
    /// The ONNX Runtime library; by default the one the server would load.
    #[arg(long)]
    library: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    if let Err(message) = run(Args::parse()) {
        eprintln!("raw_onnxruntime: {message}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let backend = Arc::new(OnnxRuntimeBackend::load(args.library.as_deref(), None)?);

    // The configuration and instances the server would make of this directory.
    let name = args.model.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let directory = ModelDirectory::unmapped(name, args.model.clone());
    let completion = AutocompleteOptions { gpu_count: backend.gpu_count(), ..Default::default() };
    let config = prepare_config(&directory, &Ok(backend.clone() as Arc<dyn Backend>), completion)?;
    let placements = instance_placements(&config);
    let instances = placements.len();
    let device = placements.first().map_or(Device::Cpu, |placement| placement.device);
    let options = SessionOptions::from_config(&config, instances, device)?;
    let model_file = args.model.join("1").join(&config.default_model_filename);
    let mut session = backend.build_session(&options, device, &model_file).map_err(|error| error.to_string())?;

    let mut results = Vec::new();
    for &batch in &args.batch {
        let inputs: Vec<(&str, Vec<i64>, Typed)> = args
            .workload
            .inputs(batch)
            .into_iter()
            .map(|input| {
                let typed = match input.datatype {
                    "INT32" => Typed::Int32(bytemuck::pod_collect_to_vec(&input.data)),
                    _ => Typed::Fp32(bytemuck::pod_collect_to_vec(&input.data)),
                };
                (input.name, input.shape, typed)
            })
            .collect();
        let outputs = args.workload.outputs();
        let mut call = || -> Result<(), String> {
            let mut values: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
            for (name, shape, typed) in &inputs {
                let value: SessionInputValue<'_> = match typed {
                    Typed::Int32(data) => TensorRef::from_array_view((shape.clone(), data.as_slice()))
                        .map_err(|error| error.to_string())?
                        .into(),
                    Typed::Fp32(data) => TensorRef::from_array_view((shape.clone(), data.as_slice()))
                        .map_err(|error| error.to_string())?
                        .into(),
                };
                values.push((name, value));
            }
            let produced = session.run(values).map_err(|error| error.to_string())?;
            for output in &outputs {
                let value = produced.get(output.name).ok_or_else(|| format!("no output {}", output.name))?;
                let elements = match output.datatype {
                    "INT32" => value.try_extract_tensor::<i32>().map(|(_, data)| data.len()),
                    _ => value.try_extract_tensor::<f32>().map(|(_, data)| data.len()),
                }
                .map_err(|error| error.to_string())?;
                if elements * 4 != output.row_bytes * batch {
                    return Err(format!("output {} has {elements} elements for batch {batch}", output.name));
                }
            }
            Ok(())
        };
        let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup);
        while Instant::now() < warmup_end {
            call()?;
        }
        let mut latencies = Vec::with_capacity(100_000);
        let started = Instant::now();
        let end = started + Duration::from_secs_f64(args.duration);
        while latencies.len() < args.max_calls {
            let before = Instant::now();
            if before >= end {
                break;
            }
            call()?;
            latencies.push(before.elapsed());
        }
        let seconds = started.elapsed().as_secs_f64();
        let calls = latencies.len();
        let mut entry = json!({
            "batch": batch,
            "calls": calls,
            "seconds": seconds,
            "calls_per_s": calls as f64 / seconds,
            "inferences_per_s": (calls * batch) as f64 / seconds,
        });
        if let (Some(entry), serde_json::Value::Object(summary)) =
            (entry.as_object_mut(), latency_summary(&mut latencies))
        {
            entry.extend(summary);
        }
        eprintln!("raw {} batch {batch}: {entry}", args.workload.name());
        results.push(entry);
    }
    let report = json!({
        "tool": "raw_onnxruntime",
        "workload": args.workload.name(),
        "model": args.model.display().to_string(),
        "library": backend.library().display().to_string(),
        "device": format!("{device:?}"),
        "instances_in_config": instances,
        "intra_op_threads": options.intra_op_threads,
        "inter_op_threads": options.inter_op_threads,
        "parallel_execution": options.parallel_execution,
        "optimization": format!("{:?}", options.optimization),
        "results": results,
    });
    println!("{report}");
    Ok(())
}

/// Input data in its element type, so ONNX Runtime can borrow it.
enum Typed {
    Int32(Vec<i32>),
    Fp32(Vec<f32>),
}
