//! Model control: loading, reloading and unloading models on request
//! (mode `explicit`), following the repository (mode `poll`), and the
//! repository index.

use super::ensembles::ensemble_steps;
use super::loading::serving_names;
use super::{namesakes, *};

impl ModelManager {
    /// Loads or reloads `name` from the repositories, or from the files the
    /// request sent, on a client's request (mode `explicit` only). A reload builds the new versions first and
    /// swaps them in only if all of them load, so the model keeps serving
    /// throughout; if any fails, the versions that served keep serving and
    /// the error says why. A model that did not serve takes whatever loaded,
    /// as at start. The old versions finish the requests they hold.
    /// With namespacing, a name that several repositories use loads each
    /// repository's model of that name, as in Triton.
    pub async fn load_model(self: &Arc<Self>, name: &str, options: LoadOptions) -> Result<()> {
        self.check_control()?;
        let (manager, name) = (Arc::clone(self), name.to_string());
        tokio::task::spawn_blocking(move || {
            let names = match options.files.is_empty() {
                true => serving_names(&manager.scan().map_err(Error::internal)?, &name),
                false => vec![name],
            };
            names.iter().try_for_each(|name| manager.load_on_request(name, &options))
        })
        .await
        .map_err(|error| Error::internal(format!("loading the model failed: {error}")))?
    }

    pub(super) fn load_on_request(&self, name: &str, options: &LoadOptions) -> Result<()> {
        let _one_at_a_time = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A model whose files came with the request needs nothing from the
        // repositories' buckets.
        if options.files.is_empty() {
            self.refresh_cloud_copies()
                .map_err(|reason| Error::unavailable(format!("load failed for model '{name}': {reason}")))?;
        }
        // Files sent with the request are the model's directory for this
        // load, in place of the repositories' (Triton's model file override).
        let uploaded = match options.files.is_empty() {
            true => None,
            false => Some(Arc::new(UploadedModel::write(name, &options.files)?)),
        };
        let model = self.directory_to_load(name, uploaded.as_deref())?;
        let options = &LoadOptions { config: options.config.clone(), files: BTreeMap::new() };
        // As in Triton, loading an ensemble loads its composing models that
        // do not serve yet, those of a nested ensemble first.
        let mut loaded = Vec::new();
        for composing in self.in_dependency_order(&self.composing_model_names(&model, options)) {
            if self.resolve(&composing, None).is_ok() {
                continue;
            }
            let directory = self.find_model_directory(&composing).map_err(|error| {
                Error::invalid_argument(format!("load failed for ensemble '{name}': {}", error.message()))
            })?;
            let record =
                ModelRecord { loaded_for_ensemble: true, ..self.build_model(&directory, &LoadOptions::default()) };
            let installed = self.install(&composing, record);
            loaded.push(composing.clone());
            if let Err(reason) = installed {
                self.revisit_dependents(&loaded, &loaded);
                return Err(Error::invalid_argument(format!(
                    "load failed for ensemble '{name}': its composing model '{composing}' did not load: {reason}"
                )));
            }
            tracing::info!(model = composing, ensemble = name, "loaded as a composing model");
        }
        let record = ModelRecord { uploaded, ..self.build_model(&model, options) };
        let installed = self
            .install(name, record)
            .map(|()| tracing::info!(model = name, "loaded on request"))
            .map_err(|reason| Error::invalid_argument(format!("load failed for model '{name}': {reason}")));
        loaded.push(name.to_string());
        self.revisit_dependents(&loaded, &loaded);
        installed
    }

