//! How the kernel schedules a load client's threads.
//!
//! A swarm often shares the machine with the server it measures (the
//! benchmarks, a laptop, a small node). Under Linux's default policy every
//! event that reaches a sleeping swarm thread may preempt the server's thread
//! on that core: at 250 socket.io clients that was about 11,000 forced
//! context switches a second in the host, and the swarm woke once per event.
//! `SCHED_BATCH` keeps the fair share of CPU time but gives up wake-up
//! preemption, so the swarm runs when a core is free or its time slice
//! comes, and then handles what arrived meanwhile in one go. On a machine of
//! its own (a Pod on another node) it changes nothing.

use clap::ValueEnum;

/// The scheduling policy for this process's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheduling {
    /// `SCHED_BATCH`: fair share, no wake-up preemption of others.
    Batch,
    /// Linux's default policy (`SCHED_OTHER`).
    Normal,
}

impl Scheduling {
    fn policy(self) -> libc::c_int {
        match self {
            Scheduling::Batch => libc::SCHED_BATCH,
            Scheduling::Normal => libc::SCHED_OTHER,
        }
    }
}

/// Puts the calling thread under `scheduling`; threads it starts afterwards
/// inherit it, so call this before the async runtime starts its workers.
pub fn apply(scheduling: Scheduling) -> std::io::Result<()> {
    // The system call, not libc's wrapper: musl's wrapper (the image's
    // static build) always fails with ENOSYS. Zeroed rather than a literal:
    // musl's `sched_param` has more fields than glibc's, and the kernel reads
    // only the first, the priority (0, the only one these policies take).
    // SAFETY: all-zero bytes are a valid `sched_param`; it outlives the call;
    // pid 0 is the calling thread.
    let result = unsafe {
        let param = std::mem::zeroed::<libc::sched_param>();
        libc::syscall(libc::SYS_sched_setscheduler, 0, scheduling.policy(), &param as *const libc::sched_param)
    };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The calling thread's policy (the `sched_getscheduler` system call).
pub fn current_policy() -> libc::c_int {
    // SAFETY: no pointers; pid 0 is the calling thread.
    unsafe { libc::syscall(libc::SYS_sched_getscheduler, 0) as libc::c_int }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_started_after_apply_inherit_the_policy() {
        // In a thread of its own, so the test harness's threads keep theirs.
        std::thread::spawn(|| {
            apply(Scheduling::Batch).unwrap();
            assert_eq!(current_policy(), libc::SCHED_BATCH);
            let child = std::thread::spawn(current_policy).join().unwrap();
            assert_eq!(child, libc::SCHED_BATCH, "a thread started afterwards is batch too");
            apply(Scheduling::Normal).unwrap();
            assert_eq!(current_policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
