//! Triton's CPU metrics: the busy share of all cores over the last polling
//! interval (from `/proc/stat`), and the machine's memory in use (from
//! `/proc/meminfo`), computed as Triton computes them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::polling::spawn_polling;
use crate::shutdown::ShutdownSignal;

/// The aggregate CPU time of all cores, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    /// Ticks spent on anything but idling or waiting for I/O.
    busy: u64,
    /// All ticks.
    total: u64,
}

/// Reads the `cpu` line of `/proc/stat` (user, nice, system, idle, iowait,
/// irq, softirq, steal; guest time is already part of user and nice).
fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|line| line.split_whitespace().next() == Some("cpu"))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.try_into().ok()?;
    let waiting = idle + iowait;
    let total = user + nice + system + waiting + irq + softirq + steal;
    Some(CpuTimes { busy: total - waiting, total })
}

/// The busy share of the ticks between two readings, from 0 to 1.
fn utilization(earlier: CpuTimes, later: CpuTimes) -> f64 {
    let total = later.total.saturating_sub(earlier.total);
    if total == 0 {
        return 0.0;
    }
    (later.busy.saturating_sub(earlier.busy) as f64 / total as f64).min(1.0)
}

/// The machine's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// All of it (`MemTotal`).
    pub total_bytes: u64,
    /// In use: all of it less what is available (`MemAvailable`).
    pub used_bytes: u64,
}

fn parse_meminfo(meminfo: &str) -> Option<MemoryUsage> {
    let kibibytes = |key: &str| {
        let line = meminfo.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?;
        line.split_whitespace().next()?.parse::<u64>().ok().map(|value| value * 1024)
    };
    let (total_bytes, available_bytes) = (kibibytes("MemTotal")?, kibibytes("MemAvailable")?);
    Some(MemoryUsage { total_bytes, used_bytes: total_bytes.saturating_sub(available_bytes) })
}

/// The memory in use now, if `/proc/meminfo` can be read.
pub fn memory_usage() -> Option<MemoryUsage> {
    std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(parse_meminfo)
}

fn read_cpu_times() -> Option<CpuTimes> {
    std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(parse_cpu_times)
}

/// The CPU utilization over the last polling interval, updated in the
/// background every `--metrics-interval-ms`, so that every scrape sees the
/// same window whoever scrapes and how often. As in Triton it reads 0 until
/// the first interval ends.
#[derive(Debug, Default)]
pub struct CpuUtilization {
    latest: Mutex<f64>,
}

impl CpuUtilization {
    /// Starts sampling `/proc/stat` every `interval` until `shutdown`
    /// fires; `None` where it cannot be read (not Linux).
    pub fn start(interval: Duration, shutdown: ShutdownSignal) -> Option<Arc<Self>> {
        let mut previous = read_cpu_times()?;
        let sampled = Arc::new(Self::default());
        let updated = Arc::clone(&sampled);
        spawn_polling(interval, interval, shutdown, move || {
            // /proc/stat stays readable once it was; if it ever is not, the
            // last figure stands.
            if let Some(current) = read_cpu_times() {
                *updated.latest.lock().unwrap_or_else(PoisonError::into_inner) = utilization(previous, current);
                previous = current;
            }
            std::future::ready(())
        });
        Some(sampled)
    }

    /// The utilization of the last complete interval, from 0 to 1.
    pub fn latest(&self) -> f64 {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_count_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 20 30 500 50 5 5 10 7 0\ncpu0 50 10 15 250 25 2 3 5 3 0\nintr 1 2 3\n";
        assert_eq!(parse_cpu_times(stat), Some(CpuTimes { busy: 170, total: 720 }));
        assert_eq!(parse_cpu_times("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_cpu_times("cpu 1 2 x 4 5 6 7 8\n"), None);
        assert_eq!(parse_cpu_times("cpu 1 2 3\n"), None);
    }

    #[test]
    fn utilization_is_the_busy_share_of_the_interval() {
        let earlier = CpuTimes { busy: 100, total: 1000 };
        assert_eq!(utilization(earlier, CpuTimes { busy: 150, total: 1200 }), 0.25);
        assert_eq!(utilization(earlier, earlier), 0.0);
    }

    #[test]
    fn memory_in_use_is_total_less_available() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n";
        let usage = parse_meminfo(meminfo).unwrap();
        assert_eq!(usage, MemoryUsage { total_bytes: 24_000_000 * 1024, used_bytes: 4_000_000 * 1024 });
        assert_eq!(parse_meminfo("MemTotal: 10 kB\n"), None);
    }

    #[test]
    fn this_machine_reports_its_memory() {
        let usage = memory_usage().expect("/proc/meminfo is readable on Linux");
        assert!(usage.total_bytes > usage.used_bytes && usage.used_bytes > 0, "{usage:?}");
        assert!(read_cpu_times().is_some());
    }
}
