//! Triton's GPU metrics: per GPU this process may use, its utilization,
//! memory, power draw and limit, and the energy it used since the server
//! started, read from the NVIDIA driver's management library (NVML,
//! `libnvidia-ml.so.1`) every polling interval. Triton reads the same
//! figures through DCGM, which wraps NVML; loading the library at run time
//! keeps machines without an NVIDIA driver (and the image) free of it.

use std::collections::HashSet;
use std::ffi::{CStr, c_char, c_int, c_uint, c_ulonglong, c_void};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::polling::spawn_polling;
use crate::shutdown::ShutdownSignal;

/// The library's name as the NVIDIA driver installs it (and as the NVIDIA
/// container runtime mounts it into containers).
const LIBRARY: &str = "libnvidia-ml.so.1";

/// What NVML's functions return; 0 is success.
type NvmlReturn = c_int;

/// `NVML_ERROR_NOT_SUPPORTED`: the GPU cannot report that figure.
const NOT_SUPPORTED: NvmlReturn = 3;

/// Room for a UUID or a name, as NVML's buffer-size constants allow.
const TEXT_BUFFER: usize = 96;

/// `nvmlUtilization_t`: busy percentages over NVML's last sample period.
#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// `nvmlMemory_t`, in bytes.
#[repr(C)]
#[derive(Default)]
struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// An `nvmlDevice_t`: the driver's handle of one GPU, valid until
/// `nvmlShutdown`.
#[derive(Clone, Copy)]
struct DeviceHandle(*mut c_void);

// SAFETY: NVML documents its API as thread-safe; a handle is an opaque
// token that any thread may pass back to the library.
unsafe impl Send for DeviceHandle {}

/// The GPU memory figures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuMemory {
    /// All of the GPU's memory.
    pub total_bytes: u64,
    /// The part in use.
    pub used_bytes: u64,
}

/// One GPU's figures at the last poll; a figure the GPU does not report
/// (power on some boards) is `None` and left out of the page.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    /// The GPU's UUID (`GPU-...`), Triton's `gpu_uuid` label.
    pub uuid: String,
    /// Busy share of NVML's last sample period, 0 to 1.
    pub utilization: Option<f64>,
    /// Memory total and in use.
    pub memory: Option<GpuMemory>,
    /// Power drawn now, in watts.
    pub power_usage_watts: Option<f64>,
    /// The power limit the driver enforces, in watts.
    pub power_limit_watts: Option<f64>,
    /// Energy used since the server started polling, in joules.
    pub energy_joules: Option<f64>,
}

/// Why the server reports no GPU figures.
enum NoGpuMetrics {
    /// Nothing to report: no NVIDIA driver, or no GPU this process may use.
    NothingToReport(String),
    /// The driver's library is there but failed.
    DriverFailed(String),
}

/// The functions of NVML this module calls, resolved once.
struct Nvml {
    // Kept open for as long as the function pointers below are used.
    _library: libloading::Library,
    error_string: unsafe extern "C" fn(NvmlReturn) -> *const c_char,
    device_count: unsafe extern "C" fn(*mut c_uint) -> NvmlReturn,
    device_by_index: unsafe extern "C" fn(c_uint, *mut *mut c_void) -> NvmlReturn,
    uuid: unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> NvmlReturn,
    name: unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> NvmlReturn,
    utilization: unsafe extern "C" fn(*mut c_void, *mut Utilization) -> NvmlReturn,
    memory: unsafe extern "C" fn(*mut c_void, *mut Memory) -> NvmlReturn,
    power_usage: unsafe extern "C" fn(*mut c_void, *mut c_uint) -> NvmlReturn,
    power_limit: unsafe extern "C" fn(*mut c_void, *mut c_uint) -> NvmlReturn,
    total_energy: unsafe extern "C" fn(*mut c_void, *mut c_ulonglong) -> NvmlReturn,
}

