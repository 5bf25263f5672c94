//! How a model version schedules requests, read from its configuration:
//! whether and how it batches, and the queue policy of each priority level.

use std::time::Duration;

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
    fn from_config(policy: Option<&ModelQueuePolicy>) -> Self {
        let Some(policy) = policy else {
            return Self {
                max_queue_size: 0,
                default_timeout: None,
                allow_timeout_override: false,
                timeout_action: TimeoutAction::Reject,
            };
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
    /// when the policy allows it, never lengthen it. Without a default
    /// there is nothing to shorten, and the request waits as long as it
    /// takes: Triton documents the override as "less than the default
    /// timeout value", which is 0 there, and its queue ignores the
    /// parameter then, so clients that send one keep working unchanged.
    pub fn timeout_for(&self, requested: Option<Duration>) -> Option<Duration> {
        let default = self.default_timeout?;
        match requested.filter(|_| self.allow_timeout_override) {
            Some(requested) => Some(default.min(requested)),
            None => Some(default),
        }
    }
}

/// Triton's dynamic batcher settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicBatching {
    /// Batch sizes worth sending as soon as they are reached, ascending.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest request may wait for a batch to fill.
    pub max_queue_delay: Duration,
    /// Answer requests in the order they arrived.
    pub preserve_ordering: bool,
}

/// How one model version schedules its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingPolicy {
    /// Largest batch the model takes; 0 when it has no batch dimension.
    pub max_batch_size: usize,
    /// Dynamic batching, when configured (and the model batches).
    pub dynamic: Option<DynamicBatching>,
    /// Queue policy per priority level, level 1 (the highest) first.
    pub levels: Vec<QueuePolicy>,
    /// Level of requests that give no valid priority (1-based).
    pub default_level: usize,
}

impl SchedulingPolicy {
    /// The policy a configuration describes. Without `dynamic_batching`,
    /// requests run one by one in arrival order on whichever instance is
    /// free, as with Triton's default scheduler.
    pub fn from_config(config: &ModelConfig) -> Self {
        let max_batch_size = usize::try_from(config.max_batch_size).unwrap_or(0);
        let Some(SchedulingChoice::DynamicBatching(batching)) = &config.scheduling_choice else {
            return Self::unbatched(max_batch_size);
        };
        Self::dynamic(max_batch_size, batching)
    }

    fn unbatched(max_batch_size: usize) -> Self {
        Self { max_batch_size, dynamic: None, levels: vec![QueuePolicy::from_config(None)], default_level: 1 }
    }

    fn dynamic(max_batch_size: usize, batching: &ModelDynamicBatching) -> Self {
        let level_count = batching.priority_levels.max(1) as usize;
        let levels = (1..=level_count as u64)
            .map(|level| {
                let policy = batching.priority_queue_policy.get(&level).or(batching.default_queue_policy.as_ref());
                QueuePolicy::from_config(policy)
            })
            .collect();
        // The configuration check requires a default level in range whenever
        // there are several levels; with one level it is that level.
        let default_level = (batching.default_priority_level as usize).clamp(1, level_count);
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
            preserve_ordering: batching.preserve_ordering,
        });
        Self { max_batch_size, dynamic, levels, default_level }
    }

    /// The 1-based level for a request's `priority` parameter: 0, or a
    /// value past the last level, means the default level (as in Triton).
    pub fn level_for(&self, priority: Option<u64>) -> usize {
        match priority {
            Some(priority) if priority >= 1 && priority as usize <= self.levels.len() => priority as usize,
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
        assert!(dynamic.preserve_ordering);
        assert_eq!(policy.levels.len(), 3);
        assert_eq!(policy.levels[0].timeout_action, TimeoutAction::Delay);
        assert_eq!(policy.levels[0].max_queue_size, 0);
        assert_eq!(policy.levels[1].max_queue_size, 4);
        assert_eq!(policy.levels[2].default_timeout, Some(Duration::from_micros(500)));
        assert_eq!(
            (policy.level_for(None), policy.level_for(Some(0)), policy.level_for(Some(1)), policy.level_for(Some(9))),
            (2, 2, 1, 2)
        );
    }

    #[test]
    fn no_dynamic_batching_means_one_request_at_a_time() {
        let policy = SchedulingPolicy::from_config(&parse_text_format("max_batch_size: 8").unwrap());
        assert_eq!(policy.dynamic, None);
        assert_eq!(policy.levels.len(), 1);
        assert_eq!(policy.level_for(Some(3)), 1);
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
        policy.allow_timeout_override = false;
        assert_eq!(policy.timeout_for(Some(us(100))), Some(us(500)));
        policy.default_timeout = None;
        policy.allow_timeout_override = true;
        assert_eq!(policy.timeout_for(Some(us(100))), None);
    }
}
