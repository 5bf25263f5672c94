//! How a model version schedules requests, read from its configuration:
//! whether and how it batches, and the queue policy of each priority level.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ragged::RaggedBatching;
use crate::model_config::ModelConfig;
use crate::proto::inference::model_config::SchedulingChoice;
use crate::proto::inference::model_queue_policy::TimeoutAction as ConfigTimeoutAction;
use crate::proto::inference::{ModelDynamicBatching, ModelQueuePolicy};

/// What happens to a request that waited longer than its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Answer it with an error.
    Reject,
    /// Keep it, but behind the requests of its level that have not timed
    /// out (still ahead of lower levels).
    Delay,
}

/// The queue policy of one priority level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Most requests waiting at this level; 0 is unbounded.
    pub max_queue_size: usize,
    /// How long a request may wait; `None` is forever.
    pub default_timeout: Option<Duration>,
    /// Whether a request's `timeout` parameter may shorten the default.
    pub allow_timeout_override: bool,
    /// What to do when the timeout passes.
    pub timeout_action: TimeoutAction,
}

impl QueuePolicy {
    /// No size limit, no timeout: the policy of a level the configuration
    /// says nothing about.
    pub const UNBOUNDED: Self = Self {
        max_queue_size: 0,
        default_timeout: None,
        allow_timeout_override: false,
        timeout_action: TimeoutAction::Reject,
    };

    fn from_config(policy: Option<&ModelQueuePolicy>) -> Self {
        let Some(policy) = policy else {
            return Self::UNBOUNDED;
        };
        Self {
            max_queue_size: policy.max_queue_size as usize,
            default_timeout: (policy.default_timeout_microseconds > 0)
                .then(|| Duration::from_micros(policy.default_timeout_microseconds)),
            allow_timeout_override: policy.allow_timeout_override,
            timeout_action: match policy.timeout_action() {
                ConfigTimeoutAction::Reject => TimeoutAction::Reject,
                ConfigTimeoutAction::Delay => TimeoutAction::Delay,
            },
        }
    }

    /// The timeout of a request that asked for `requested` (microseconds,
    /// from its `timeout` parameter): a request may shorten the default
    /// when the policy allows it, never lengthen it. A requested 0 means
    /// "no timeout of my own", as in Triton's API, whose clients send it by
    /// default. Without a default there is nothing to shorten, and the
    /// request waits as long as it takes: Triton documents the override as
    /// "less than the default timeout value", which is 0 there, and its
    /// queue ignores the parameter then, so clients that send one keep
    /// working unchanged.
    pub fn timeout_for(&self, requested: Option<Duration>) -> Option<Duration> {
        let default = self.default_timeout?;
        match requested.filter(|requested| self.allow_timeout_override && !requested.is_zero()) {
            Some(requested) => Some(default.min(requested)),
            None => Some(default),
        }
    }
}

/// The priority levels of a model version and their queue policies.
/// Levels are numbered from 1 (served first); a configuration may declare
/// up to 2^64 - 1 of them, so only the levels with a policy of their own
/// are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityLevels {
    count: u64,
    default_policy: QueuePolicy,
    own_policies: BTreeMap<u64, QueuePolicy>,
}

impl PriorityLevels {
    /// `count` levels (at least one) sharing `default_policy`, except the
    /// levels in `own_policies`.
    pub fn new(count: u64, default_policy: QueuePolicy, own_policies: BTreeMap<u64, QueuePolicy>) -> Self {
        Self { count: count.max(1), default_policy, own_policies }
    }

    /// One level without limits.
    pub fn single() -> Self {
        Self::new(1, QueuePolicy::UNBOUNDED, BTreeMap::new())
    }

    /// How many levels there are.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The policy of a 1-based level.
    pub fn policy(&self, level: u64) -> &QueuePolicy {
        self.own_policies.get(&level).unwrap_or(&self.default_policy)
    }
}

/// Triton's dynamic batcher settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicBatching {
    /// Batch sizes worth sending as soon as they are reached, ascending.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest request may wait for a batch to fill.
    pub max_queue_delay: Duration,
}

/// How one model version schedules its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingPolicy {
    /// Largest batch the model takes; 0 when it has no batch dimension.
    pub max_batch_size: usize,
    /// Dynamic batching, when configured and the model batches.
    pub dynamic: Option<DynamicBatching>,
    /// Answer requests in the order they arrived (`dynamic_batching`'s
    /// `preserve_ordering`).
    pub preserve_ordering: bool,
    /// The priority levels and their queue policies.
    pub levels: PriorityLevels,
    /// Level of requests that give no valid priority (1-based).
    pub default_level: u64,
    /// The inputs whose shapes may differ within a batch, and the batch
    /// inputs and outputs that describe a batch to the model.
    pub ragged: RaggedBatching,
}

