//! Triton's system shared-memory extension: a client on the same machine
//! registers a region of a POSIX shared-memory object (`/dev/shm/<key>`),
//! then names it in a request's input parameters, whose data the server
//! then reads from there, and in its output parameters, which the server
//! writes there, so the tensors skip the network and the protocol's
//! encoding. As in Triton 2.69 and later, clients may only do this when the
//! server is started with `--allow-client-shm=true`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, ErrorKind, Result};
use crate::inference::{ParameterValue, Parameters};

/// Where POSIX shared-memory objects live on Linux: `shm_open(key)` opens
/// this directory's file of that name.
const SHM_DIRECTORY: &str = "/dev/shm";

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

/// A registered region, as the status call reports it.
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

/// A registered region, mapped into this process.
struct Region {
    status: RegionStatus,
    /// Kept open to see the object's current size before each access: a
    /// mapping that outlives its object's end faults instead of failing.
    file: File,
    map: MmapRaw,
}

impl Region {
    /// The bytes `place` names, bounds-checked against the region and
    /// against the object as it is now.
    fn range(&self, place: &SharedMemoryRef, what: &str) -> Result<std::ops::Range<usize>> {
        let region = &self.status.name;
        let end = place.offset.checked_add(place.byte_size).filter(|&end| end <= self.map.len()).ok_or_else(|| {
            Error::invalid_argument(format!(
                "{what}: {} bytes at offset {} do not fit shared memory region '{region}' of {} bytes",
                place.byte_size,
                place.offset,
                self.map.len()
            ))
        })?;
        let object_size = self.file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        if self.status.offset + (end as u64) > object_size {
            return Err(Error::invalid_argument(format!(
                "{what}: the shared-memory object '{}' of region '{region}' has shrunk to {object_size} bytes",
                self.status.key
            )));
        }
        Ok(place.offset..end)
    }
}

/// A slice of a region handed to a request as its input's data, without a
/// copy; the region stays mapped while any slice lives, even if it is
/// unregistered meanwhile.
struct RegionSlice {
    region: Arc<Region>,
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for RegionSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `range` was checked to lie inside the mapping, which lives
        // as long as `self.region`. The client may write the memory while the
        // server reads it, as with Triton's shared memory: the protocol
        // leaves the region to the server from the request until its answer.
        unsafe { std::slice::from_raw_parts(self.region.map.as_ptr().add(self.range.start), self.range.len()) }
    }
}

/// The registered system shared-memory regions, by name.
pub struct SharedMemoryRegistry {
    allowed: bool,
    regions: Mutex<BTreeMap<String, Arc<Region>>>,
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

    fn regions(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Arc<Region>>>> {
        if !self.allowed {
            return Err(Error::unavailable(CLIENT_SHM_DISABLED));
        }
        // Regions are inserted and removed whole, so a poisoned lock is fine.
        Ok(self.regions.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Maps `byte_size` bytes at `offset` of the shared-memory object `key`
    /// as region `name`.
    pub fn register(&self, name: &str, key: &str, offset: u64, byte_size: u64) -> Result<()> {
        let mut regions = self.regions()?;
        let failed = |message: String| {
            Error::invalid_argument(format!("failed to register shared memory region '{name}': {message}"))
        };
        if name.is_empty() {
            return Err(Error::invalid_argument("a shared memory region needs a name"));
        }
        if regions.contains_key(name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("shared memory region '{name}' already in manager"),
            ));
        }
        let path = object_path(key).map_err(failed)?;
        let byte_size = usize::try_from(byte_size)
            .ok()
            .filter(|&size| size > 0)
            .ok_or_else(|| failed(format!("byte_size {byte_size} must be at least 1")))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|error| failed(format!("cannot open shared-memory object '{key}': {error}")))?;
        let object_size = file
            .metadata()
            .map_err(|error| failed(format!("cannot read the size of shared-memory object '{key}': {error}")))?
            .len();
        if offset.checked_add(byte_size as u64).is_none_or(|end| end > object_size) {
            return Err(failed(format!(
                "{byte_size} bytes at offset {offset} do not fit shared-memory object '{key}' of {object_size} bytes"
            )));
        }
        let map = MmapOptions::new()
            .offset(offset)
            .len(byte_size)
            .map_raw(&file)
            .map_err(|error| failed(format!("cannot map shared-memory object '{key}': {error}")))?;
        let status = RegionStatus { name: name.to_string(), key: key.to_string(), offset, byte_size: byte_size as u64 };
        regions.insert(name.to_string(), Arc::new(Region { status, file, map }));
        Ok(())
    }

