//! Triton's shared-memory extensions. A client on the same machine
//! registers a region, either of a POSIX shared-memory object (system
//! shared memory, `/dev/shm/<key>`) or of its GPU memory (CUDA shared
//! memory, through a CUDA IPC handle), then names it in a request's input
//! parameters, whose data the server then reads from there, and in its
//! output parameters, which the server writes there, so the tensors skip
//! the network and the protocol's encoding. Both kinds share one set of
//! names, as in Triton. As in Triton 2.69 and later, clients may only do
//! this when the server is started with `--allow-client-shm=true`.

mod cuda;
mod system;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use self::cuda::CudaRegion;
use self::system::SystemRegion;
use crate::error::{Error, ErrorKind, Result};
use crate::inference::{ParameterValue, Parameters};

/// The answer to every shared-memory call when clients may not use it.
pub const CLIENT_SHM_DISABLED: &str =
    "client shared memory is disabled on this server; start it with --allow-client-shm=true to use it";

/// Where a tensor's data lies: `byte_size` bytes at `offset` in a region,
/// from the tensor's `shared_memory_region`, `shared_memory_offset` and
/// `shared_memory_byte_size` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedMemoryRef {
    /// The region's registered name.
    pub region: String,
    /// Bytes from the start of the region.
    pub offset: usize,
    /// Bytes of data.
    pub byte_size: usize,
}

impl SharedMemoryRef {
    /// Reads the shared-memory parameters of tensor `name` (`what` is
    /// "input" or "output") of a request to `model`: `None` when it names no
    /// region. The region and the size go together, as Triton requires; the
    /// offset is optional.
    pub fn from_parameters(model: &str, what: &str, name: &str, parameters: &Parameters) -> Result<Option<Self>> {
        let invalid = |message: String| Error::invalid_argument(format!("model '{model}': {what} '{name}': {message}"));
        let count = |key: &str| match parameters.get(key) {
            None => Ok(None),
            Some(ParameterValue::Int64(value)) if *value >= 0 => Ok(usize::try_from(*value).ok()),
            Some(ParameterValue::Uint64(value)) => Ok(usize::try_from(*value).ok()),
            Some(other) => Err(invalid(format!("the '{key}' parameter must be a byte count, not {other}"))),
        };
        let byte_size = count("shared_memory_byte_size")?;
        let offset = count("shared_memory_offset")?;
        let region = match parameters.get("shared_memory_region") {
            None => None,
            Some(ParameterValue::String(region)) => Some(region.clone()),
            Some(other) => {
                return Err(invalid(format!("the 'shared_memory_region' parameter must be a string, not {other}")));
            }
        };
        match (region, byte_size) {
            (None, None) if offset.is_none() => Ok(None),
            (Some(region), Some(byte_size)) => Ok(Some(Self { region, offset: offset.unwrap_or(0), byte_size })),
            (Some(_), None) => Err(invalid(
                "'shared_memory_region' needs 'shared_memory_byte_size' too: how many bytes of the region".to_string(),
            )),
            (None, _) => Err(invalid(
                "'shared_memory_byte_size' and 'shared_memory_offset' need 'shared_memory_region': which region"
                    .to_string(),
            )),
        }
    }
}

/// Runs a copy to or from the GPU on a blocking thread; `Err` says why it
/// failed, or that the thread did.
async fn on_blocking_thread<T: Send + 'static>(
    copy: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> std::result::Result<T, String> {
    tokio::task::spawn_blocking(copy).await.unwrap_or_else(|error| Err(error.to_string()))
}

/// Which of the two extensions a call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// System shared memory (`/v2/systemsharedmemory`, SystemSharedMemory*).
    System,
    /// CUDA shared memory (`/v2/cudasharedmemory`, CudaSharedMemory*).
    Cuda,
}

impl MemoryKind {
    fn name(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Cuda => "CUDA",
        }
    }
}

/// A registered system region, as the status call reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionStatus {
    /// The name requests use.
    pub name: String,
    /// The key of the shared-memory object.
    pub key: String,
    /// Where the region starts in the object.
    pub offset: u64,
    /// The region's size.
    pub byte_size: u64,
}

/// A registered CUDA region, as the status call reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaRegionStatus {
    /// The name requests use.
    pub name: String,
    /// The CUDA device its memory is on.
    pub device_id: u64,
    /// The region's size.
    pub byte_size: u64,
}