impl SchedulingPolicy {
    /// How long a request may wait for its batch to fill: `None` when
    /// requests go as soon as they come (no dynamic batching, or a delay
    /// of 0).
    pub fn batching_delay(&self) -> Option<Duration> {
        self.dynamic.as_ref().map(|dynamic| dynamic.max_queue_delay).filter(|delay| !delay.is_zero())
    }

    /// The policy a configuration describes. Without `dynamic_batching`,
    /// requests run one by one in arrival order on whichever instance is
    /// free, as with Triton's default scheduler. With `dynamic_batching` on
    /// a model that does not batch (`max_batch_size: 0`), requests still
    /// run one by one, but with its priority levels, queue policies and
    /// ordering, as Triton runs them.
    ///
    /// A sequence model's requests (`sequence_batching`) are batched with
    /// its strategy's delay, preferred sizes and ordering; its sequence
    /// batcher ([`crate::sequence`]) sends at most one request per sequence
    /// at a time, so a batch never holds two requests of one sequence.
    pub fn from_config(config: &ModelConfig) -> Self {
        let max_batch_size = usize::try_from(config.max_batch_size).unwrap_or(0);
        let policy = match &config.scheduling_choice {
            Some(SchedulingChoice::DynamicBatching(batching)) => Self::dynamic(max_batch_size, batching),
            Some(SchedulingChoice::SequenceBatching(sequences)) => {
                Self::dynamic(max_batch_size, &crate::sequence::dynamic_batching(sequences))
            }
            _ => Self::unbatched(max_batch_size),
        };
        Self { ragged: RaggedBatching::from_config(config), ..policy }
    }

    fn unbatched(max_batch_size: usize) -> Self {
        Self {
            max_batch_size,
            dynamic: None,
            preserve_ordering: false,
            levels: PriorityLevels::single(),
            default_level: 1,
            ragged: RaggedBatching::default(),
        }
    }

    fn dynamic(max_batch_size: usize, batching: &ModelDynamicBatching) -> Self {
        // Triton reads the per-level policies only when there are several
        // levels.
        let own_policies = if batching.priority_levels > 0 {
            batching
                .priority_queue_policy
                .iter()
                .map(|(&level, policy)| (level, QueuePolicy::from_config(Some(policy))))
                .collect()
        } else {
            BTreeMap::new()
        };
        let levels = PriorityLevels::new(
            batching.priority_levels,
            QueuePolicy::from_config(batching.default_queue_policy.as_ref()),
            own_policies,
        );
        // The configuration check requires a default level in range whenever
        // there are several levels; with one level it is that level.
        let default_level = batching.default_priority_level.clamp(1, levels.count());
        let mut preferred: Vec<usize> = batching
            .preferred_batch_size
            .iter()
            .filter_map(|&size| usize::try_from(size).ok())
            .filter(|&size| size > 0 && size <= max_batch_size)
            .collect();
        preferred.sort_unstable();
        preferred.dedup();
        let dynamic = (max_batch_size > 0).then(|| DynamicBatching {
            preferred_batch_sizes: preferred,
            max_queue_delay: Duration::from_micros(batching.max_queue_delay_microseconds),
        });
        Self {
            max_batch_size,
            dynamic,
            preserve_ordering: batching.preserve_ordering,
            levels,
            default_level,
            ragged: RaggedBatching::default(),
        }
    }

