//! Triton's response cache, as its `local` cache implementation keeps it:
//! the outputs a model version computed, found again by a hash of the
//! request, so that a request repeating an earlier one is answered without
//! running the model. One cache of a size in bytes
//! (`--cache-config local,size=N`) serves every model whose configuration
//! has `response_cache { enable: true }`; when it is full, the answers used
//! least recently make room.
//!
//! The key is a 128-bit SipHash-1-3 under a key drawn when the server
//! starts, of the loaded model version and the request's inputs (names,
//! datatypes, shapes and bytes) and requested outputs. Triton hashes
//! fewer of these into 64 bits; with the datatypes, shapes and outputs in
//! it, two requests that differ only there never share an answer, and a
//! client cannot craft a request that collides with another's.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::tensor::Tensor;
use crate::validation::ValidatedRequest;

/// The one cache implementation this server has.
pub const LOCAL_CACHE: &str = "local";

/// Where a request's answer is found in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(u128);

/// One cached answer.
struct Entry {
    /// The outputs, in the order the request asked for them, each with
    /// data of its own (not a slice of a batch's output).
    outputs: Vec<Tensor>,
    /// The bytes the entry counts against the cache's size.
    size: usize,
    /// When it was last inserted or found, on the cache's use counter.
    last_use: u64,
    /// The model version it belongs to.
    scope: u64,
}

/// The cached answers and their order of use.
#[derive(Default)]
struct Entries {
    by_key: HashMap<CacheKey, Entry>,
    /// Keys by last use, oldest first: the eviction order.
    by_use: BTreeMap<u64, CacheKey>,
    next_use: u64,
    used_bytes: usize,
}

impl Entries {
    fn touch(&mut self) -> u64 {
        self.next_use += 1;
        self.next_use
    }

    fn remove(&mut self, key: CacheKey) -> Option<Entry> {
        let entry = self.by_key.remove(&key)?;
        self.by_use.remove(&entry.last_use);
        self.used_bytes -= entry.size;
        Some(entry)
    }
}

/// The server's response cache, shared by the models that enable it.
pub struct ResponseCache {
    capacity: usize,
    hash_keys: (u64, u64),
    entries: Mutex<Entries>,
    next_scope: AtomicU64,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// An empty cache that holds at most `capacity` bytes of answers.
    pub fn new(capacity: usize) -> Self {
        // Each RandomState carries fresh random SipHash keys; hashing a
        // constant under two of them gives 128 random bits.
        let random = || RandomState::new().hash_one(0x5eed_u64);
        Self {
            capacity,
            hash_keys: (random(), random()),
            entries: Mutex::new(Entries::default()),
            next_scope: AtomicU64::new(0),
        }
    }

    /// How many answers it holds now, and their bytes.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let entries = self.lock();
        (entries.by_key.len(), entries.used_bytes)
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every change to the entries is panic-free, so a poisoned lock
        // still guards consistent entries.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The part of the cache one loaded model version uses: its answers
    /// are never found by another version, nor by the same version loaded
    /// again from changed files, and they leave the cache with it.
    pub fn scope(self: &Arc<Self>) -> ModelCache {
        ModelCache { cache: Arc::clone(self), scope: self.next_scope.fetch_add(1, Ordering::Relaxed) }
    }

    fn key(&self, scope: u64, request: &ValidatedRequest) -> CacheKey {
        let mut hasher = SipHasher13::new_with_keys(self.hash_keys.0, self.hash_keys.1);
        // Every variable-length part is preceded by its length, so that no
        // two different requests feed the hasher the same bytes.
        let write_bytes = |hasher: &mut SipHasher13, bytes: &[u8]| {
            hasher.write_u64(bytes.len() as u64);
            hasher.write(bytes);
        };
        hasher.write_u64(scope);
        hasher.write_u64(request.inputs.len() as u64);
        for input in &request.inputs {
            write_bytes(&mut hasher, input.name.as_bytes());
            write_bytes(&mut hasher, input.datatype.protocol_name().as_bytes());
            hasher.write_u64(input.shape.len() as u64);
            input.shape.iter().for_each(|&dim| hasher.write_i64(dim));
            write_bytes(&mut hasher, &input.data);
        }
        hasher.write_u64(request.outputs.len() as u64);
        for output in &request.outputs {
            write_bytes(&mut hasher, output.as_bytes());
        }
        CacheKey(u128::from(hasher.finish128()))
    }