    /// The ensembles the manager has a record of (serving or failed, not
    /// unloaded on request) whose steps run any of `models`, except those in
    /// `except`.
    pub(super) fn dependents_of(&self, models: &[String], except: &[String]) -> Vec<String> {
        let unloaded = |record: &ModelRecord| {
            !record.versions.is_empty()
                && record.versions.values().all(|version| version.state == VersionState::Unloaded)
        };
        self.read_models()
            .iter()
            .filter(|(name, record)| !except.contains(name) && !unloaded(record))
            .filter(|(_, record)| {
                record
                    .config
                    .as_deref()
                    .is_some_and(|config| ensemble_steps(config).iter().any(|model| models.contains(model)))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Plans the ensembles that depend on `changed` models again, as
    /// Triton's dependency graph re-checks an ensemble when a model its
    /// steps run loads, reloads or unloads: an ensemble that failed for want
    /// of a composing model serves once that model does, and one whose
    /// composing model stopped serving stops too, with the reason, instead
    /// of failing each request. Ensembles in `except` were just built.
    pub(super) fn revisit_dependents(&self, changed: &[String], except: &[String]) {
        // An ensemble planned again changes in turn for the ensembles that
        // run it; each is planned once.
        let mut visited = except.to_vec();
        let mut changed = changed.to_vec();
        while !changed.is_empty() {
            let dependents = self.dependents_of(&changed, &visited);
            for name in &dependents {
                let (options, loaded_for_ensemble, uploaded) = self
                    .read_models()
                    .get(name)
                    .map(|record| (record.options.clone(), record.loaded_for_ensemble, record.uploaded.clone()))
                    .unwrap_or_default();
                let Ok(model) = self.directory_to_load(name, uploaded.as_deref()) else { continue };
                let record = ModelRecord { loaded_for_ensemble, uploaded, ..self.build_model(&model, &options) };
                match record.failure_reason() {
                    None => tracing::info!(model = %name, "loaded again: a model its steps run changed"),
                    Some(reason) => tracing::error!(
                        model = %name,
                        "unloaded: a model its steps run changed, and the ensemble no longer loads: {reason}"
                    ),
                }
                self.replace_record(name, Some(record));
            }
            visited.extend(dependents.iter().cloned());
            changed = dependents;
        }
    }

    /// Puts a freshly built record in the place of the model's. If it did
    /// not load completely while the model serves, the serving versions
    /// stay (noting the directory state that was tried) and the new ones
    /// are dropped; otherwise it replaces the old record, whose versions
    /// that the new one did not keep retire once the requests holding them
    /// are answered. Returns why the load failed, if it did.
    pub(super) fn install(&self, name: &str, record: ModelRecord) -> std::result::Result<(), String> {
        let Some(reason) = record.failure_reason() else {
            self.replace_record(name, Some(record));
            return Ok(());
        };
        let mut replaced = None;
        let discarded = {
            let mut models = self.write_models();
            match models.get_mut(name) {
                Some(old) if !old.loaded_versions().is_empty() => {
                    old.seen = record.seen;
                    record.versions_not_in(Some(old))
                }
                _ => {
                    // Dropped below, out of the lock: it may remove a
                    // directory of sent model files.
                    replaced = models.insert(name.to_string(), record);
                    Vec::new()
                }
            }
        };
        drop(replaced);
        self.settle(discarded);
        Err(reason)
    }

    /// Puts `record` in the place of model `name`'s (`None` removes the
    /// model), then settles with the old record's versions that the new
    /// one does not hold.
    pub(super) fn replace_record(&self, name: &str, record: Option<ModelRecord>) {
        // The old record is dropped after the lock is released: it may
        // remove a directory of sent model files.
        let (old, retired) = {
            let mut models = self.write_models();
            let old = match record {
                Some(record) => models.insert(name.to_string(), record),
                None => models.remove(name),
            };
            let retired = old.as_ref().map(|old| old.versions_not_in(models.get(name))).unwrap_or_default();
            (old, retired)
        };
        drop(old);
        self.settle(retired);
    }

    /// After the records changed: readiness follows them, and the versions
    /// taken out retire once the requests holding them are answered.
    pub(super) fn settle(&self, retired: Vec<Arc<LoadedVersion>>) {
        self.readiness.send_replace(self.server_ready());
        retire(retired);
    }

    /// Brings the models in line with the repositories (mode `poll`):
    /// models whose directories appeared load, those whose directories
    /// changed reload (the old versions serve until the new ones all
    /// loaded, and stay if any fails), and those whose directories went
    /// away unload. A repository that cannot be read changes nothing.
    pub async fn poll_repositories(self: &Arc<Self>) {
        let manager = Arc::clone(self);
        if let Err(error) = tokio::task::spawn_blocking(move || manager.poll_once()).await {
            tracing::error!("polling the model repository failed: {error}");
        }
    }

    pub(super) fn poll_once(&self) {
        let _one_at_a_time = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(reason) = self.refresh_cloud_copies() {
            tracing::warn!("cannot poll the model repository, so no model changes: {reason}");
            return;
        }
        let scan = match self.scan() {
            Ok(scan) => scan,
            Err(reason) => {
                tracing::warn!("cannot poll the model repository, so no model changes: {reason}");
                return;
            }
        };
        let in_repository =
            |name: &str| scan.duplicates.contains_key(name) || scan.models.iter().any(|m| m.name == name);
        let gone: Vec<String> = self.read_models().keys().filter(|name| !in_repository(name)).cloned().collect();
        // Every model this poll loads, reloads or unloads.
        let mut changed = Vec::new();
        for name in gone {
            self.replace_record(&name, None);
            tracing::info!(model = %name, "unloaded: its directory left the model repository");
            changed.push(name);
        }
        for (name, paths) in &scan.duplicates {
            let reason = duplicate_reason(name, paths);
            if self.read_models().get(name).is_some_and(|record| record.failure.as_ref() == Some(&reason)) {
                continue;
            }
            tracing::error!(model = %name, "failed to load: {reason}");
            self.replace_record(name, Some(ModelRecord::failed(reason)));
            changed.push(name.clone());
        }
        // Ensembles last, an ensemble after the ensembles its steps run, so
        // that one added with its composing models finds them loaded.
        let (mut ensembles, others): (Vec<&ModelDirectory>, Vec<&ModelDirectory>) = scan
            .models
            .iter()
            .partition(|model| !self.composing_model_names(model, &LoadOptions::default()).is_empty());
        let names: Vec<String> = ensembles.iter().map(|model| model.name.clone()).collect();
        let order = self.in_dependency_order(&names);
        ensembles.sort_by_key(|model| order.iter().position(|name| *name == model.name));
        for model in others.into_iter().chain(ensembles) {
            let seen = self.read_models().get(&model.name).map(|record| record.seen);
            let now = DirectoryFingerprint::of(&model.path);
            if seen == Some(Some(now)) {
                continue;
            }
            let name = model.name.as_str();
            changed.push(name.to_string());
            let change = if seen.is_some() { "changed in" } else { "added to" };
            // Looked at before the load, as build_model does.
            let record = ModelRecord { seen: Some(now), ..self.build_record(model, &LoadOptions::default()) };
            match self.install(name, record) {
                Ok(()) => tracing::info!(model = name, "loaded: its directory was {change} the model repository"),
                Err(reason) if seen.is_some() && self.model_ready(name, None) => tracing::error!(
                    model = name,
                    "its directory changed, but the new contents do not load, so the versions loaded before keep \
                     serving: {reason}"
                ),
                Err(_) => {}
            }
        }
        // The ensembles this poll did not build again follow the models
        // their steps run.
        self.revisit_dependents(&changed, &changed);
    }

    /// Unloads every version of `name` on a client's request (mode
    /// `explicit` only): new requests get UNAVAILABLE at once, and this
    /// returns once the requests already running on it are answered and its
    /// instances are released. Unloading a model of the repositories that is
    /// not loaded changes nothing, as in Triton. With `unload_dependents`,
    /// an ensemble's composing models that were loaded only for it, and
    /// that no other serving ensemble needs, are unloaded too.
    pub async fn unload_model(self: &Arc<Self>, name: &str, options: UnloadOptions) -> Result<()> {
        self.check_control()?;
        let (manager, name) = (Arc::clone(self), name.to_string());
        tokio::task::spawn_blocking(move || {
            // With namespacing, a name that several repositories use
            // unloads each repository's model of that name.
            let namesakes: Vec<String> =
                namesakes(&manager.read_models(), &name).map(|(serving_name, _)| serving_name.clone()).collect();
            let names = if namesakes.is_empty() { vec![name] } else { namesakes };
            names.iter().try_for_each(|name| manager.unload_on_request(name, options))
        })
        .await
        .map_err(|error| Error::internal(format!("unloading the model failed: {error}")))?
    }

    pub(super) fn unload_on_request(&self, name: &str, options: UnloadOptions) -> Result<()> {
        let _one_at_a_time = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (retired, config, uploaded) = {
            let mut models = self.write_models();
            match models.get_mut(name) {
                // A model that failed before it had versions has nothing to
                // show as unloaded: it goes back to never having loaded.
                Some(record) if record.versions.is_empty() => {
                    let removed = models.remove(name);
                    let config = removed.as_ref().and_then(|record| record.config.clone());
                    (Vec::new(), config, removed.and_then(|record| record.uploaded))
                }
                Some(record) => {
                    let (retired, uploaded) = record.unload();
                    (retired, record.config.clone(), uploaded)
                }
                None => {
                    drop(models);
                    self.find_model_directory(name)?;
                    return Ok(());
                }
            }
        };
        drop(uploaded);
        self.settle(retired);
        tracing::info!(model = name, "unloaded on request");
        let mut unloaded = vec![name.to_string()];
        let steps =
            config.filter(|_| options.unload_dependents).map(|config| ensemble_steps(&config)).unwrap_or_default();
        // Ensembles before the models their steps run, so that a nested
        // ensemble leaving frees its own composing models.
        let mut composing = self.in_dependency_order(&steps);
        composing.reverse();
        for model in composing {
            let needed_elsewhere = self
                .dependents_of(std::slice::from_ref(&model), &unloaded)
                .into_iter()
                .any(|other| self.read_models().get(&other).is_some_and(|record| !record.loaded_versions().is_empty()));
            let retired = match self.write_models().get_mut(&model) {
                // Loaded for an ensemble, so from the repositories: no
                // sent files to remove.
                Some(record) if record.loaded_for_ensemble && !needed_elsewhere => record.unload().0,
                _ => continue,
            };
            self.settle(retired);
            tracing::info!(model = %model, ensemble = name, "unloaded with the ensemble it was loaded for");
            unloaded.push(model);
        }
        self.revisit_dependents(&unloaded, &unloaded);
        Ok(())
    }

    /// Load and unload requests need mode `explicit`, and wait for the end
    /// of the start-up loading, which would otherwise overwrite what they
    /// did to a model it was still loading.
    pub(super) fn check_control(&self) -> Result<()> {
        match self.options.control {
            ModelControlMode::None | ModelControlMode::Poll => {
                Err(Error::unavailable(control_refusal(self.options.control)))
            }
            ModelControlMode::Explicit if !self.loading_done.load(Ordering::SeqCst) => Err(Error::unavailable(
                "the server is still loading the models named at start; load and unload models once it is done",
            )),
            ModelControlMode::Explicit => Ok(()),
        }
    }

    /// Where model `name` loads from: the directory written from the files
    /// its load request sent, else its directory in the repositories.
    fn directory_to_load(&self, name: &str, uploaded: Option<&UploadedModel>) -> Result<ModelDirectory> {
        match uploaded {
            Some(uploaded) => Ok(uploaded.directory(name)),
            None => self.find_model_directory(name),
        }
    }

    /// The directory of model `name` in the repositories.
    pub(super) fn find_model_directory(&self, name: &str) -> Result<ModelDirectory> {
        let repositories = self.repositories();
        let mut scan = scan_repositories(&repositories, self.options.namespacing).map_err(Error::internal)?;
        if let Some(paths) = scan.duplicates.get(name) {
            return Err(Error::invalid_argument(format!(
                "load failed for model '{name}': {}",
                duplicate_reason(name, paths)
            )));
        }
        let position = scan.models.iter().position(|model| model.name == name).ok_or_else(|| {
            let places: Vec<String> =
                repositories.iter().map(|repository| repository.path.display().to_string()).collect();
            Error::not_found(format!("model '{name}' is not in the model repository ({})", places.join(", ")))
        })?;
        Ok(scan.models.swap_remove(position))
    }

    /// Triton's repository index: every model directory of the
    /// repositories and every model the server has loaded, by name; a model
    /// that has been asked to load has a row per version with its state.
    /// With `ready_only`, only the versions that serve.
    pub fn repository_index(&self, ready_only: bool) -> Result<Vec<RepositoryIndexEntry>> {
        let scan = self.scan().map_err(Error::internal)?;
        // Rows by the name clients know each model by, then the name it
        // serves under (they differ with namespacing, for models whose
        // name several repositories use).
        let mut rows: BTreeMap<(String, String), Vec<RepositoryIndexEntry>> = BTreeMap::new();
        for model in &scan.models {
            rows.entry((model.model_name().to_string(), model.name.clone())).or_default();
        }
        for (name, paths) in &scan.duplicates {
            rows.entry((name.clone(), name.clone())).or_default().push(RepositoryIndexEntry {
                name: name.clone(),
                version: None,
                state: Some(VersionState::Unavailable(String::new()).name()),
                reason: duplicate_reason(name, paths),
            });
        }
        for (serving_name, entry) in self.index_by_serving_name() {
            let row = rows.entry((entry.name.clone(), serving_name)).or_default();
            // The manager's own record of a model (it may serve, loaded
            // before a second copy appeared) replaces the scan's duplicate row.
            row.retain(|known| known.version.is_some());
            let reason = entry.reason().to_string();
            row.push(RepositoryIndexEntry {
                name: entry.name,
                version: entry.version,
                state: Some(entry.state.name()),
                reason,
            });
        }
        Ok(rows
            .into_iter()
            .flat_map(|((name, _), row)| {
                if row.is_empty() {
                    vec![RepositoryIndexEntry { name, version: None, state: None, reason: String::new() }]
                } else {
                    row
                }
            })
            .filter(|entry| !ready_only || entry.state == Some(VersionState::Ready.name()))
            .collect())
    }

    /// Unloads every model version, as Triton does before it exits: each
    /// version stops taking requests (they get UNAVAILABLE), answers what is
    /// already queued, and its instances release their backend resources
    /// before this returns. Blocks while the batches in flight finish.
    pub fn unload_all(&self) {
        let (unloaded, uploaded): (Vec<_>, Vec<_>) =
            self.write_models().values_mut().map(|record| record.unload()).unzip();
        drop(uploaded);
        let unloaded: Vec<Arc<LoadedVersion>> = unloaded.into_iter().flatten().collect();
        self.readiness.send_replace(false);
        for loaded in unloaded {
            loaded.stop();
            tracing::info!(model = %loaded.config.name, version = loaded.version, "unloaded");
        }
    }
}
