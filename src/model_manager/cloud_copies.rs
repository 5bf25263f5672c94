//! Repositories in cloud storage, read from local copies: the manager
//! brings each copy up to date before it reads the repositories for a
//! change (the load at start, a load request, a poll).

use super::*;
use crate::cloud_storage::RepositoryCopy;

impl ModelManager {
    /// Keeps `copies` current from now on; their local folders are among
    /// the repositories [`ModelManager::load_repositories`] is given.
    pub fn follow_cloud_copies(&self, copies: Vec<Arc<RepositoryCopy>>) {
        self.cloud_copies.write().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(copies);
    }

    /// Brings every copy up to date with its bucket. Blocking.
    pub(super) fn refresh_cloud_copies(&self) -> std::result::Result<(), String> {
        let copies = self.cloud_copies.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        copies.iter().try_for_each(|copy| copy.refresh().map(|_| ()))
    }
}
