//! A process's resident memory and CPU time, from /proc: what the benches
//! and the soak read of the host they run; and the CPU time of a child run
//! to completion (the load client), from its own resource usage.

use anyhow::{Context, Result, ensure};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};

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

/// Runs `command` to completion, as `Command::output` does, and returns the
/// CPU time (user + system, in seconds) that this child used: its resource
/// usage, taken when it is reaped (`wait4`). The CPU of the caller's other
/// children (the psql sampler beside a load run) is not counted, as it would
/// be in the caller's `RUSAGE_CHILDREN`.
pub fn output_with_cpu(command: &mut Command) -> Result<(Output, f64)> {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let errors = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stderr.read_to_end(&mut bytes).map(|_| bytes)
    });
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).context("reading the child's output")?;
    let err = errors.join().expect("the stderr reader panicked").context("reading the child's errors")?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: `rusage` is plain data, and all-zero is a valid value of it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: `pid` is this process's own unreaped child, and both out-pointers are valid.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break reaped;
    };
    ensure!(reaped == pid, "waiting for the child {pid}: {}", std::io::Error::last_os_error());
    // Reaped here: `child` is not waited for again (dropping a Child does not wait).
    drop(child);
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    Ok((Output { status: ExitStatus::from_raw(status), stdout: out, stderr: err }, cpu))
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

    #[test]
    fn a_childs_cpu_is_its_own_not_that_of_its_siblings() {
        const BURN: &str = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo burned";
        // A child that mostly sleeps, measured while a sibling burns CPU and
        // is reaped: counted by `RUSAGE_CHILDREN`, the sibling would be in it.
        let sleeper = std::thread::spawn(|| output_with_cpu(Command::new("sh").args(["-c", "sleep 1; echo slept"])).unwrap());
        let sibling = Command::new("sh").args(["-c", BURN]).output().unwrap();
        assert_eq!(sibling.stdout, b"burned\n");
        let (slept, slept_cpu) = sleeper.join().unwrap();
        assert!(slept.status.success());
        assert_eq!(slept.stdout, b"slept\n");
        let (burned, burned_cpu) = output_with_cpu(Command::new("sh").args(["-c", BURN])).unwrap();
        assert_eq!(burned.stdout, b"burned\n");
        assert!(burned_cpu >= 0.05, "the burning child used {burned_cpu} s");
        assert!(slept_cpu < burned_cpu / 2.0, "the sleeper is counted with {slept_cpu} s against {burned_cpu} s of burning");
        // An exit status comes through.
        let (failed, _) = output_with_cpu(Command::new("sh").args(["-c", "echo no >&2; exit 3"])).unwrap();
        assert_eq!((failed.status.code(), failed.stderr.as_slice()), (Some(3), b"no\n".as_slice()));
    }
}
