//! How many runtime worker threads to start.
//!
//! `std::thread::available_parallelism` already reports what this process may
//! really use on Linux: the CPU affinity mask and the cgroup (v1 and v2) CPU
//! quota, so a pod limited to 1 CPU on a 16-core node gets 1 worker. The result
//! is never below 1.

/// Worker count: the `--workers` override, else the usable CPUs.
pub fn count(requested: Option<u32>) -> usize {
    match requested {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}
