//! A process's resident memory and CPU time, from /proc: what the benches
//! and the soak read of the host they run.

use anyhow::{Context, Result};

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    Ok(stat(pid)?.cpu_seconds)
}

/// CPU time of a process and of every live process below it, in seconds:
/// a server whose work runs in child processes (gunicorn's workers) is
/// counted whole.
pub fn tree_cpu_seconds(pid: u32) -> Result<f64> {
    let all: Vec<(u32, Stat)> = std::fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat(p).ok()?)))
        .collect();
    let mut tree = vec![pid];
    let mut total = cpu_seconds(pid)?;
    // A walk down from `pid` over one snapshot: the order /proc lists processes in does not matter.
    while let Some(parent) = tree.pop() {
        for (child, stat) in all.iter().filter(|(_, s)| s.parent == parent) {
            total += stat.cpu_seconds;
            tree.push(*child);
        }
    }
    Ok(total)
}

/// What this file reads of `/proc/PID/stat`.
struct Stat {
    parent: u32,
    cpu_seconds: f64,
}

fn stat(pid: u32) -> Result<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(')').context("bad stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Stat { parent: fields[1].parse()?, cpu_seconds: ticks as f64 / 100.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_counts_the_cpu_of_its_children() {
        // A child that burns CPU for a while, then waits to be counted.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 30"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while cpu_seconds(pid).unwrap() < 0.05 && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Read before the tree: CPU time only grows, so the tree must hold both.
        let own = cpu_seconds(std::process::id()).unwrap();
        let childs = cpu_seconds(pid).unwrap();
        let tree = tree_cpu_seconds(std::process::id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(childs >= 0.05, "the child burned no CPU: {childs}");
        assert!(tree >= own + childs - 1e-9, "the tree ({tree} s) leaves out the child ({childs} s) of {own} s");
    }
}
