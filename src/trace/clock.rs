//! Trace timestamps on Triton's clock.

use std::time::Instant;

/// Turns [`Instant`]s into nanoseconds of the system's monotonic clock
/// (`CLOCK_MONOTONIC`, the steady clock Triton's traces use), so that a
/// trace's timestamps compare with those of other processes on the host.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
    origin_ns: u64,
}

impl MonotonicClock {
    /// Reads the monotonic clock once, beside an [`Instant`].
    pub fn new() -> Self {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid timespec for clock_gettime to fill, and
        // CLOCK_MONOTONIC exists on every Linux; should it fail, `now`
        // stays zero and timestamps count from this moment instead.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let origin = Instant::now();
        let origin_ns = (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64);
        Self { origin, origin_ns }
    }

    /// `moment` in nanoseconds of the monotonic clock.
    pub fn nanoseconds(&self, moment: Instant) -> u64 {
        if moment >= self.origin {
            self.origin_ns.saturating_add(moment.duration_since(self.origin).as_nanos() as u64)
        } else {
            self.origin_ns.saturating_sub(self.origin.duration_since(moment).as_nanos() as u64)
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn later_moments_have_larger_timestamps_by_their_distance() {
        let clock = MonotonicClock::new();
        let moment = Instant::now();
        let later = moment + Duration::from_micros(250);
        assert_eq!(clock.nanoseconds(later) - clock.nanoseconds(moment), 250_000);
        let earlier = clock.origin - Duration::from_micros(5);
        assert_eq!(clock.nanoseconds(clock.origin) - clock.nanoseconds(earlier), 5_000);
    }
}
