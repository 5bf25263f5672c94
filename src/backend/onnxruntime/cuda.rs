//! ONNX Runtime's CUDA execution provider for `KIND_GPU` instance groups,
//! compiled in with the `cuda` cargo feature and usable when the loaded
//! library is the GPU build (`onnxruntime-gpu`).

use std::path::Path;

use ort::ep::ExecutionProviderDispatch;

use crate::error::{Error, Result};

/// Whether GPU instances can be created: the `cuda` feature is compiled in
/// and the loaded library carries the CUDA execution provider.
pub fn available() -> bool {
    #[cfg(feature = "cuda")]
    {
        use ort::ep::ExecutionProvider;
        ort::ep::CUDA::is_available().unwrap_or(false)
    }
    #[cfg(not(feature = "cuda"))]
    false
}

/// The CUDA execution provider on device `gpu`, failing the session rather
/// than silently running on the CPU when it cannot be registered.
pub fn execution_provider(gpu: i32, library: &Path) -> Result<ExecutionProviderDispatch> {
    if !cfg!(feature = "cuda") {
        return Err(Error::unavailable(format!(
            "KIND_GPU instances need a build with the `cuda` feature (cargo build --features cuda) and the \
             onnxruntime-gpu library; this build runs on the CPU only, so use KIND_CPU or KIND_AUTO (GPU {gpu} was asked for)"
        )));
    }
    if !available() {
        return Err(Error::unavailable(format!(
            "KIND_GPU instances need the CUDA execution provider, which the ONNX Runtime library '{}' lacks; use the \
             onnxruntime-gpu build (scripts/fetch-onnxruntime.sh --gpu) or KIND_CPU / KIND_AUTO",
            library.display()
        )));
    }
    cuda_provider(gpu)
}

#[cfg(feature = "cuda")]
fn cuda_provider(gpu: i32) -> Result<ExecutionProviderDispatch> {
    Ok(ort::ep::CUDA::default().with_device_id(gpu).build().error_on_failure())
}

#[cfg(not(feature = "cuda"))]
fn cuda_provider(gpu: i32) -> Result<ExecutionProviderDispatch> {
    Err(Error::unavailable(format!("GPU {gpu}: this build has no CUDA support")))
}

// With the `cuda` feature the check asks the loaded library, which unit
// tests do not load; tests/model_loading.rs covers that build end to end.
#[cfg(all(test, not(feature = "cuda")))]
mod tests {
    use super::*;

    #[test]
    fn gpu_instances_explain_what_they_need() {
        let Err(error) = execution_provider(0, Path::new("/opt/lib/libonnxruntime.so.1.31.1")) else {
            panic!("a GPU provider without a GPU library");
        };
        assert!(error.message().contains("KIND_GPU instances need"), "{}", error.message());
    }
}
