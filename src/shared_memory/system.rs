//! System shared-memory regions: a range of a POSIX shared-memory object
//! (`/dev/shm/<key>`) mapped into the server, which inputs are read from
//! without a copy and outputs written into.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// Where POSIX shared-memory objects live on Linux: `shm_open(key)` opens
/// this directory's file of that name.
const SHM_DIRECTORY: &str = "/dev/shm";

/// A registered system region, mapped into this process.
pub(super) struct SystemRegion {
    /// The key of the shared-memory object.
    pub(super) key: String,
    /// Where the region starts in the object.
    pub(super) offset: u64,
    /// Kept open to see the object's current size before each access: a
    /// mapping that outlives its object's end faults instead of failing.
    file: File,
    map: MmapRaw,
}

impl SystemRegion {
    /// Maps `byte_size` bytes at `offset` of the object `key`, or says why
    /// it cannot.
    pub(super) fn open(key: &str, offset: u64, byte_size: u64) -> Result<Self, String> {
        let path = object_path(key)?;
        let byte_size = usize::try_from(byte_size)
            .ok()
            .filter(|&size| size > 0)
            .ok_or(format!("byte_size {byte_size} must be at least 1"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|error| format!("cannot open shared-memory object '{key}': {error}"))?;
        let object_size = file
            .metadata()
            .map_err(|error| format!("cannot read the size of shared-memory object '{key}': {error}"))?
            .len();
        if offset.checked_add(byte_size as u64).is_none_or(|end| end > object_size) {
            return Err(format!(
                "{byte_size} bytes at offset {offset} do not fit shared-memory object '{key}' of {object_size} bytes"
            ));
        }
        let map = MmapOptions::new()
            .offset(offset)
            .len(byte_size)
            .map_raw(&file)
            .map_err(|error| format!("cannot map shared-memory object '{key}': {error}"))?;
        Ok(Self { key: key.to_string(), offset, file, map })
    }

    /// The region's size in bytes.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Checks that `range` of the region still lies inside the object,
    /// which its owner may have shrunk since registering it.
    pub(super) fn check_object(&self, range: &Range<usize>) -> Result<(), String> {
        let object_size = self.file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        if self.offset + (range.end as u64) > object_size {
            return Err(format!("the shared-memory object '{}' has shrunk to {object_size} bytes", self.key));
        }
        Ok(())
    }

    /// `range` of the region as a request's input data, without a copy.
    pub(super) fn read(self: &Arc<Self>, range: Range<usize>) -> Bytes {
        Bytes::from_owner(RegionSlice { region: Arc::clone(self), range })
    }

    /// Copies `data` to the start of `range` (which holds at least as many
    /// bytes).
    pub(super) fn write(&self, range: Range<usize>, data: &[u8]) {
        debug_assert!(data.len() <= range.len());
        // SAFETY: `range` lies inside the live mapping and holds at least
        // `data.len()` bytes; `data` is the server's own buffer, never the
        // mapping itself, so the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.as_mut_ptr().add(range.start), data.len());
        }
    }
}

/// A slice of a region handed to a request as its input's data, without a
/// copy; the region stays mapped while any slice lives, even if it is
/// unregistered meanwhile.
struct RegionSlice {
    region: Arc<SystemRegion>,
    range: Range<usize>,
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

/// The file of shared-memory object `key` (`/name` or `name`, as
/// `shm_open` takes it). Keys that would reach outside the shared-memory
/// directory are refused.
pub(super) fn object_path(key: &str) -> Result<PathBuf, String> {
    let name = key.strip_prefix('/').unwrap_or(key);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("'{key}' is not a shared-memory key: expected '/name' without further slashes"));
    }
    Ok(PathBuf::from(SHM_DIRECTORY).join(name))
}