    fn find(&self, key: CacheKey) -> Option<Vec<Tensor>> {
        let mut entries = self.lock();
        let last_use = entries.touch();
        let entry = entries.by_key.get_mut(&key)?;
        let previous = std::mem::replace(&mut entry.last_use, last_use);
        let outputs = entry.outputs.clone();
        entries.by_use.remove(&previous);
        entries.by_use.insert(last_use, key);
        Some(outputs)
    }

    /// Keeps `outputs` under `key`, dropping the answers used least
    /// recently to make room; an answer larger than the whole cache is not
    /// kept. Returns whether it was kept.
    fn insert(&self, scope: u64, key: CacheKey, outputs: &[Tensor]) -> bool {
        let size: usize = outputs.iter().map(entry_bytes).sum();
        if size > self.capacity {
            return false;
        }
        // Copied outside the lock: an output may be a slice of a whole
        // batch's buffer, which the cache must not keep alive.
        let outputs: Vec<Tensor> = outputs
            .iter()
            .map(|output| Tensor { data: Bytes::copy_from_slice(&output.data), ..output.clone() })
            .collect();
        let mut entries = self.lock();
        // The same request answered twice at once: the later answer stays.
        entries.remove(key);
        while entries.used_bytes + size > self.capacity {
            let Some(&oldest) = entries.by_use.values().next() else { break };
            entries.remove(oldest);
        }
        let last_use = entries.touch();
        entries.by_use.insert(last_use, key);
        entries.by_key.insert(key, Entry { outputs, size, last_use, scope });
        entries.used_bytes += size;
        true
    }

    fn forget(&self, scope: u64) {
        let mut entries = self.lock();
        let keys: Vec<CacheKey> =
            entries.by_key.iter().filter(|(_, entry)| entry.scope == scope).map(|(key, _)| *key).collect();
        for key in keys {
            entries.remove(key);
        }
    }
}

/// The bytes an output counts against the cache's size: its data, name
/// and shape.
fn entry_bytes(output: &Tensor) -> usize {
    output.data.len() + output.name.len() + output.shape.len() * std::mem::size_of::<i64>()
}

/// A model version's use of the response cache.
pub struct ModelCache {
    cache: Arc<ResponseCache>,
    scope: u64,
}

impl ModelCache {
    /// The key of `request` and the outputs cached under it, if any.
    pub fn lookup(&self, request: &ValidatedRequest) -> (CacheKey, Option<Vec<Tensor>>) {
        let key = self.cache.key(self.scope, request);
        (key, self.cache.find(key))
    }

    /// Keeps the outputs computed for the request of `key`; returns
    /// whether they fitted.
    pub fn insert(&self, key: CacheKey, outputs: &[Tensor]) -> bool {
        self.cache.insert(self.scope, key, outputs)
    }
}

