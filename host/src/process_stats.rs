//! This process's resident memory and CPU time, from `/proc/self`: for the
//! `metrics.process-stats` import (which guests use in status lines), the
//! host's CPU metric, and the CPU a swarm reports it took.

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: u64 = 4096;

/// (resident bytes, user + system CPU seconds); zeros where unavailable.
pub fn read() -> (u64, f64) {
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE_SIZE);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may contain spaces.
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0);
    (resident, cpu)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_something_plausible() {
        let (resident, cpu) = super::read();
        assert!(resident > 1 << 20, "{resident}");
        assert!(cpu >= 0.0);
    }
}
