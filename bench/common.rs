//! What the benchmark binaries share: the two workloads' request tensors
//! and the latency summary. Included by `raw_onnxruntime.rs` and
//! `loadgen.rs` with `#[path]`, so each bench target stays one binary.

#![allow(dead_code)] // Each binary uses a different part of this module.

use std::time::Duration;

use serde_json::{Value, json};

/// The two workloads of `bench/generate_workloads.py`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// W1: INT32 INPUT0, INPUT1 [16] -> OUTPUT0 (sum), OUTPUT1 (difference).
    Simple,
    /// W2: FP32 INPUT [256] -> MLP -> OUTPUT [16].
    Mlp,
}

/// One input tensor of a request: name, KServe datatype, shape with the
/// batch dimension, and its little-endian bytes.
pub struct InputTensor {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

/// One output: name, KServe datatype and the bytes one row takes.
pub struct OutputSpec {
    pub name: &'static str,
    pub datatype: &'static str,
    pub row_bytes: usize,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Mlp => "mlp",
        }
    }

    /// The request tensors for `batch` rows. The values are fixed so every
    /// server and the raw limit compute the same thing.
    pub fn inputs(self, batch: usize) -> Vec<InputTensor> {
        let rows = batch as i64;
        match self {
            Self::Simple => {
                let input0: Vec<i32> = (0..batch).flat_map(|_| 0..16).collect();
                let input1: Vec<i32> = vec![1; batch * 16];
                vec![
                    InputTensor { name: "INPUT0", datatype: "INT32", shape: vec![rows, 16], data: le_bytes(&input0) },
                    InputTensor { name: "INPUT1", datatype: "INT32", shape: vec![rows, 16], data: le_bytes(&input1) },
                ]
            }
            Self::Mlp => {
                let values: Vec<f32> =
                    (0..batch * 256).map(|index| ((index * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
                vec![InputTensor { name: "INPUT", datatype: "FP32", shape: vec![rows, 256], data: le_bytes(&values) }]
            }
        }
    }

    pub fn outputs(self) -> Vec<OutputSpec> {
        match self {
            Self::Simple => vec![
                OutputSpec { name: "OUTPUT0", datatype: "INT32", row_bytes: 16 * 4 },
                OutputSpec { name: "OUTPUT1", datatype: "INT32", row_bytes: 16 * 4 },
            ],
            Self::Mlp => vec![OutputSpec { name: "OUTPUT", datatype: "FP32", row_bytes: 16 * 4 }],
        }
    }
}

pub trait LittleEndian: Copy {
    fn extend_le(self, out: &mut Vec<u8>);
}

impl LittleEndian for i32 {
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl LittleEndian for f32 {
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

pub fn le_bytes<T: LittleEndian>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for &value in values {
        value.extend_le(&mut out);
    }
    out
}

/// Latency figures of a set of calls, in microseconds.
pub fn latency_summary(latencies: &mut [Duration]) -> Value {
    latencies.sort_unstable();
    let micros = |duration: Duration| (duration.as_nanos() as f64 / 1000.0 * 10.0).round() / 10.0;
    let percentile = |fraction: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        // Nearest rank.
        let rank = ((fraction * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        micros(latencies[rank - 1])
    };
    let mean = if latencies.is_empty() {
        f64::NAN
    } else {
        micros(latencies.iter().sum::<Duration>() / latencies.len() as u32)
    };
    json!({
        "p50_us": percentile(0.50),
        "p90_us": percentile(0.90),
        "p99_us": percentile(0.99),
        "mean_us": mean,
        "min_us": latencies.first().map_or(f64::NAN, |&first| micros(first)),
        "max_us": latencies.last().map_or(f64::NAN, |&last| micros(last)),
    })
}

/// Parses "1,8,32".
pub fn parse_list(text: &str) -> Result<Vec<usize>, String> {
    text.split(',').map(|item| item.trim().parse::<usize>().map_err(|_| format!("'{item}' is not a number"))).collect()
}
