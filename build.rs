//! Compiles our proto files with `protox` (pure Rust, no system `protoc`),
//! generates the tonic/prost code, and writes the encoded descriptor set that
//! gRPC server reflection serves and that `config.pbtxt` parsing reads.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &["grpc_service.proto", "model_config.proto", "health.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("descriptor_set.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Tensor payloads stay reference-counted buffers so they move from the
        // wire to the backend and back without copies.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        // So do the model files a load request sends.
        .bytes(".inference.ModelRepositoryParameter.bytes_param")
        .compile_fds(descriptors)?;
    Ok(())
}
