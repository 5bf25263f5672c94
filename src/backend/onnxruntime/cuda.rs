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
    if available() { driver::device_count().unwrap_or(0) } else { 0 }
}

#[cfg(feature = "cuda")]
mod driver {
    use std::ffi::{c_int, c_uint};
    use std::sync::OnceLock;

    /// The CUDA driver API's result code; 0 is success.
    type CuResult = c_int;

    /// How many GPUs the driver shows this process, or why it shows none
    /// (no driver library, or its initialisation failed, as it does when
    /// `CUDA_VISIBLE_DEVICES` hides every GPU). Asked once.
    pub fn device_count() -> Result<u32, String> {
        static COUNT: OnceLock<Result<u32, String>> = OnceLock::new();
        COUNT
            .get_or_init(|| {
                let count = ask_driver();
                if let Err(reason) = &count {
                    tracing::info!("no GPU found: {reason}");
                }
                count
            })
            .clone()
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
    pub fn device_count() -> Result<u32, String> {
        Ok(0)
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
    check_visible(gpu, driver::device_count())?;
    cuda_provider(gpu, options)
}

/// Fails an instance on a GPU the driver does not show this process, which
/// ONNX Runtime would otherwise report as a failed provider option.
fn check_visible(gpu: i32, visible: Result<u32, String>) -> Result<()> {
    let shown = match &visible {
        Ok(count) if u32::try_from(gpu).is_ok_and(|gpu| gpu < *count) => return Ok(()),
        Ok(0) => "no GPU".to_string(),
        Ok(count) => format!("GPUs 0 to {}", count - 1),
        Err(reason) => format!("no GPU ({reason})"),
    };
    let hidden_by = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(devices) => format!(" with CUDA_VISIBLE_DEVICES='{devices}'"),
        Err(_) => String::new(),
    };
    Err(Error::unavailable(format!(
        "KIND_GPU instance on GPU {gpu}: the NVIDIA driver shows this server {shown}{hidden_by}; make the GPU visible \
         to the server, or use KIND_CPU or KIND_AUTO (which runs on the CPU where there is no GPU)"
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    // With the `cuda` feature the check asks the loaded library, which unit
    // tests do not load; tests/model_loading.rs covers that build end to end.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn gpu_instances_explain_what_they_need() {
        let Err(error) = execution_provider(0, Path::new("/opt/lib/libonnxruntime.so.1.31.1"), &[]) else {
            panic!("a GPU provider without a GPU library");
        };
        assert!(error.message().contains("KIND_GPU instances need"), "{}", error.message());
    }

    #[test]
    fn instances_need_a_gpu_the_driver_shows() {
        assert!(check_visible(0, Ok(1)).is_ok());
        assert!(check_visible(1, Ok(2)).is_ok());
        let refused: [(i32, Result<u32, String>, &str); 4] = [
            (0, Ok(0), "GPU 0: the NVIDIA driver shows this server no GPU"),
            (2, Ok(2), "GPU 2: the NVIDIA driver shows this server GPUs 0 to 1"),
            (0, Err("cuInit failed with CUDA error 100".into()), "no GPU (cuInit failed with CUDA error 100)"),
            (-1, Ok(1), "GPU -1"),
        ];
        for (gpu, visible, expected) in refused {
            let Err(error) = check_visible(gpu, visible) else { panic!("GPU {gpu} passed: {expected}") };
            assert!(error.message().contains(expected), "{}", error.message());
        }
    }
}