/// A registered region of either kind; requests that use it hold it, so
/// that unregistering it lets go of the memory only after them.
#[derive(Clone)]
enum Region {
    System(Arc<SystemRegion>),
    Cuda(Arc<CudaRegion>),
}

impl Region {
    fn kind(&self) -> MemoryKind {
        match self {
            Self::System(_) => MemoryKind::System,
            Self::Cuda(_) => MemoryKind::Cuda,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::System(region) => region.len(),
            Self::Cuda(region) => region.byte_size,
        }
    }

    /// The bytes `place` names, bounds-checked against the region (and a
    /// system region's object as it is now).
    fn range(&self, place: &SharedMemoryRef, what: &str) -> Result<Range<usize>> {
        let region = &place.region;
        let end = place.offset.checked_add(place.byte_size).filter(|&end| end <= self.len()).ok_or_else(|| {
            Error::invalid_argument(format!(
                "{what}: {} bytes at offset {} do not fit shared memory region '{region}' of {} bytes",
                place.byte_size,
                place.offset,
                self.len()
            ))
        })?;
        let range = place.offset..end;
        if let Self::System(system) = self {
            system
                .check_object(&range)
                .map_err(|reason| Error::invalid_argument(format!("{what}: region '{region}': {reason}")))?;
        }
        Ok(range)
    }
}

/// The registered shared-memory regions, by name.
pub struct SharedMemoryRegistry {
    allowed: bool,
    regions: Mutex<BTreeMap<String, Region>>,
}

impl SharedMemoryRegistry {
    /// A registry with no regions; `allowed` is `--allow-client-shm`.
    pub fn new(allowed: bool) -> Self {
        Self { allowed, regions: Mutex::new(BTreeMap::new()) }
    }