/// Copies a function pointer out of `library` (the `library` must outlive
/// its use, which `Nvml` ensures by owning it).
///
/// # Safety
/// `T` must be the C signature the library gives `name`.
unsafe fn function<T: Copy>(library: &libloading::Library, name: &str) -> Result<T, String> {
    // SAFETY: the caller names the symbol's true signature.
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|symbol| *symbol)
        .map_err(|error| format!("{LIBRARY} has no {name} ({error})"))
}

impl Nvml {
    /// Loads and initialises the library, or says why it cannot be used.
    fn open() -> Result<Self, NoGpuMetrics> {
        // SAFETY: loading the NVIDIA driver's own library runs only its
        // initialisers.
        let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(|error| {
            NoGpuMetrics::NothingToReport(format!(
                "the NVIDIA management library {LIBRARY} cannot be loaded ({})",
                crate::error::innermost(&error)
            ))
        })?;
        // SAFETY: every signature is NVML's own since its v2 API (CUDA 4),
        // which `nvmlInit_v2` asks for.
        let (nvml, init) = unsafe { Self::resolve(library) }.map_err(NoGpuMetrics::DriverFailed)?;
        // SAFETY: nvmlInit_v2 takes no arguments and may be called from
        // any thread.
        nvml.check("nvmlInit_v2", unsafe { init() }).map_err(NoGpuMetrics::DriverFailed)?;
        Ok(nvml)
    }

    /// Resolves the functions, and `nvmlInit_v2` to call first.
    ///
    /// # Safety
    /// `library` must be NVML.
    unsafe fn resolve(library: libloading::Library) -> Result<(Self, unsafe extern "C" fn() -> NvmlReturn), String> {
        // SAFETY (every call): the signatures are NVML's.
        unsafe {
            let init = function(&library, "nvmlInit_v2")?;
            let error_string = function(&library, "nvmlErrorString")?;
            let device_count = function(&library, "nvmlDeviceGetCount_v2")?;
            let device_by_index = function(&library, "nvmlDeviceGetHandleByIndex_v2")?;
            let uuid = function(&library, "nvmlDeviceGetUUID")?;
            let name = function(&library, "nvmlDeviceGetName")?;
            let utilization = function(&library, "nvmlDeviceGetUtilizationRates")?;
            let memory = function(&library, "nvmlDeviceGetMemoryInfo")?;
            let power_usage = function(&library, "nvmlDeviceGetPowerUsage")?;
            let power_limit = function(&library, "nvmlDeviceGetEnforcedPowerLimit")?;
            let total_energy = function(&library, "nvmlDeviceGetTotalEnergyConsumption")?;
            let nvml = Self {
                _library: library,
                error_string,
                device_count,
                device_by_index,
                uuid,
                name,
                utilization,
                memory,
                power_usage,
                power_limit,
                total_energy,
            };
            Ok((nvml, init))
        }
    }

    /// `Ok` on success, else the call and NVML's words for its error.
    fn check(&self, call: &str, status: NvmlReturn) -> Result<(), String> {
        if status == 0 {
            return Ok(());
        }
        // SAFETY: nvmlErrorString returns a static NUL-terminated string
        // for any status, known or not.
        let text = unsafe { CStr::from_ptr((self.error_string)(status)) }.to_string_lossy().into_owned();
        Err(format!("{call} failed: {text} (NVML error {status})"))
    }