    /// The 1-based level for a request's `priority` parameter: 0, or a
    /// value past the last level, means the default level (as in Triton).
    pub fn level_for(&self, priority: Option<u64>) -> u64 {
        match priority {
            Some(priority) if (1..=self.levels.count()).contains(&priority) => priority,
            _ => self.default_level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_text_format;

    #[test]
    fn reads_tritons_dynamic_batching_settings() {
        // Only the reading is tested here: check_config would refuse this
        // configuration (a preferred size above max_batch_size,
        // preserve_ordering with priority levels).
        let config = parse_text_format(
            r#"max_batch_size: 32
               dynamic_batching {
                 preferred_batch_size: [ 16, 8, 64 ]
                 max_queue_delay_microseconds: 2000
                 preserve_ordering: true
                 priority_levels: 3
                 default_priority_level: 2
                 default_queue_policy { max_queue_size: 4 default_timeout_microseconds: 500 allow_timeout_override: true }
                 priority_queue_policy { key: 1 value { timeout_action: DELAY default_timeout_microseconds: 100 } }
               }"#,
        )
        .unwrap();
        let policy = SchedulingPolicy::from_config(&config);
        let dynamic = policy.dynamic.as_ref().unwrap();
        assert_eq!(dynamic.preferred_batch_sizes, vec![8, 16]);
        assert_eq!(dynamic.max_queue_delay, Duration::from_micros(2000));
        assert!(policy.preserve_ordering);
        assert_eq!(policy.levels.count(), 3);
        assert_eq!(policy.levels.policy(1).timeout_action, TimeoutAction::Delay);
        assert_eq!(policy.levels.policy(1).max_queue_size, 0);
        assert_eq!(policy.levels.policy(2).max_queue_size, 4);
        assert_eq!(policy.levels.policy(3).default_timeout, Some(Duration::from_micros(500)));
        assert_eq!(
            (policy.level_for(None), policy.level_for(Some(0)), policy.level_for(Some(1)), policy.level_for(Some(9))),
            (2, 2, 1, 2)
        );
    }

    #[test]
    fn a_sequence_model_batches_with_its_strategys_settings() {
        let policy = |strategy: &str| {
            let config = format!("max_batch_size: 8 sequence_batching {{ {strategy} }}");
            SchedulingPolicy::from_config(&parse_text_format(&config).unwrap())
        };
        let oldest =
            policy("oldest { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 300 preserve_ordering: true }");
        let dynamic = oldest.dynamic.as_ref().unwrap();
        assert_eq!(
            (dynamic.preferred_batch_sizes.clone(), dynamic.max_queue_delay),
            (vec![4], Duration::from_micros(300))
        );
        assert!(oldest.preserve_ordering);
        let direct = policy("direct { max_queue_delay_microseconds: 700 }");
        let dynamic = direct.dynamic.as_ref().unwrap();
        assert_eq!(
            (dynamic.preferred_batch_sizes.clone(), dynamic.max_queue_delay),
            (vec![], Duration::from_micros(700))
        );
        assert!(!direct.preserve_ordering);
        assert_eq!(policy("").dynamic.unwrap().max_queue_delay, Duration::ZERO);
    }

    #[test]
    fn no_dynamic_batching_means_one_request_at_a_time() {
        let policy = SchedulingPolicy::from_config(&parse_text_format("max_batch_size: 8").unwrap());
        assert_eq!(policy.dynamic, None);
        assert_eq!(policy.levels.count(), 1);
        assert_eq!(policy.level_for(Some(3)), 1);
    }

    #[test]
    fn a_model_that_does_not_batch_keeps_its_queue_settings() {
        let config = parse_text_format(
            "max_batch_size: 0
             dynamic_batching { preserve_ordering: true default_queue_policy { max_queue_size: 3 } }",
        )
        .unwrap();
        let policy = SchedulingPolicy::from_config(&config);
        assert_eq!(policy.dynamic, None);
        assert!(policy.preserve_ordering);
        assert_eq!(policy.levels.policy(1).max_queue_size, 3);
    }

    #[test]
    fn the_largest_number_of_levels_costs_nothing() {
        // Triton's own tests declare 2^64 - 1 levels.
        let config = parse_text_format(
            "max_batch_size: 4
             dynamic_batching {
               priority_levels: 18446744073709551615
               default_priority_level: 4294967296
               priority_queue_policy { key: 18446744073709551615 value { max_queue_size: 2 } }
             }",
        )
        .unwrap();
        let policy = SchedulingPolicy::from_config(&config);
        assert_eq!(policy.levels.count(), u64::MAX);
        assert_eq!((policy.level_for(None), policy.level_for(Some(u64::MAX))), (4_294_967_296, u64::MAX));
        assert_eq!(policy.levels.policy(u64::MAX).max_queue_size, 2);
        assert_eq!(policy.levels.policy(7).max_queue_size, 0);
    }

    #[test]
    fn per_level_policies_need_several_levels() {
        let config = parse_text_format(
            "max_batch_size: 4 dynamic_batching { priority_queue_policy { key: 1 value { max_queue_size: 2 } } }",
        )
        .unwrap();
        assert_eq!(SchedulingPolicy::from_config(&config).levels.policy(1).max_queue_size, 0);
    }

    #[test]
    fn a_request_may_only_shorten_its_timeout_when_allowed() {
        let us = Duration::from_micros;
        let mut policy = QueuePolicy {
            max_queue_size: 0,
            default_timeout: Some(us(500)),
            allow_timeout_override: true,
            timeout_action: TimeoutAction::Reject,
        };
        assert_eq!(policy.timeout_for(Some(us(100))), Some(us(100)));
        assert_eq!(policy.timeout_for(Some(us(900))), Some(us(500)));
        assert_eq!(policy.timeout_for(None), Some(us(500)));
        // 0 is what Triton's clients send for "no timeout of my own".
        assert_eq!(policy.timeout_for(Some(Duration::ZERO)), Some(us(500)));
        policy.allow_timeout_override = false;
        assert_eq!(policy.timeout_for(Some(us(100))), Some(us(500)));
        policy.default_timeout = None;
        policy.allow_timeout_override = true;
        assert_eq!(policy.timeout_for(Some(us(100))), None);
    }
}
