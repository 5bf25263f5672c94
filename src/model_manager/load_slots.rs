//! Triton's `--model-load-thread-count`: how many models load at once, so
//! that a large repository does not create every model's sessions (and
//! their memory) at the same moment. Ensembles take no slot: they create
//! nothing, and wait for their composing models, which take their own.

use std::sync::{Condvar, Mutex, PoisonError};

/// The slots models load in.
#[derive(Debug)]
pub(super) struct LoadSlots {
    /// How many models may load at once; 0: no limit.
    limit: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

impl LoadSlots {
    /// `limit` slots; 0 for no limit.
    pub(super) fn new(limit: usize) -> Self {
        Self { limit, busy: Mutex::new(0), freed: Condvar::new() }
    }

    /// Waits for a free slot and takes it until the returned guard drops.
    /// Called on a blocking thread.
    pub(super) fn take(&self) -> LoadSlot<'_> {
        // The count is only changed by the two short sections here, so a
        // poisoned lock still holds the right count.
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while self.limit > 0 && *busy >= self.limit {
            busy = self.freed.wait(busy).unwrap_or_else(PoisonError::into_inner);
        }
        *busy += 1;
        LoadSlot(self)
    }
}

/// A taken slot; dropping it frees it.
pub(super) struct LoadSlot<'a>(&'a LoadSlots);

impl Drop for LoadSlot<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.freed.notify_one();
    }
}