    /// Forgets region `name`, or every region when `None`. Requests that
    /// already read from a region keep their data; an unknown name is not
    /// an error, as in Triton.
    pub fn unregister(&self, name: Option<&str>) -> Result<()> {
        let mut regions = self.regions()?;
        match name {
            Some(name) => {
                regions.remove(name);
            }
            None => regions.clear(),
        }
        Ok(())
    }

    /// The status of region `name`, or of every region when `None`.
    pub fn status(&self, name: Option<&str>) -> Result<Vec<RegionStatus>> {
        let regions = self.regions()?;
        match name {
            None => Ok(regions.values().map(|region| region.status.clone()).collect()),
            Some(name) => regions
                .get(name)
                .map(|region| vec![region.status.clone()])
                .ok_or_else(|| Error::not_found(format!("Unable to find system shared memory region: '{name}'"))),
        }
    }

    fn region(&self, place: &SharedMemoryRef, what: &str) -> Result<Arc<Region>> {
        self.regions()?.get(&place.region).cloned().ok_or_else(|| {
            Error::invalid_argument(format!("{what}: no shared memory region '{}' is registered", place.region))
        })
    }

    /// Checks that `place` lies in a registered region, before a request
    /// that wants an output written there runs.
    pub fn check(&self, place: &SharedMemoryRef, what: &str) -> Result<()> {
        self.region(place, what)?.range(place, what).map(|_| ())
    }

    /// The data of an input that lies in shared memory, without a copy.
    /// `what` names the tensor for errors ("model 'm': input 'x'").
    pub fn read(&self, place: &SharedMemoryRef, what: &str) -> Result<Bytes> {
        let region = self.region(place, what)?;
        let range = region.range(place, what)?;
        Ok(Bytes::from_owner(RegionSlice { region, range }))
    }

    /// Writes an output into the shared memory the request named for it.
    pub fn write(&self, place: &SharedMemoryRef, what: &str, data: &[u8]) -> Result<()> {
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
        // SAFETY: `range` lies inside the live mapping and holds at least
        // `data.len()` bytes; `data` is the server's own buffer, never the
        // mapping itself, so the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), region.map.as_mut_ptr().add(range.start), data.len());
        }
        Ok(())
    }
}

/// The file of shared-memory object `key` (`/name` or `name`, as
/// `shm_open` takes it). Keys that would reach outside the shared-memory
/// directory are refused.
fn object_path(key: &str) -> std::result::Result<PathBuf, String> {
    let name = key.strip_prefix('/').unwrap_or(key);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("'{key}' is not a shared-memory key: expected '/name' without further slashes"));
    }
    Ok(PathBuf::from(SHM_DIRECTORY).join(name))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn regions_are_registered_read_written_and_unregistered() {
        let object = Object::new(64);
        let registry = SharedMemoryRegistry::new(true);
        registry.register("r", &object.0, 16, 32).unwrap();
        let status = registry.status(Some("r")).unwrap();
        assert_eq!((status[0].offset, status[0].byte_size, status[0].key.as_str()), (16, 32, object.0.as_str()));
        let again = registry.register("r", &object.0, 0, 8).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists);

        registry.write(&place("r", 4, 8), "output 'y'", &[1, 2, 3, 4]).unwrap();
        let file = std::fs::read(object_path(&object.0).unwrap()).unwrap();
        assert_eq!(file[20..24], [1, 2, 3, 4], "region offset 16 + request offset 4");
        let data = registry.read(&place("r", 4, 4), "input 'x'").unwrap();
        assert_eq!(data[..], [1, 2, 3, 4]);

        let too_far = registry.read(&place("r", 30, 4), "input 'x'").unwrap_err();
        assert!(
            too_far.message().contains("4 bytes at offset 30 do not fit shared memory region 'r' of 32"),
            "{too_far}"
        );
        let too_big = registry.write(&place("r", 0, 2), "output 'y'", &[0; 4]).unwrap_err();
        assert!(too_big.message().contains("(2 bytes) should be at least 4 bytes"), "{too_big}");
        let outside = registry.register("s", &object.0, 60, 8).unwrap_err();
        assert!(outside.message().contains("do not fit shared-memory object"), "{outside}");
        assert!(
            registry.register("t", "/../etc/passwd", 0, 8).unwrap_err().message().contains("not a shared-memory key")
        );
        assert!(
            registry.register("u", "/tritonrs-no-such-object", 0, 8).unwrap_err().message().contains("cannot open")
        );

        registry.unregister(Some("r")).unwrap();
        // Data already read keeps its mapping.
        assert_eq!(data[..], [1, 2, 3, 4]);
        assert!(
            registry
                .read(&place("r", 0, 4), "input 'x'")
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
        assert_eq!(registry.unregister(None).unwrap_err().kind(), ErrorKind::Unavailable);
    }
}