impl Drop for ModelCache {
    /// An unloaded model version's answers can never be found again, so
    /// they make room at once.
    fn drop(&mut self) {
        self.cache.forget(self.scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DataType;

    fn tensor(name: &str, datatype: DataType, shape: Vec<i64>, data: &[u8]) -> Tensor {
        Tensor { name: name.into(), datatype, shape, data: Bytes::copy_from_slice(data) }
    }

    fn request(data: &[u8], outputs: &[&str]) -> ValidatedRequest {
        ValidatedRequest {
            batch_size: 1,
            inputs: vec![tensor("x", DataType::Uint8, vec![1, data.len() as i64], data)],
            outputs: outputs.iter().map(|name| name.to_string()).collect(),
        }
    }

    fn answer(bytes: usize) -> Vec<Tensor> {
        vec![tensor("y", DataType::Uint8, vec![1, bytes as i64], &vec![7; bytes])]
    }

    #[test]
    fn a_repeated_request_finds_its_answer_and_others_do_not() {
        let cache = Arc::new(ResponseCache::new(1 << 20));
        let model = cache.scope();
        let (key, found) = model.lookup(&request(b"abc", &["y"]));
        assert_eq!(found, None);
        assert!(model.insert(key, &answer(4)));
        assert_eq!(model.lookup(&request(b"abc", &["y"])).1, Some(answer(4)));
        assert_eq!(model.lookup(&request(b"abd", &["y"])).1, None, "other input bytes");
        assert_eq!(model.lookup(&request(b"abc", &["y", "z"])).1, None, "other requested outputs");
        let mut reshaped = request(b"abc", &["y"]);
        reshaped.inputs[0].shape = vec![3, 1];
        assert_eq!(model.lookup(&reshaped).1, None, "same bytes, other shape");
        let mut retyped = request(b"abc", &["y"]);
        retyped.inputs[0].datatype = DataType::Int8;
        assert_eq!(model.lookup(&retyped).1, None, "same bytes, other datatype");
        assert_eq!(cache.scope().lookup(&request(b"abc", &["y"])).1, None, "another model version");
        assert_eq!(cache.held(), (1, 4 + 1 + 16));
    }

    #[test]
    fn the_least_recently_used_answers_make_room() {
        // Each answer counts 10 data bytes + 1 name byte + 16 shape bytes.
        let cache = Arc::new(ResponseCache::new(3 * 27));
        let model = cache.scope();
        let keys: Vec<CacheKey> = (0..3u8)
            .map(|value| {
                let (key, _) = model.lookup(&request(&[value], &["y"]));
                assert!(model.insert(key, &answer(10)));
                key
            })
            .collect();
        assert_eq!(cache.held(), (3, 81));
        // Using the oldest makes the second the least recently used.
        assert!(model.lookup(&request(&[0], &["y"])).1.is_some());
        let (fourth, _) = model.lookup(&request(&[3], &["y"]));
        assert!(model.insert(fourth, &answer(10)));
        assert!(model.lookup(&request(&[1], &["y"])).1.is_none(), "evicted");
        for value in [0, 2, 3] {
            assert!(model.lookup(&request(&[value], &["y"])).1.is_some(), "{value} kept");
        }
        assert_eq!(cache.held(), (3, 81));
        assert_ne!(keys[0], keys[1]);
    }

    #[test]
    fn an_answer_larger_than_the_cache_is_not_kept() {
        let cache = Arc::new(ResponseCache::new(100));
        let model = cache.scope();
        let (key, _) = model.lookup(&request(b"big", &["y"]));
        assert!(!model.insert(key, &answer(200)));
        assert_eq!(cache.held(), (0, 0));
    }

    #[test]
    fn cached_outputs_do_not_hold_the_batch_buffer() {
        let cache = Arc::new(ResponseCache::new(1 << 20));
        let model = cache.scope();
        let batch = Bytes::from(vec![1u8; 64]);
        let row = Tensor { name: "y".into(), datatype: DataType::Uint8, shape: vec![1, 8], data: batch.slice(0..8) };
        let (key, _) = model.lookup(&request(b"r", &["y"]));
        model.insert(key, std::slice::from_ref(&row));
        let found = model.lookup(&request(b"r", &["y"])).1.unwrap();
        assert_eq!(found, vec![row]);
        assert!(!found[0].data.as_ptr_range().contains(&batch.as_ptr()), "the cache copied the row");
    }

    #[test]
    fn an_unloaded_versions_answers_leave_the_cache() {
        let cache = Arc::new(ResponseCache::new(1 << 20));
        let (kept, dropped) = (cache.scope(), cache.scope());
        for model in [&kept, &dropped] {
            let (key, _) = model.lookup(&request(b"q", &["y"]));
            model.insert(key, &answer(5));
        }
        assert_eq!(cache.held().0, 2);
        drop(dropped);
        assert_eq!(cache.held().0, 1);
        assert!(kept.lookup(&request(b"q", &["y"])).1.is_some());
    }
}