    /// The GPUs the driver shows, in its (PCI bus) order; one it will not
    /// describe (a GPU this container may not open) is left out with a
    /// warning.
    fn devices(&self) -> Result<Vec<Device>, String> {
        let mut count: c_uint = 0;
        // SAFETY: `count` is a valid out-pointer.
        self.check("nvmlDeviceGetCount_v2", unsafe { (self.device_count)(&mut count) })?;
        let device = |index: c_uint| -> Result<Device, String> {
            let mut handle = std::ptr::null_mut();
            // SAFETY: `index` is below the count and `handle` a valid
            // out-pointer.
            self.check("nvmlDeviceGetHandleByIndex_v2", unsafe { (self.device_by_index)(index, &mut handle) })?;
            let handle = DeviceHandle(handle);
            let uuid = self.text("nvmlDeviceGetUUID", handle, self.uuid)?;
            let name = self.text("nvmlDeviceGetName", handle, self.name).unwrap_or_default();
            Ok(Device { handle, uuid, name, energy_at_start: None })
        };
        let devices = (0..count)
            .filter_map(|index| {
                device(index)
                    .map_err(|reason| tracing::warn!("no GPU metrics for the driver's GPU {index}: {reason}"))
                    .ok()
            })
            .collect();
        Ok(devices)
    }

    fn text(
        &self,
        call: &str,
        device: DeviceHandle,
        function: unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> NvmlReturn,
    ) -> Result<String, String> {
        let mut buffer = [0 as c_char; TEXT_BUFFER];
        // SAFETY: the buffer holds TEXT_BUFFER characters, as its length
        // says; NVML NUL-terminates what it writes.
        self.check(call, unsafe { function(device.0, buffer.as_mut_ptr(), TEXT_BUFFER as c_uint) })?;
        // SAFETY: NUL-terminated within the buffer on success.
        Ok(unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy().into_owned())
    }

    /// Calls a one-figure query; `Err` carries NVML's status and text.
    fn figure<T: Default>(
        &self,
        call: &str,
        device: DeviceHandle,
        function: unsafe extern "C" fn(*mut c_void, *mut T) -> NvmlReturn,
    ) -> Result<T, (NvmlReturn, String)> {
        let mut value = T::default();
        // SAFETY: `value` is a valid out-pointer of the type NVML fills.
        let status = unsafe { function(device.0, &mut value) };
        self.check(call, status).map(|()| value).map_err(|reason| (status, reason))
    }
}

// SAFETY: NVML is thread-safe, and the function pointers stay valid while
// the library they came from is open, which `Nvml` owns.
unsafe impl Send for Nvml {}
unsafe impl Sync for Nvml {}

/// One GPU being polled.
struct Device {
    handle: DeviceHandle,
    uuid: String,
    name: String,
    /// The driver's energy counter (millijoules since the driver loaded)
    /// at the first poll, which the reported energy counts from.
    energy_at_start: Option<u64>,
}

/// Which of the driver's GPUs `CUDA_VISIBLE_DEVICES` lets this process
/// use, as indices into `uuids` (the driver's order), in the order the
/// setting lists them. Unset, all of them. Entries are device indices or
/// (prefixes of) UUIDs; as in CUDA, the list ends at the first entry that
/// names no GPU, and an empty setting hides every GPU. Indices follow the
/// driver's PCI order, which is CUDA's own on machines of one GPU model
/// or with `CUDA_DEVICE_ORDER=PCI_BUS_ID`.
fn visible_devices(setting: Option<&str>, uuids: &[String]) -> Vec<usize> {
    let Some(setting) = setting else {
        return (0..uuids.len()).collect();
    };
    let mut visible = Vec::new();
    for entry in setting.split(',').map(str::trim) {
        let found = match entry.parse::<usize>() {
            Ok(index) => (index < uuids.len()).then_some(index),
            Err(_) if entry.starts_with("GPU-") => {
                let mut matching = uuids.iter().enumerate().filter(|(_, uuid)| uuid.starts_with(entry));
                match (matching.next(), matching.next()) {
                    (Some((index, _)), None) => Some(index),
                    _ => None,
                }
            }
            Err(_) => None,
        };
        match found {
            Some(index) if !visible.contains(&index) => visible.push(index),
            _ => break,
        }
    }
    visible
}

