//! A drop-in for NVIDIA Triton Inference Server that serves a Triton model
//! repository of ONNX models over the KServe v2 / Triton gRPC protocol.
//!
//! Data flows one way: a frontend ([`grpc`], [`http`]) decodes wire messages into an
//! [`inference::InferenceRequest`], the [`model_manager`] validates it and
//! hands it to the model's [`scheduler`], whose instances run it on a
//! [`backend`], and the response travels back the same way. The
//! [`metrics`] frontend reads the same statistics the statistics extension
//! reports.

#![warn(missing_docs)]

pub mod backend;
pub mod classification;
pub mod cli;
pub mod cloud_storage;
pub mod directory_fingerprint;
pub mod ensemble;
pub mod error;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod inference;
pub mod logging;
pub mod metrics;
pub mod model_config;
pub mod model_control;
pub mod model_manager;
pub mod platform;
pub mod proto;
pub mod repository;
pub mod repository_agent;
pub mod response_cache;
pub mod restricted_api;
pub mod scheduler;
pub mod sequence;
pub mod server;
pub mod shared_memory;
pub mod shutdown;
pub mod statistics;
pub mod tensor;
pub mod tls_crypto;
pub mod trace;
pub mod utc_time;
pub mod validation;
pub mod warmup;
