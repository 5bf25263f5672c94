//! The background loop that refreshes the machine-wide figures (CPU and
//! GPU) every `--metrics-interval-ms`, so that every scrape sees the same
//! window whoever scrapes and how often, and no scrape waits on a reading.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::shutdown::ShutdownSignal;

/// Runs `poll` after `first`, then every `interval` (a slow reading
/// delays the next rather than piling up), until `shutdown` fires.
pub(super) fn spawn_polling<F, Fut>(first: Duration, interval: Duration, shutdown: ShutdownSignal, mut poll: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(Instant::now() + first, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stopped = shutdown.fired();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = ticker.tick() => {}
            }
            poll().await;
        }
    });
}
