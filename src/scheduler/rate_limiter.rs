//! Triton's rate limiter (`--rate-limit=execution_count`): model instances
//! whose group lists resources in its `rate_limiter` must hold that many
//! copies of each before they execute a batch, and give them back after, so
//! that the instances of all models together never use more copies than
//! the server has. Instances that wait take turns by the group's priority
//! weighted by how often each has run (an instance with priority 2 gets half
//! the turns of one with priority 1); the first in line goes first, so a
//! large claim is not overtaken for ever by small ones.
//!
//! A resource has, by default, as many copies as the largest claim of any
//! loaded instance; `--rate-limit-resource` sets the count instead, and
//! then an instance that claims more than that, or a resource it does not
//! name, fails to load, as in Triton. Resources are per device (CPU
//! instances count as device 0, as Triton counts them) unless the
//! configuration marks them `global`. Names are compared without regard to
//! case, as Triton reads the flag.
//!
//! An instance thread blocks here while it waits; it holds no queue lock
//! then, so requests keep arriving and the batch it takes once its turn
//! comes is formed at that moment, as Triton forms it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::proto::inference::ModelRateLimiter;

/// Where a resource's copies are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Pool {
    Global,
    Device(i32),
}

/// A resource in one pool: the pool and the lower-cased name.
type ResourceKey = (Pool, String);

/// One `--rate-limit-resource=<name>:<count>[:<device>]`: `count` copies of
/// `name` on `device`, or on every device when none is given (for a global
/// resource the device is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLimit {
    /// The resource, lower-cased.
    pub name: String,
    /// How many copies there are.
    pub count: u32,
    /// The device they are on; `None` for every device.
    pub device: Option<i32>,
}

impl ResourceLimit {
    /// Reads Triton's `<name>:<count>` or `<name>:<count>:<device>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let malformed = || {
            format!(
                "--rate-limit-resource takes '<resource_name>:<count>:<device>' or '<resource_name>:<count>', not '{text}'"
            )
        };
        let parts: Vec<&str> = text.split(':').collect();
        let (name, count, device) = match parts.as_slice() {
            [name, count] => (name, count, None),
            [name, count, device] => (name, count, Some(device.trim().parse::<i32>().map_err(|_| malformed())?)),
            _ => return Err(malformed()),
        };
        let count = count.trim().parse::<u32>().map_err(|_| malformed())?;
        if name.trim().is_empty() || device.is_some_and(|device| device < 0) {
            return Err(malformed());
        }
        Ok(Self { name: name.trim().to_lowercase(), count, device })
    }
}

/// The rate limiter that every model's instances share.
pub struct RateLimiter {
    explicit: Vec<ResourceLimit>,
    state: Mutex<LimiterState>,
    /// Signalled when copies come back, the line changes or the counts do.
    turn: Condvar,
}

#[derive(Default)]
struct LimiterState {
    instances: HashMap<u64, Registered>,
    next_id: u64,
    next_ticket: u64,
    /// Copies of each resource, from the claims of the instances registered
    /// and `--rate-limit-resource`.
    counts: BTreeMap<ResourceKey, u32>,
    in_use: HashMap<ResourceKey, u32>,
    /// The instances waiting for their turn: (weighted executions, ticket,
    /// instance), first in line first.
    line: BTreeSet<(u64, u64, u64)>,
}

impl LimiterState {
    /// Puts instance `id` in line, behind those with fewer weighted
    /// executions, unless it is there already; its place.
    fn join_line(&mut self, id: u64) -> Option<(u64, u64, u64)> {
        let registered = self.instances.get_mut(&id)?;
        if registered.place.is_none() {
            let place = (registered.weighted_executions(), self.next_ticket, id);
            self.next_ticket += 1;
            self.line.insert(place);
            registered.place = Some(place);
        }
        registered.place
    }
}

struct Registered {
    claims: Vec<(ResourceKey, u32)>,
    /// Names as the configuration wrote them, for messages.
    names: HashMap<String, String>,
    priority: u64,
    executions: u64,
    place: Option<(u64, u64, u64)>,
}

