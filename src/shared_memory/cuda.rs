//! CUDA shared-memory regions: GPU memory of another process, shared
//! through a CUDA IPC handle (`cudaIpcGetMemHandle` on the client's side),
//! which the server opens on the given device and copies inputs out of and
//! outputs into. The NVIDIA driver's library (`libcuda.so.1`) is opened at
//! run time through its driver API, which every CUDA runtime version's
//! handles work with, so the server needs no CUDA toolkit and builds and
//! runs where there is none.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::ops::Range;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The driver library, as the NVIDIA driver installs it.
const LIBRARY: &str = "libcuda.so.1";

/// The size of a `cudaIpcMemHandle_t` / `CUipcMemHandle`.
pub(super) const IPC_HANDLE_SIZE: usize = 64;

/// `CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS`, the flag Triton opens handles with.
const LAZY_ENABLE_PEER_ACCESS: c_uint = 1;

type CuResult = c_int;
type DevicePointer = u64;
type Context = *mut c_void;

/// `CUipcMemHandle`, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct IpcMemHandle {
    reserved: [u8; IPC_HANDLE_SIZE],
}

/// The driver functions CUDA shared memory needs, resolved once.
struct Driver {
    // Kept open for as long as the function pointers below are used.
    _library: libloading::Library,
    error_string: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    device_get: unsafe extern "C" fn(*mut c_int, c_int) -> CuResult,
    primary_context_retain: unsafe extern "C" fn(*mut Context, c_int) -> CuResult,
    push_context: unsafe extern "C" fn(Context) -> CuResult,
    pop_context: unsafe extern "C" fn(*mut Context) -> CuResult,
    open_ipc_handle: unsafe extern "C" fn(*mut DevicePointer, IpcMemHandle, c_uint) -> CuResult,
    close_ipc_handle: unsafe extern "C" fn(DevicePointer) -> CuResult,
    address_range: unsafe extern "C" fn(*mut DevicePointer, *mut usize, DevicePointer) -> CuResult,
    copy_to_host: unsafe extern "C" fn(*mut c_void, DevicePointer, usize) -> CuResult,
    copy_to_device: unsafe extern "C" fn(DevicePointer, *const c_void, usize) -> CuResult,
    /// Each device's primary context, retained on first use for the
    /// process's lifetime, as the CUDA runtime does.
    contexts: Mutex<HashMap<c_int, usize>>,
}

// SAFETY: the driver API is thread-safe; contexts are pushed and popped
// around each call on the calling thread, and the function pointers stay
// valid while the library, which `Driver` owns, is open.
unsafe impl Send for Driver {}
unsafe impl Sync for Driver {}

/// Copies a function pointer out of `library`.
///
/// # Safety
/// `T` must be the C signature the library gives `name`.
unsafe fn function<T: Copy>(library: &libloading::Library, name: &str) -> Result<T, String> {
    // SAFETY: the caller names the symbol's true signature.
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|symbol| *symbol)
        .map_err(|error| format!("{LIBRARY} has no {name} ({error})"))
}

/// The driver, loaded and initialised on first use; `Err` says why CUDA
/// shared memory cannot be used on this machine.
fn driver() -> Result<&'static Driver, String> {
    static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
    DRIVER.get_or_init(Driver::open).as_ref().map_err(Clone::clone)
}

impl Driver {
    fn open() -> Result<Self, String> {
        // SAFETY: loading the NVIDIA driver's own library runs only its
        // initialisers.
        let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(|error| {
            format!(
                "CUDA shared memory needs the NVIDIA driver: {LIBRARY} cannot be loaded ({})",
                crate::error::innermost(&error)
            )
        })?;
        // SAFETY: each signature is the driver API's own (cuda.h), under
        // the versioned names cuda.h maps the plain ones to.
        let driver = unsafe {
            let init: unsafe extern "C" fn(c_uint) -> CuResult = function(&library, "cuInit")?;
            let driver = Self {
                error_string: function(&library, "cuGetErrorString")?,
                device_get: function(&library, "cuDeviceGet")?,
                primary_context_retain: function(&library, "cuDevicePrimaryCtxRetain")?,
                push_context: function(&library, "cuCtxPushCurrent_v2")?,
                pop_context: function(&library, "cuCtxPopCurrent_v2")?,
                open_ipc_handle: function(&library, "cuIpcOpenMemHandle_v2")?,
                close_ipc_handle: function(&library, "cuIpcCloseMemHandle")?,
                address_range: function(&library, "cuMemGetAddressRange_v2")?,
                copy_to_host: function(&library, "cuMemcpyDtoH_v2")?,
                copy_to_device: function(&library, "cuMemcpyHtoD_v2")?,
                contexts: Mutex::new(HashMap::new()),
                _library: library,
            };
            driver.check("cuInit", init(0))?;
            driver
        };
        Ok(driver)
    }

    /// `Ok` on success, else the call and the driver's words for its error.
    fn check(&self, call: &str, status: CuResult) -> Result<(), String> {
        if status == 0 {
            return Ok(());
        }
        let mut text: *const c_char = std::ptr::null();
        // SAFETY: `text` is a valid out-pointer; on success it points to a
        // static NUL-terminated string.
        let known = unsafe { (self.error_string)(status, &mut text) } == 0 && !text.is_null();
        let text = if known {
            // SAFETY: checked above.
            unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
        } else {
            "unknown error".to_string()
        };
        Err(format!("{call} failed: {text} (CUDA error {status})"))
    }