    /// Whether clients may use shared memory at all.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    fn regions(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Region>>> {
        if !self.allowed {
            return Err(Error::unavailable(CLIENT_SHM_DISABLED));
        }
        // Regions are inserted and removed whole, so a poisoned lock is fine.
        Ok(self.regions.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Registers region `name` with what `open` maps, unless the name is
    /// taken (by a region of either kind).
    fn add(
        &self,
        kind: MemoryKind,
        name: &str,
        open: impl FnOnce() -> std::result::Result<Region, String>,
    ) -> Result<()> {
        let mut regions = self.regions()?;
        if name.is_empty() {
            return Err(Error::invalid_argument("a shared memory region needs a name"));
        }
        if regions.contains_key(name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("shared memory region '{name}' already in manager"),
            ));
        }
        let region = open().map_err(|message| {
            let kind = match kind {
                MemoryKind::System => "",
                MemoryKind::Cuda => "CUDA ",
            };
            Error::invalid_argument(format!("failed to register {kind}shared memory region '{name}': {message}"))
        })?;
        regions.insert(name.to_string(), region);
        Ok(())
    }

    /// Maps `byte_size` bytes at `offset` of the shared-memory object `key`
    /// as system region `name`.
    pub fn register(&self, name: &str, key: &str, offset: u64, byte_size: u64) -> Result<()> {
        self.add(MemoryKind::System, name, || {
            SystemRegion::open(key, offset, byte_size).map(|region| Region::System(Arc::new(region)))
        })
    }

    /// Opens `byte_size` bytes of GPU memory on CUDA device `device_id`
    /// behind the CUDA IPC handle `raw_handle` as CUDA region `name`.
    pub fn register_cuda(&self, name: &str, raw_handle: &[u8], device_id: i64, byte_size: u64) -> Result<()> {
        self.add(MemoryKind::Cuda, name, || {
            CudaRegion::open(raw_handle, device_id, byte_size).map(|region| Region::Cuda(Arc::new(region)))
        })
    }

    /// Forgets region `name` of `kind`, or every region of that kind when
    /// `None`. Requests that already use a region keep it until they end;
    /// an unknown name, or one of the other kind, is not an error, as in
    /// Triton.
    pub fn unregister(&self, kind: MemoryKind, name: Option<&str>) -> Result<()> {
        let mut regions = self.regions()?;
        match name {
            Some(name) => {
                if regions.get(name).is_some_and(|region| region.kind() == kind) {
                    regions.remove(name);
                }
            }
            None => regions.retain(|_, region| region.kind() != kind),
        }
        Ok(())
    }

    /// The regions of `kind`: `name`, or every one when `None`.
    fn of_kind(&self, kind: MemoryKind, name: Option<&str>) -> Result<Vec<(String, Region)>> {
        let regions = self.regions()?;
        let Some(name) = name else {
            let listed = regions.iter().filter(|(_, region)| region.kind() == kind);
            return Ok(listed.map(|(name, region)| (name.clone(), region.clone())).collect());
        };
        match regions.get(name) {
            None => Err(Error::not_found(format!(
                "Unable to find {} shared memory region: '{name}'",
                kind.name().to_lowercase()
            ))),
            Some(region) if region.kind() != kind => Err(Error::not_found(format!(
                "The region named '{name}' is registered as {} shared memory, not {} shared memory",
                region.kind().name(),
                kind.name()
            ))),
            Some(region) => Ok(vec![(name.to_string(), region.clone())]),
        }
    }

    /// The status of system region `name`, or of every one when `None`.
    pub fn status(&self, name: Option<&str>) -> Result<Vec<RegionStatus>> {
        let regions = self.of_kind(MemoryKind::System, name)?;
        Ok(regions
            .into_iter()
            .filter_map(|(name, region)| match region {
                Region::System(system) => Some(RegionStatus {
                    name,
                    key: system.key.clone(),
                    offset: system.offset,
                    byte_size: system.len() as u64,
                }),
                Region::Cuda(_) => None,
            })
            .collect())
    }

    /// The status of CUDA region `name`, or of every one when `None`.
    pub fn cuda_status(&self, name: Option<&str>) -> Result<Vec<CudaRegionStatus>> {
        let regions = self.of_kind(MemoryKind::Cuda, name)?;
        Ok(regions
            .into_iter()
            .filter_map(|(name, region)| match region {
                Region::Cuda(cuda) => {
                    Some(CudaRegionStatus { name, device_id: cuda.device as u64, byte_size: cuda.byte_size as u64 })
                }
                Region::System(_) => None,
            })
            .collect())
    }

    fn region(&self, place: &SharedMemoryRef, what: &str) -> Result<Region> {
        self.regions()?.get(&place.region).cloned().ok_or_else(|| {
            Error::invalid_argument(format!("{what}: no shared memory region '{}' is registered", place.region))
        })
    }

    /// Checks that `place` lies in a registered region, before a request
    /// that wants an output written there runs.
    pub fn check(&self, place: &SharedMemoryRef, what: &str) -> Result<()> {
        self.region(place, what)?.range(place, what).map(|_| ())
    }

    /// The data of an input that lies in shared memory: without a copy
    /// from system shared memory; from CUDA shared memory, copied from the
    /// GPU on a blocking thread, so that a large tensor's copy holds up no
    /// other request. `what` names the tensor for errors ("model 'm': input
    /// 'x'").
    pub async fn read(&self, place: &SharedMemoryRef, what: &str) -> Result<Bytes> {
        let region = self.region(place, what)?;
        let range = region.range(place, what)?;
        match region {
            Region::System(system) => Ok(system.read(range)),
            Region::Cuda(cuda) => {
                on_blocking_thread(move || cuda.read(range)).await.map(Bytes::from).map_err(|reason| {
                    Error::internal(format!("{what}: reading CUDA shared memory region '{}': {reason}", place.region))
                })
            }
        }
    }

    /// Writes an output into the shared memory the request named for it
    /// (into CUDA shared memory on a blocking thread, as [`Self::read`]).
    pub async fn write(&self, place: &SharedMemoryRef, what: &str, data: Bytes) -> Result<()> {
        if data.len() > place.byte_size {
            return Err(Error::invalid_argument(format!(
                "{what}: shared memory size specified with the request ({} bytes) should be at least {} bytes to \
                 hold the results",
                place.byte_size,
                data.len()
            )));
        }
        let region = self.region(place, what)?;
        let range = region.range(place, what)?;
        match region {
            Region::System(system) => {
                system.write(range, &data);
                Ok(())
            }
            Region::Cuda(cuda) => on_blocking_thread(move || cuda.write(range, &data)).await.map_err(|reason| {
                Error::internal(format!("{what}: writing CUDA shared memory region '{}': {reason}", place.region))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::system::object_path;
    use super::*;

    /// A shared-memory object of `size` bytes, removed when dropped.
    struct Object(String);

    impl Object {
        fn new(size: usize) -> Self {
            let key = format!("/tritonrs-test-{}-{size}", std::process::id());
            std::fs::write(object_path(&key).unwrap(), vec![0u8; size]).unwrap();
            Self(key)
        }
    }

    impl Drop for Object {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(object_path(&self.0).unwrap());
        }
    }

    fn place(region: &str, offset: usize, byte_size: usize) -> SharedMemoryRef {
        SharedMemoryRef { region: region.to_string(), offset, byte_size }
    }

    #[test]
    fn parameters_name_a_region_with_a_size() {
        let parameters = |entries: &[(&str, ParameterValue)]| -> Parameters {
            entries.iter().map(|(key, value)| (key.to_string(), value.clone())).collect()
        };
        let read = |entries: &[(&str, ParameterValue)]| {
            SharedMemoryRef::from_parameters("m", "input", "x", &parameters(entries))
        };
        assert_eq!(read(&[]).unwrap(), None);
        let region = ("shared_memory_region", ParameterValue::String("r".into()));
        let size = ("shared_memory_byte_size", ParameterValue::Int64(64));
        assert_eq!(read(&[region.clone(), size.clone()]).unwrap(), Some(place("r", 0, 64)));
        let offset = ("shared_memory_offset", ParameterValue::Uint64(16));
        assert_eq!(read(&[region.clone(), size.clone(), offset.clone()]).unwrap(), Some(place("r", 16, 64)));
        let error = read(std::slice::from_ref(&region)).unwrap_err();
        assert!(error.message().contains("model 'm': input 'x': 'shared_memory_region' needs"), "{error}");
        assert!(read(std::slice::from_ref(&size)).unwrap_err().message().contains("need 'shared_memory_region'"));
        let negative = ("shared_memory_byte_size", ParameterValue::Int64(-1));
        assert!(read(&[region, negative]).unwrap_err().message().contains("must be a byte count, not -1"));
    }

    #[tokio::test]
    async fn regions_are_registered_read_written_and_unregistered() {
        let object = Object::new(64);
        let registry = SharedMemoryRegistry::new(true);
        registry.register("r", &object.0, 16, 32).unwrap();
        let status = registry.status(Some("r")).unwrap();
        assert_eq!((status[0].offset, status[0].byte_size, status[0].key.as_str()), (16, 32, object.0.as_str()));
        let again = registry.register("r", &object.0, 0, 8).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists);

        registry.write(&place("r", 4, 8), "output 'y'", Bytes::from_static(&[1, 2, 3, 4])).await.unwrap();
        let file = std::fs::read(object_path(&object.0).unwrap()).unwrap();
        assert_eq!(file[20..24], [1, 2, 3, 4], "region offset 16 + request offset 4");
        let data = registry.read(&place("r", 4, 4), "input 'x'").await.unwrap();
        assert_eq!(data[..], [1, 2, 3, 4]);

        let too_far = registry.read(&place("r", 30, 4), "input 'x'").await.unwrap_err();
        assert!(
            too_far.message().contains("4 bytes at offset 30 do not fit shared memory region 'r' of 32"),
            "{too_far}"
        );
        let too_big = registry.write(&place("r", 0, 2), "output 'y'", Bytes::from_static(&[0; 4])).await.unwrap_err();
        assert!(too_big.message().contains("(2 bytes) should be at least 4 bytes"), "{too_big}");
        let outside = registry.register("s", &object.0, 60, 8).unwrap_err();
        assert!(outside.message().contains("do not fit shared-memory object"), "{outside}");
        assert!(
            registry.register("t", "/../etc/passwd", 0, 8).unwrap_err().message().contains("not a shared-memory key")
        );
        assert!(
            registry.register("u", "/tritonrs-no-such-object", 0, 8).unwrap_err().message().contains("cannot open")
        );

        registry.unregister(MemoryKind::System, Some("r")).unwrap();
        // Data already read keeps its mapping.
        assert_eq!(data[..], [1, 2, 3, 4]);
        assert!(
            registry
                .read(&place("r", 0, 4), "input 'x'")
                .await
                .unwrap_err()
                .message()
                .contains("no shared memory region 'r'")
        );
        assert_eq!(registry.status(Some("r")).unwrap_err().kind(), ErrorKind::NotFound);
        assert!(registry.status(None).unwrap().is_empty());
    }

    #[test]
    fn a_disabled_registry_refuses_every_call() {
        let registry = SharedMemoryRegistry::new(false);
        let error = registry.status(None).unwrap_err();
        assert_eq!((error.kind(), error.message()), (ErrorKind::Unavailable, CLIENT_SHM_DISABLED));
        assert_eq!(registry.register("r", "/k", 0, 8).unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(registry.unregister(MemoryKind::Cuda, None).unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(registry.cuda_status(None).unwrap_err().kind(), ErrorKind::Unavailable);
    }
}
