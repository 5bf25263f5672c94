//! A stand-in for the NVIDIA driver library (`libcuda.so.1`), so that CUDA
//! shared memory is tested on machines without an NVIDIA GPU: the tests put
//! it on `LD_LIBRARY_PATH` under the driver's name. It exports the driver
//! API functions the server calls, with their C signatures, and has two
//! devices. Its "GPU memory" is POSIX shared memory: an IPC handle holds
//! the NUL-terminated name of a `/dev/shm` object, which opening the handle
//! maps, and device pointers are addresses in that mapping. Like the real
//! driver, it refuses copies and IPC calls without a current context and
//! copies outside an opened allocation. It prints what it opens and closes
//! to standard error, where the tests read it.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::fs::OpenOptions;
use std::sync::Mutex;

use memmap2::MmapRaw;

const SUCCESS: c_int = 0;
const INVALID_VALUE: c_int = 1;
const INVALID_DEVICE: c_int = 101;
const INVALID_CONTEXT: c_int = 201;
const DEVICES: c_int = 2;

/// An opened IPC handle: the shared-memory object it names, mapped.
struct Allocation {
    name: String,
    map: MmapRaw,
}

impl Allocation {
    fn address(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    fn holds(&self, pointer: u64, bytes: usize) -> bool {
        pointer >= self.address() && pointer + bytes as u64 <= self.address() + self.map.len() as u64
    }
}

static ALLOCATIONS: Mutex<Vec<Allocation>> = Mutex::new(Vec::new());

thread_local! {
    /// The calling thread's context stack (contexts are device + 1).
    static CONTEXTS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn has_context() -> bool {
    CONTEXTS.with(|stack| !stack.borrow().is_empty())
}

/// Runs `copy` if `pointer..pointer + bytes` lies in an opened allocation.
fn within_allocation(pointer: u64, bytes: usize, copy: impl FnOnce()) -> c_int {
    if !has_context() {
        return INVALID_CONTEXT;
    }
    let allocations = ALLOCATIONS.lock().unwrap();
    if !allocations.iter().any(|allocation| allocation.holds(pointer, bytes)) {
        return INVALID_VALUE;
    }
    copy();
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuInit(_flags: c_uint) -> c_int {
    SUCCESS
}

/// # Safety
/// `text` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorString(status: c_int, text: *mut *const c_char) -> c_int {
    let message: &'static [u8] = match status {
        SUCCESS => b"no error\0",
        INVALID_VALUE => b"invalid argument\0",
        INVALID_DEVICE => b"invalid device ordinal\0",
        INVALID_CONTEXT => b"invalid device context\0",
        _ => return INVALID_VALUE,
    };
    unsafe { *text = message.as_ptr().cast() };
    SUCCESS
}

/// # Safety
/// `device` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGet(device: *mut c_int, ordinal: c_int) -> c_int {
    if !(0..DEVICES).contains(&ordinal) {
        return INVALID_DEVICE;
    }
    unsafe { *device = ordinal };
    SUCCESS
}

/// # Safety
/// `context` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(context: *mut *mut c_void, device: c_int) -> c_int {
    if !(0..DEVICES).contains(&device) {
        return INVALID_DEVICE;
    }
    unsafe { *context = (device as usize + 1) as *mut c_void };
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuCtxPushCurrent_v2(context: *mut c_void) -> c_int {
    if context.is_null() {
        return INVALID_CONTEXT;
    }
    CONTEXTS.with(|stack| stack.borrow_mut().push(context as usize));
    SUCCESS
}

/// # Safety
/// `context` must be writable or null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(context: *mut *mut c_void) -> c_int {
    match CONTEXTS.with(|stack| stack.borrow_mut().pop()) {
        Some(popped) => {
            if !context.is_null() {
                unsafe { *context = popped as *mut c_void };
            }
            SUCCESS
        }
        None => INVALID_CONTEXT,
    }
}

/// `CUipcMemHandle`, passed by value.
#[repr(C)]
pub struct IpcMemHandle {
    reserved: [u8; 64],
}

/// # Safety
/// `pointer` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuIpcOpenMemHandle_v2(pointer: *mut u64, handle: IpcMemHandle, _flags: c_uint) -> c_int {
    if !has_context() {
        return INVALID_CONTEXT;
    }
    let end = handle.reserved.iter().position(|&byte| byte == 0).unwrap_or(handle.reserved.len());
    let Ok(name) = std::str::from_utf8(&handle.reserved[..end]) else { return INVALID_VALUE };
    let file = match OpenOptions::new().read(true).write(true).open(format!("/dev/shm/{name}")) {
        Ok(file) if !name.is_empty() && !name.contains('/') => file,
        _ => return INVALID_VALUE,
    };
    let Ok(map) = MmapRaw::map_raw(&file) else { return INVALID_VALUE };
    let allocation = Allocation { name: name.to_string(), map };
    unsafe { *pointer = allocation.address() };
    eprintln!("fake cuda: opened {name}");
    ALLOCATIONS.lock().unwrap().push(allocation);
    SUCCESS
}

#[unsafe(no_mangle)]
pub extern "C" fn cuIpcCloseMemHandle(pointer: u64) -> c_int {
    if !has_context() {
        return INVALID_CONTEXT;
    }
    let mut allocations = ALLOCATIONS.lock().unwrap();
    let Some(index) = allocations.iter().position(|allocation| allocation.address() == pointer) else {
        return INVALID_VALUE;
    };
    let allocation = allocations.remove(index);
    eprintln!("fake cuda: closed {}", allocation.name);
    SUCCESS
}

/// # Safety
/// `base` and `size` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetAddressRange_v2(base: *mut u64, size: *mut usize, pointer: u64) -> c_int {
    let allocations = ALLOCATIONS.lock().unwrap();
    let Some(allocation) = allocations.iter().find(|allocation| allocation.holds(pointer, 0)) else {
        return INVALID_VALUE;
    };
    unsafe {
        *base = allocation.address();
        *size = allocation.map.len();
    }
    SUCCESS
}

/// # Safety
/// `host` must hold `bytes` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(host: *mut c_void, device: u64, bytes: usize) -> c_int {
    within_allocation(device, bytes, || unsafe {
        std::ptr::copy_nonoverlapping(device as *const u8, host.cast::<u8>(), bytes)
    })
}

/// # Safety
/// `host` must hold `bytes` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(device: u64, host: *const c_void, bytes: usize) -> c_int {
    within_allocation(device, bytes, || unsafe {
        std::ptr::copy_nonoverlapping(host.cast::<u8>(), device as *mut u8, bytes)
    })
}
