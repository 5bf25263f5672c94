//! A stand-in for the NVIDIA management library (`libnvidia-ml.so.1`) with
//! two made-up GPUs, so that the GPU metrics are tested on machines without
//! an NVIDIA GPU: the tests put it on `LD_LIBRARY_PATH` under NVML's name.
//! It exports the functions the server calls, with NVML's C signatures.
//! Figures are fixed, except the energy counter, which grows 2.5 J per
//! reading; the second GPU cannot report its power draw, as some boards
//! cannot. `FAKE_NVML_INIT_ERROR=<status>` makes `nvmlInit_v2` fail.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

const SUCCESS: c_int = 0;
const INVALID_ARGUMENT: c_int = 2;
const NOT_SUPPORTED: c_int = 3;
const INSUFFICIENT_SIZE: c_int = 7;

struct FakeGpu {
    uuid: &'static str,
    name: &'static str,
    utilization_percent: c_uint,
    memory_total: c_ulonglong,
    memory_used: c_ulonglong,
    power_milliwatts: Option<c_uint>,
    power_limit_milliwatts: c_uint,
}

const GIB: c_ulonglong = 1 << 30;

static GPUS: [FakeGpu; 2] = [
    FakeGpu {
        uuid: "GPU-f4ke0000-0000-0000-0000-000000000000",
        name: "Fake H100",
        utilization_percent: 37,
        memory_total: 80 * GIB,
        memory_used: GIB,
        power_milliwatts: Some(123_456),
        power_limit_milliwatts: 700_000,
    },
    FakeGpu {
        uuid: "GPU-f4ke1111-1111-1111-1111-111111111111",
        name: "Fake L4",
        utilization_percent: 5,
        memory_total: 24 * GIB,
        memory_used: GIB / 2,
        power_milliwatts: None,
        power_limit_milliwatts: 72_000,
    },
];

/// Millijoules since the (fake) driver loaded, per GPU.
static ENERGY: [AtomicU64; 2] = [AtomicU64::new(5_000_000), AtomicU64::new(9_000_000)];

/// The GPU behind a handle: handles are the GPU's index plus one.
fn gpu(device: *mut c_void) -> Option<usize> {
    let index = (device as usize).checked_sub(1)?;
    (index < GPUS.len()).then_some(index)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> c_int {
    std::env::var("FAKE_NVML_INIT_ERROR").ok().and_then(|status| status.parse().ok()).unwrap_or(SUCCESS)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(status: c_int) -> *const c_char {
    let text: &'static [u8] = match status {
        SUCCESS => b"Success\0",
        INVALID_ARGUMENT => b"Invalid Argument\0",
        NOT_SUPPORTED => b"Not Supported\0",
        INSUFFICIENT_SIZE => b"Insufficient Size\0",
        9 => b"Driver Not Loaded\0",
        _ => b"Unknown Error\0",
    };
    text.as_ptr().cast()
}

/// # Safety
/// `count` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> c_int {
    unsafe { *count = GPUS.len() as c_uint };
    SUCCESS
}

/// # Safety
/// `device` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut *mut c_void) -> c_int {
    if index as usize >= GPUS.len() {
        return INVALID_ARGUMENT;
    }
    unsafe { *device = (index as usize + 1) as *mut c_void };
    SUCCESS
}

/// Writes `text` NUL-terminated into `buffer` of `length` characters.
unsafe fn write_text(text: &str, buffer: *mut c_char, length: c_uint) -> c_int {
    if text.len() + 1 > length as usize {
        return INSUFFICIENT_SIZE;
    }
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr().cast(), buffer, text.len());
        *buffer.add(text.len()) = 0;
    }
    SUCCESS
}

/// # Safety
/// `uuid` must hold `length` characters.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(device: *mut c_void, uuid: *mut c_char, length: c_uint) -> c_int {
    match gpu(device) {
        Some(index) => unsafe { write_text(GPUS[index].uuid, uuid, length) },
        None => INVALID_ARGUMENT,
    }
}

/// # Safety
/// `name` must hold `length` characters.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(device: *mut c_void, name: *mut c_char, length: c_uint) -> c_int {
    match gpu(device) {
        Some(index) => unsafe { write_text(GPUS[index].name, name, length) },
        None => INVALID_ARGUMENT,
    }
}

/// `nvmlUtilization_t`.
#[repr(C)]
pub struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// # Safety
/// `rates` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(device: *mut c_void, rates: *mut Utilization) -> c_int {
    let Some(index) = gpu(device) else { return INVALID_ARGUMENT };
    unsafe { *rates = Utilization { gpu: GPUS[index].utilization_percent, memory: 1 } };
    SUCCESS
}

/// `nvmlMemory_t`.
#[repr(C)]
pub struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// # Safety
/// `memory` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(device: *mut c_void, memory: *mut Memory) -> c_int {
    let Some(index) = gpu(device) else { return INVALID_ARGUMENT };
    let fake = &GPUS[index];
    unsafe {
        *memory =
            Memory { total: fake.memory_total, free: fake.memory_total - fake.memory_used, used: fake.memory_used }
    };
    SUCCESS
}

/// # Safety
/// `milliwatts` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: *mut c_void, milliwatts: *mut c_uint) -> c_int {
    let Some(index) = gpu(device) else { return INVALID_ARGUMENT };
    match GPUS[index].power_milliwatts {
        Some(power) => {
            unsafe { *milliwatts = power };
            SUCCESS
        }
        None => NOT_SUPPORTED,
    }
}

/// # Safety
/// `milliwatts` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(device: *mut c_void, milliwatts: *mut c_uint) -> c_int {
    let Some(index) = gpu(device) else { return INVALID_ARGUMENT };
    unsafe { *milliwatts = GPUS[index].power_limit_milliwatts };
    SUCCESS
}

/// # Safety
/// `millijoules` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: *mut c_void,
    millijoules: *mut c_ulonglong,
) -> c_int {
    let Some(index) = gpu(device) else { return INVALID_ARGUMENT };
    unsafe { *millijoules = ENERGY[index].fetch_add(2_500, Ordering::Relaxed) };
    SUCCESS
}