impl Registered {
    fn weighted_executions(&self) -> u64 {
        self.executions.saturating_mul(self.priority)
    }
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RateLimiter").field("explicit", &self.explicit).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A rate limiter with the counts of `--rate-limit-resource`.
    pub fn new(explicit: Vec<ResourceLimit>) -> Self {
        Self { explicit, state: Mutex::new(LimiterState::default()), turn: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, LimiterState> {
        // Every section that changes the state is short and cannot panic
        // half way, so a poisoned lock still guards consistent counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers an instance on `device` (0 for the CPU) with its group's
    /// `rate_limiter`. Fails, with Triton's words, when a resource would be
    /// both global and per device, or when `--rate-limit-resource` leaves
    /// fewer copies than the instance claims.
    pub fn register(self: &Arc<Self>, device: i32, config: &ModelRateLimiter) -> Result<LimitedInstance, String> {
        let mut claims: BTreeMap<ResourceKey, u32> = BTreeMap::new();
        let mut names = HashMap::new();
        for resource in config.resources.iter().filter(|resource| resource.count > 0) {
            let name = resource.name.to_lowercase();
            let pool = if resource.global { Pool::Global } else { Pool::Device(device) };
            names.insert(name.clone(), resource.name.clone());
            let claim = claims.entry((pool, name)).or_default();
            *claim = (*claim).max(resource.count);
        }
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let registered = Registered {
            claims: claims.into_iter().collect(),
            names,
            priority: u64::from(config.priority.max(1)),
            executions: 0,
            place: None,
        };
        state.instances.insert(id, registered);
        match self.counts(&state.instances) {
            Ok(counts) => state.counts = counts,
            Err(error) => {
                state.instances.remove(&id);
                return Err(error);
            }
        }
        drop(state);
        self.turn.notify_all();
        Ok(LimitedInstance { limiter: Arc::clone(self), id })
    }

    /// Every resource's count for these instances: the largest claim, or
    /// the explicit count, which must cover the largest claim.
    fn counts(&self, instances: &HashMap<u64, Registered>) -> Result<BTreeMap<ResourceKey, u32>, String> {
        let mut largest: BTreeMap<ResourceKey, (u32, String)> = BTreeMap::new();
        for registered in instances.values() {
            for (key, claim) in &registered.claims {
                let shown = registered.names.get(&key.1).cloned().unwrap_or_else(|| key.1.clone());
                let entry = largest.entry(key.clone()).or_insert((0, shown));
                entry.0 = entry.0.max(*claim);
            }
        }
        for (pool, name) in largest.keys() {
            if *pool == Pool::Global
                && largest.keys().any(|(other_pool, other)| other == name && *other_pool != Pool::Global)
            {
                let shown = &largest[&(Pool::Global, name.clone())].1;
                return Err(format!(
                    "Resource \"{shown}\" is present as both global and device-specific resource in the model \
                     configuration."
                ));
            }
        }
        let mut counts = BTreeMap::new();
        for ((pool, name), (claim, shown)) in largest {
            let count = if self.explicit.is_empty() {
                claim
            } else {
                let count = self
                    .explicit
                    .iter()
                    .filter(|limit| limit.name == name)
                    .filter(|limit| match pool {
                        Pool::Global => true,
                        Pool::Device(device) => limit.device.is_none_or(|given| given == device),
                    })
                    .map(|limit| limit.count)
                    .max()
                    .unwrap_or(0);
                if count < claim {
                    return Err(format!(
                        "Resource count for \"{shown}\" is limited to {count} which will prevent scheduling of one \
                         or more model instances, the minimum required count is {claim}"
                    ));
                }
                count
            };
            counts.insert((pool, name), count);
        }
        Ok(counts)
    }
}

/// An instance's registration: its claims count while it lives.
pub struct LimitedInstance {
    limiter: Arc<RateLimiter>,
    id: u64,
}

impl LimitedInstance {
    /// Waits for the instance's turn and for the copies it claims, and
    /// takes them. An instance without claims never waits.
    pub fn acquire(&self) -> Grant<'_> {
        let limiter = &self.limiter;
        let mut state = limiter.lock();
        let claims_something = state.instances.get(&self.id).is_some_and(|registered| !registered.claims.is_empty());
        let Some(place) = claims_something.then(|| state.join_line(self.id)).flatten() else {
            return Grant { instance: self, ran: false, rejoin: false };
        };
        loop {
            if state.line.first() == Some(&place) && fits(&state, self.id) {
                state.line.remove(&place);
                let LimiterState { instances, in_use, .. } = &mut *state;
                if let Some(registered) = instances.get_mut(&self.id) {
                    registered.place = None;
                    for (key, claim) in &registered.claims {
                        *in_use.entry(key.clone()).or_default() += claim;
                    }
                }
                return Grant { instance: self, ran: false, rejoin: false };
            }
            state = limiter.turn.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Gives up the instance's place in line, if it has one: it has no
    /// batch to run after all.
    pub fn leave_line(&self) {
        let mut state = self.limiter.lock();
        let place = state.instances.get_mut(&self.id).and_then(|registered| registered.place.take());
        if let Some(place) = place {
            state.line.remove(&place);
            drop(state);
            self.limiter.turn.notify_all();
        }
    }
}

impl Drop for LimitedInstance {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        if let Some(registered) = state.instances.remove(&self.id)
            && let Some(place) = registered.place
        {
            state.line.remove(&place);
        }
        // Fewer claims cannot break a rule that more claims kept.
        if let Ok(counts) = self.limiter.counts(&state.instances) {
            state.counts = counts;
        }
        drop(state);
        self.limiter.turn.notify_all();
    }
}

/// Whether the copies `id` claims are free now.
fn fits(state: &LimiterState, id: u64) -> bool {
    let Some(registered) = state.instances.get(&id) else {
        return true;
    };
    registered.claims.iter().all(|(key, claim)| {
        let used = state.in_use.get(key).copied().unwrap_or(0);
        let count = state.counts.get(key).copied().unwrap_or(0);
        used + claim <= count
    })
}

/// The copies an instance holds while it executes; they go back when the
/// grant is dropped.
pub struct Grant<'a> {
    instance: &'a LimitedInstance,
    ran: bool,
    rejoin: bool,
}

impl Grant<'_> {
    /// Gives the copies back after a batch ran. With `more_work` the
    /// instance takes its next place in line at once, before any other
    /// instance is let in, as Triton stages an instance that still has
    /// requests when it releases.
    pub fn finished(mut self, more_work: bool) {
        self.ran = true;
        self.rejoin = more_work;
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        let limiter = &self.instance.limiter;
        let mut state = limiter.lock();
        let LimiterState { instances, in_use, .. } = &mut *state;
        let Some(registered) = instances.get_mut(&self.instance.id) else {
            return;
        };
        if registered.claims.is_empty() {
            return;
        }
        for (key, claim) in &registered.claims {
            if let Some(used) = in_use.get_mut(key) {
                *used = used.saturating_sub(*claim);
            }
        }
        if self.ran {
            registered.executions += 1;
        }
        if self.rejoin {
            state.join_line(self.instance.id);
        }
        drop(state);
        limiter.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::proto::inference::model_rate_limiter::Resource;

    fn config(resources: &[(&str, bool, u32)], priority: u32) -> ModelRateLimiter {
        ModelRateLimiter {
            resources: resources
                .iter()
                .map(|(name, global, count)| Resource { name: name.to_string(), global: *global, count: *count })
                .collect(),
            priority,
        }
    }

    #[test]
    fn resource_limits_are_read_as_triton_reads_them() {
        assert_eq!(
            ResourceLimit::parse("R1:10").unwrap(),
            ResourceLimit { name: "r1".into(), count: 10, device: None }
        );
        assert_eq!(
            ResourceLimit::parse("R2:5:1").unwrap(),
            ResourceLimit { name: "r2".into(), count: 5, device: Some(1) }
        );
        for bad in ["R1", "R1:x", "R1:1:2:3", ":4", "R1:-1", "R1:2:-1"] {
            let error = ResourceLimit::parse(bad).unwrap_err();
            assert!(error.contains(&format!("not '{bad}'")), "{error}");
        }
    }

    #[test]
    fn counts_default_to_the_largest_claim_and_explicit_counts_must_cover_it() {
        let limiter = Arc::new(RateLimiter::new(Vec::new()));
        let _a = limiter.register(0, &config(&[("R1", false, 4), ("R2", false, 4)], 0)).unwrap();
        let _b = limiter.register(0, &config(&[("R2", false, 5), ("R3", true, 10)], 0)).unwrap();
        let counts = limiter.lock().counts.clone();
        assert_eq!(
            counts,
            BTreeMap::from([
                ((Pool::Global, "r3".to_string()), 10),
                ((Pool::Device(0), "r1".to_string()), 4),
                ((Pool::Device(0), "r2".to_string()), 5),
            ])
        );
        let error = limiter.register(1, &config(&[("r3", false, 1)], 0)).err().unwrap();
        assert_eq!(
            error,
            "Resource \"R3\" is present as both global and device-specific resource in the model configuration."
        );
        // The refused instance left the counts as they were.
        assert_eq!(limiter.lock().counts, counts);

        let explicit = vec![ResourceLimit::parse("R1:3").unwrap(), ResourceLimit::parse("R2:8:1").unwrap()];
        let limiter = Arc::new(RateLimiter::new(explicit));
        let error = limiter.register(0, &config(&[("R1", false, 4)], 0)).err().unwrap();
        assert_eq!(
            error,
            "Resource count for \"R1\" is limited to 3 which will prevent scheduling of one or more model \
             instances, the minimum required count is 4"
        );
        // R2 has copies on device 1 only; a resource not named has none.
        assert!(limiter.register(1, &config(&[("R2", false, 8)], 0)).is_ok());
        assert!(limiter.register(0, &config(&[("R2", false, 1)], 0)).err().unwrap().contains("limited to 0"));
        assert!(limiter.register(0, &config(&[("R9", true, 1)], 0)).err().unwrap().contains("limited to 0"));
    }

    #[test]
    fn instances_sharing_a_resource_never_run_together() {
        let limiter = Arc::new(RateLimiter::new(vec![ResourceLimit::parse("R:1").unwrap()]));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let instance = limiter.register(0, &config(&[("R", false, 1)], 0)).unwrap();
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let grant = instance.acquire();
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        running.fetch_sub(1, Ordering::SeqCst);
                        grant.finished(false);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn priority_two_gets_half_the_turns_of_priority_one() {
        const TURNS: usize = 60;
        let limiter = Arc::new(RateLimiter::new(Vec::new()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = [(1, 'a'), (2, 'b')]
            .into_iter()
            .map(|(priority, label)| {
                let instance = limiter.register(0, &config(&[("R", true, 1)], priority)).unwrap();
                let order = Arc::clone(&order);
                std::thread::spawn(move || {
                    for turn in 0..TURNS {
                        let grant = instance.acquire();
                        order.lock().unwrap().push(label);
                        std::thread::sleep(Duration::from_millis(1));
                        grant.finished(turn + 1 < TURNS);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // While both wait, every third turn is b's. The first few turns may
        // go before the second thread starts, and a runs out of work after
        // ~90; 45 turns between show the share.
        let order = order.lock().unwrap();
        let window: String = order[6..51].iter().collect();
        let turns_of_b = window.chars().filter(|label| *label == 'b').count();
        assert!((13..=17).contains(&turns_of_b), "{window}");
    }

    #[test]
    fn an_instance_without_claims_never_waits() {
        let limiter = Arc::new(RateLimiter::new(Vec::new()));
        let busy = limiter.register(0, &config(&[("R", false, 1)], 0)).unwrap();
        let free = limiter.register(0, &config(&[], 5)).unwrap();
        let held = busy.acquire();
        // R is taken, and `free` claims nothing: it goes at once.
        free.acquire().finished(true);
        held.finished(false);
        assert!(limiter.lock().line.is_empty());
    }

    #[test]
    fn an_instance_that_leaves_lets_the_next_one_in() {
        let limiter = Arc::new(RateLimiter::new(Vec::new()));
        let first = limiter.register(0, &config(&[("R", false, 1)], 0)).unwrap();
        let second = limiter.register(0, &config(&[("R", false, 1)], 0)).unwrap();
        // `first` ran and queued up again, ahead of `second`, then found
        // nothing to run; leaving the line must let `second` through.
        first.acquire().finished(true);
        first.leave_line();
        second.acquire().finished(false);
        // An instance that unloads lowers the counts back.
        drop(first);
        drop(second);
        assert!(limiter.lock().counts.is_empty());
    }
}