    /// Runs `call` with `device`'s primary context current on this thread.
    fn on_device(&self, device: c_int, name: &str, call: impl FnOnce() -> CuResult) -> Result<(), String> {
        let context = self.context(device)?;
        // SAFETY: `context` is a retained primary context; it is popped
        // again below, leaving the thread's context stack as it was.
        self.check("cuCtxPushCurrent", unsafe { (self.push_context)(context as Context) })?;
        let result = self.check(name, call());
        let mut popped: Context = std::ptr::null_mut();
        // SAFETY: pops the context pushed above.
        unsafe { (self.pop_context)(&mut popped) };
        result
    }

    fn context(&self, ordinal: c_int) -> Result<usize, String> {
        let mut contexts = self.contexts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&context) = contexts.get(&ordinal) {
            return Ok(context);
        }
        let mut device: c_int = 0;
        // SAFETY: valid out-pointers; the driver checks the ordinal.
        self.check("cuDeviceGet", unsafe { (self.device_get)(&mut device, ordinal) })
            .map_err(|reason| format!("no CUDA device {ordinal}: {reason}"))?;
        let mut context: Context = std::ptr::null_mut();
        // SAFETY: `device` came from cuDeviceGet.
        self.check("cuDevicePrimaryCtxRetain", unsafe { (self.primary_context_retain)(&mut context, device) })?;
        contexts.insert(ordinal, context as usize);
        Ok(context as usize)
    }
}

/// A registered CUDA region: the client's GPU memory, opened in this
/// process; closed when the last user lets go of it after it is
/// unregistered.
pub(super) struct CudaRegion {
    /// The CUDA device the memory is on.
    pub(super) device: c_int,
    /// The region's size, as registered.
    pub(super) byte_size: usize,
    pointer: DevicePointer,
}

impl CudaRegion {
    /// Opens the IPC handle `raw_handle` on `device`, checking that the
    /// allocation behind it holds `byte_size` bytes.
    pub(super) fn open(raw_handle: &[u8], device: i64, byte_size: u64) -> Result<Self, String> {
        let handle = IpcMemHandle {
            reserved: raw_handle.try_into().map_err(|_| {
                format!(
                    "raw_handle must be the {IPC_HANDLE_SIZE} bytes of a cudaIpcMemHandle_t, not {} bytes",
                    raw_handle.len()
                )
            })?,
        };
        let device = c_int::try_from(device)
            .ok()
            .filter(|&device| device >= 0)
            .ok_or(format!("device_id {device} is not a CUDA device"))?;
        let byte_size = usize::try_from(byte_size)
            .ok()
            .filter(|&size| size > 0)
            .ok_or(format!("byte_size {byte_size} must be at least 1"))?;
        let driver = driver()?;
        let mut pointer: DevicePointer = 0;
        // SAFETY: a valid out-pointer and a handle of the driver's layout;
        // the driver validates the handle.
        driver.on_device(device, "cuIpcOpenMemHandle", || unsafe {
            (driver.open_ipc_handle)(&mut pointer, handle, LAZY_ENABLE_PEER_ACCESS)
        })?;
        let region = Self { device, byte_size, pointer };
        let (mut base, mut size): (DevicePointer, usize) = (0, 0);
        // SAFETY: valid out-pointers for a pointer the driver just gave.
        driver.on_device(device, "cuMemGetAddressRange", || unsafe {
            (driver.address_range)(&mut base, &mut size, pointer)
        })?;
        let available = (base + size as u64).saturating_sub(pointer);
        if byte_size as u64 > available {
            // `region` is dropped here, closing the handle.
            return Err(format!("byte_size {byte_size} is larger than the {available} bytes of the CUDA allocation"));
        }
        Ok(region)
    }

    /// Copies `range` of the region to the host.
    pub(super) fn read(&self, range: Range<usize>) -> Result<Vec<u8>, String> {
        let driver = driver()?;
        let mut data = vec![0u8; range.len()];
        // SAFETY: `range` lies inside the region (checked by the caller)
        // and `data` holds `range.len()` bytes.
        driver.on_device(self.device, "cuMemcpyDtoH", || unsafe {
            (driver.copy_to_host)(data.as_mut_ptr().cast(), self.pointer + range.start as u64, range.len())
        })?;
        Ok(data)
    }

    /// Copies `data` to the start of `range` (which holds at least as many
    /// bytes).
    pub(super) fn write(&self, range: Range<usize>, data: &[u8]) -> Result<(), String> {
        debug_assert!(data.len() <= range.len());
        let driver = driver()?;
        // SAFETY: `range` lies inside the region and holds `data.len()`
        // bytes; `data` is host memory of that length.
        driver.on_device(self.device, "cuMemcpyHtoD", || unsafe {
            (driver.copy_to_device)(self.pointer + range.start as u64, data.as_ptr().cast(), data.len())
        })
    }
}

impl Drop for CudaRegion {
    fn drop(&mut self) {
        // A region exists only once the driver opened it.
        let Ok(driver) = driver() else { return };
        // SAFETY: the pointer came from cuIpcOpenMemHandle and is closed
        // once, here.
        let closed =
            driver.on_device(self.device, "cuIpcCloseMemHandle", || unsafe { (driver.close_ipc_handle)(self.pointer) });
        if let Err(reason) = closed {
            tracing::warn!("failed to close a CUDA shared memory region's IPC handle: {reason}");
        }
    }
}