/// Polls the visible GPUs, from a blocking thread at each interval.
struct Poller {
    nvml: Nvml,
    devices: Vec<Device>,
    /// (device, figure) pairs whose failure was already logged, so a
    /// figure a GPU cannot give warns once, not every interval.
    warned: HashSet<(usize, &'static str)>,
}

impl Poller {
    fn poll(&mut self) -> Vec<GpuReading> {
        (0..self.devices.len()).map(|index| self.read(index)).collect()
    }

    fn read(&mut self, index: usize) -> GpuReading {
        let handle = self.devices[index].handle;
        let nvml = &self.nvml;
        let utilization = nvml.figure("nvmlDeviceGetUtilizationRates", handle, nvml.utilization);
        let memory = nvml.figure("nvmlDeviceGetMemoryInfo", handle, nvml.memory);
        let power_usage = nvml.figure("nvmlDeviceGetPowerUsage", handle, nvml.power_usage);
        let power_limit = nvml.figure("nvmlDeviceGetEnforcedPowerLimit", handle, nvml.power_limit);
        let energy = nvml.figure("nvmlDeviceGetTotalEnergyConsumption", handle, nvml.total_energy);
        let watts = |milliwatts: c_uint| f64::from(milliwatts) / 1000.0;
        let utilization = self.or_warn(index, "utilization", utilization).map(|rates| f64::from(rates.gpu) / 100.0);
        let memory = self
            .or_warn(index, "memory", memory)
            .map(|memory| GpuMemory { total_bytes: memory.total, used_bytes: memory.used });
        let power_usage_watts = self.or_warn(index, "power usage", power_usage).map(watts);
        let power_limit_watts = self.or_warn(index, "power limit", power_limit).map(watts);
        let energy = self.or_warn(index, "energy consumption", energy);
        let device = &mut self.devices[index];
        let energy_joules = energy.map(|millijoules| {
            let start = *device.energy_at_start.get_or_insert(millijoules);
            millijoules.saturating_sub(start) as f64 / 1000.0
        });
        GpuReading {
            uuid: device.uuid.clone(),
            utilization,
            memory,
            power_usage_watts,
            power_limit_watts,
            energy_joules,
        }
    }

    /// The figure, or `None` after logging its failure the first time.
    fn or_warn<T>(&mut self, index: usize, figure: &'static str, result: Result<T, (NvmlReturn, String)>) -> Option<T> {
        let (status, reason) = match result {
            Ok(value) => return Some(value),
            Err(failure) => failure,
        };
        if self.warned.insert((index, figure)) {
            let uuid = &self.devices[index].uuid;
            if status == NOT_SUPPORTED {
                tracing::info!("GPU {uuid} does not report its {figure}; the GPU metrics leave it out");
            } else {
                tracing::warn!("unable to read the {figure} of GPU {uuid}: {reason}");
            }
        }
        None
    }
}

/// The GPU figures of the last poll, refreshed in the background every
/// `--metrics-interval-ms`, so a scrape never waits on the driver.
#[derive(Debug, Default)]
pub struct GpuMetrics {
    latest: Mutex<Vec<GpuReading>>,
}

impl GpuMetrics {
    /// Starts polling the GPUs `cuda_visible_devices` (the process's
    /// `CUDA_VISIBLE_DEVICES`) lets the server use, every `interval` until
    /// `shutdown` fires; `None`, with the reason logged, where there is no
    /// NVIDIA driver or no such GPU.
    pub async fn start(
        interval: Duration,
        cuda_visible_devices: Option<String>,
        shutdown: ShutdownSignal,
    ) -> Option<Arc<Self>> {
        let opened = tokio::task::spawn_blocking(move || open_poller(cuda_visible_devices.as_deref())).await.ok()?;
        let poller = match opened {
            Ok(poller) => Arc::new(Mutex::new(poller)),
            Err(NoGpuMetrics::NothingToReport(reason)) => {
                tracing::info!("no GPU metrics: {reason}");
                return None;
            }
            Err(NoGpuMetrics::DriverFailed(reason)) => {
                tracing::warn!("GPU metrics are off: {reason}");
                return None;
            }
        };
        let polled = Arc::new(Self::default());
        let updated = Arc::clone(&polled);
        spawn_polling(Duration::ZERO, interval, shutdown, move || {
            let (poller, updated) = (Arc::clone(&poller), Arc::clone(&updated));
            async move {
                // Driver calls can take milliseconds: off the async threads.
                let polled =
                    tokio::task::spawn_blocking(move || poller.lock().unwrap_or_else(PoisonError::into_inner).poll());
                if let Ok(readings) = polled.await {
                    *updated.latest.lock().unwrap_or_else(PoisonError::into_inner) = readings;
                }
            }
        });
        Some(polled)
    }

