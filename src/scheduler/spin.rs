//! Short waits poll instead of sleeping. A thread woken from sleep takes
//! tens of microseconds to run again (about 50 µs on the virtual machines
//! these servers often run on), more than a small model takes to execute,
//! so for the short gaps of a busy or latency-bound model it is cheaper to
//! keep polling for a little while. Every spin is bounded; after it, the
//! thread sleeps as usual.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long an idle instance keeps polling the queue before it sleeps:
/// long enough to catch the next request of a client that sends one as
/// soon as it has its answer.
pub const INSTANCE_SPIN: Duration = Duration::from_micros(250);

/// How long before the end of a wait for a batch to fill an instance
/// stops sleeping and polls instead. After hundreds of microseconds idle a
/// virtual CPU has been handed back to the host, and waking it takes far
/// longer than a short sleep: with a 500 µs delay a lone request took
/// 1.0–1.1 ms sleeping through the wait and 0.65–0.9 ms polling its last
/// 300 µs (150 µs was not always enough).
pub const BATCH_WAIT_SPIN: Duration = Duration::from_micros(300);

/// How few rows a waiting batch may lack for the request that brings it
/// there to wake a sleeping instance, which then polls for the rest. The
/// last requests of a closed-loop client's batch arrive a few microseconds
/// apart, closer together than a sleeping instance takes to wake: on the
/// 2-core benchmark VM a batch went 22–24 µs after its last request when
/// that request woke the instance (BENCHMARKS.md).
pub const FILL_AHEAD_ROWS: usize = 4;

/// How long an instance polls for the next request of a batch that is
/// almost full; if none comes, it sleeps until the batch is complete.
pub const FILL_POLL: Duration = Duration::from_micros(50);

/// How long a caller polls for its answer before it sleeps.
pub const CALLER_SPIN: Duration = Duration::from_micros(100);

/// Callers only poll when the model's recent executions were shorter than
/// this; for slower models the wake-up cost does not matter.
pub const CALLER_SPIN_BELOW: Duration = Duration::from_micros(50);

/// Polls `ready` until it returns true or `limit` passes; returns whether
/// it did.
pub fn spin_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// Polls `answer` for up to `limit`; returns it if it came. Between polls
/// the task yields, so the worker thread goes on serving other connections
/// and requests instead of spinning, and it never parks, so an answer needs
/// no thread wake-up to be seen.
pub async fn poll_briefly<T>(answer: &mut oneshot::Receiver<T>, limit: Duration) -> Option<T> {
    let until = Instant::now() + limit;
    loop {
        match answer.try_recv() {
            Ok(value) => return Some(value),
            Err(oneshot::error::TryRecvError::Closed) => return None,
            Err(oneshot::error::TryRecvError::Empty) if Instant::now() >= until => return None,
            Err(oneshot::error::TryRecvError::Empty) => tokio::task::yield_now().await,
        }
    }
}

/// A moving average of how long executions take, shared between threads.
#[derive(Debug, Default)]
pub struct RecentDuration(AtomicU64);

impl RecentDuration {
    /// Adds a sample, weighted 1/8 against the history.
    pub fn record(&self, sample: Duration) {
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        let old = self.0.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { old - old / 8 + sample / 8 };
        self.0.store(new, Ordering::Relaxed);
    }

    /// The current average (zero before any sample).
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_stops_when_ready_or_out_of_time() {
        let mut polls = 0;
        assert!(spin_until(Duration::from_secs(5), || {
            polls += 1;
            polls == 3
        }));
        let started = Instant::now();
        assert!(!spin_until(Duration::from_millis(2), || false));
        assert!(started.elapsed() >= Duration::from_millis(2));
    }

    #[tokio::test]
    async fn a_brief_poll_returns_an_answer_or_gives_up() {
        let (sender, mut answer) = oneshot::channel();
        let sent = tokio::spawn(async move { sender.send(7) });
        assert_eq!(poll_briefly(&mut answer, Duration::from_secs(5)).await, Some(7));
        assert!(sent.await.unwrap().is_ok());
        let (_sender, mut silent) = oneshot::channel::<u8>();
        let started = Instant::now();
        assert_eq!(poll_briefly(&mut silent, Duration::from_millis(2)).await, None);
        assert!(started.elapsed() >= Duration::from_millis(2));
    }

    #[test]
    fn the_average_follows_recent_samples() {
        let recent = RecentDuration::default();
        assert_eq!(recent.get(), Duration::ZERO);
        recent.record(Duration::from_micros(80));
        assert_eq!(recent.get(), Duration::from_micros(80));
        for _ in 0..50 {
            recent.record(Duration::from_micros(8));
        }
        assert!(recent.get() < Duration::from_micros(10), "{:?}", recent.get());
    }
}
