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

/// How many GPUs instances can run on (device ids 0 to count - 1): none
/// unless the CUDA provider is [`available`]; then the devices the NVIDIA
/// driver shows this process (after `CUDA_VISIBLE_DEVICES`). The provider
/// being in the library says nothing about a device being present: the
/// GPU image on a host without one, or started without its GPUs, must
/// still run `KIND_AUTO` models on the CPU, as Triton does.
pub fn usable_gpu_count() -> u32 {
    if available() { driver::device_count() } else { 0 }
}

#[cfg(feature = "cuda")]
mod driver {
    use std::ffi::{c_int, c_uint};
    use std::sync::OnceLock;

    /// The CUDA driver API's result code; 0 is success.
    type CuResult = c_int;

    /// Asks the driver library once; a host without it has no GPU.
    pub fn device_count() -> u32 {
        static COUNT: OnceLock<u32> = OnceLock::new();
        *COUNT.get_or_init(|| match ask_driver() {
            Ok(count) => count,
            Err(reason) => {
                tracing::info!("no GPU found: {reason}");
                0
            }
        })
    }

    fn ask_driver() -> Result<u32, String> {
        // SAFETY: libcuda.so.1 is the NVIDIA driver's own library; loading it
        // runs no initialisers beyond the driver's, and the two functions
        // have had these C signatures since CUDA 2.0.
        unsafe {
            let library = libloading::Library::new("libcuda.so.1")
                .map_err(|error| format!("the NVIDIA driver library libcuda.so.1 cannot be loaded ({error})"))?;
            let init: libloading::Symbol<unsafe extern "C" fn(c_uint) -> CuResult> =
                library.get(b"cuInit").map_err(|error| error.to_string())?;
            let get_count: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> CuResult> =
                library.get(b"cuDeviceGetCount").map_err(|error| error.to_string())?;
            let status = init(0);
            if status != 0 {
                return Err(format!("cuInit failed with CUDA error {status}"));
            }
            let mut count: c_int = 0;
            let status = get_count(&mut count);
            if status != 0 {
                return Err(format!("cuDeviceGetCount failed with CUDA error {status}"));
            }
            // The driver stays loaded for ONNX Runtime's CUDA provider.
            std::mem::forget(library);
            Ok(u32::try_from(count).unwrap_or(0))
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod driver {
    /// Without the `cuda` feature there is nothing to ask.
    pub fn device_count() -> u32 {
        0
    }
}

/// The CUDA execution provider on device `gpu` with the configuration's
/// provider `options`, failing the session rather than silently running on
/// the CPU when it cannot be registered.
pub fn execution_provider(gpu: i32, library: &Path, options: &[(String, String)]) -> Result<ExecutionProviderDispatch> {
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
    cuda_provider(gpu, options)
}

#[cfg(feature = "cuda")]
fn cuda_provider(gpu: i32, options: &[(String, String)]) -> Result<ExecutionProviderDispatch> {
    use ort::ep::ArbitrarilyConfigurableExecutionProvider;
    let provider = options
        .iter()
        .fold(ort::ep::CUDA::default(), |provider, (key, value)| provider.with_arbitrary_config(key, value));
    Ok(provider.with_device_id(gpu).build().error_on_failure())
}

#[cfg(not(feature = "cuda"))]
fn cuda_provider(gpu: i32, _: &[(String, String)]) -> Result<ExecutionProviderDispatch> {
    Err(Error::unavailable(format!("GPU {gpu}: this build has no CUDA support")))
}

// With the `cuda` feature the check asks the loaded library, which unit
// tests do not load; tests/model_loading.rs covers that build end to end.
#[cfg(all(test, not(feature = "cuda")))]
mod tests {
    use super::*;

    #[test]
    fn gpu_instances_explain_what_they_need() {
        let Err(error) = execution_provider(0, Path::new("/opt/lib/libonnxruntime.so.1.31.1"), &[]) else {
            panic!("a GPU provider without a GPU library");
        };
        assert!(error.message().contains("KIND_GPU instances need"), "{}", error.message());
    }
}