    /// The readings of the last poll, one per visible GPU (none before the
    /// first poll ends).
    pub fn latest(&self) -> Vec<GpuReading> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Opens NVML and picks the visible GPUs.
fn open_poller(cuda_visible_devices: Option<&str>) -> Result<Poller, NoGpuMetrics> {
    let nvml = Nvml::open()?;
    let devices = nvml.devices().map_err(NoGpuMetrics::DriverFailed)?;
    let uuids: Vec<String> = devices.iter().map(|device| device.uuid.clone()).collect();
    let visible = visible_devices(cuda_visible_devices, &uuids);
    if visible.is_empty() {
        let reason = match cuda_visible_devices {
            Some(setting) => {
                format!("CUDA_VISIBLE_DEVICES='{setting}' leaves none of the {} GPU(s) visible", uuids.len())
            }
            None => "the NVIDIA driver shows no GPU".to_string(),
        };
        return Err(NoGpuMetrics::NothingToReport(reason));
    }
    let mut slots: Vec<Option<Device>> = devices.into_iter().map(Some).collect();
    let devices: Vec<Device> = visible.iter().filter_map(|&index| slots[index].take()).collect();
    for (cuda_index, device) in devices.iter().enumerate() {
        tracing::info!("Collecting metrics for GPU {cuda_index}: {} ({})", device.name, device.uuid);
    }
    Ok(Poller { nvml, devices, warned: HashSet::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids() -> Vec<String> {
        ["GPU-aaaa1111-0000", "GPU-aaaa2222-0000", "GPU-bbbb3333-0000"].map(str::to_string).to_vec()
    }

    #[test]
    fn every_gpu_is_visible_without_the_setting() {
        assert_eq!(visible_devices(None, &uuids()), vec![0, 1, 2]);
        assert_eq!(visible_devices(None, &[]), Vec::<usize>::new());
    }

    #[test]
    fn the_setting_picks_gpus_by_index_or_uuid_prefix_in_its_order() {
        assert_eq!(visible_devices(Some("2,0"), &uuids()), vec![2, 0]);
        assert_eq!(visible_devices(Some("GPU-bbbb, 1"), &uuids()), vec![2, 1]);
        assert_eq!(visible_devices(Some("GPU-aaaa2222-0000"), &uuids()), vec![1]);
    }

    #[test]
    fn the_list_ends_at_the_first_entry_that_names_no_gpu() {
        // Out of range, ambiguous, not a GPU, repeated: CUDA ignores the
        // entry and every entry after it.
        assert_eq!(visible_devices(Some("1,7,0"), &uuids()), vec![1]);
        assert_eq!(visible_devices(Some("0,GPU-aaaa,2"), &uuids()), vec![0]);
        assert_eq!(visible_devices(Some("MIG-1234,0"), &uuids()), Vec::<usize>::new());
        assert_eq!(visible_devices(Some("1,1,2"), &uuids()), vec![1]);
        assert_eq!(visible_devices(Some(""), &uuids()), Vec::<usize>::new());
        assert_eq!(visible_devices(Some("-1"), &uuids()), Vec::<usize>::new());
    }
}
