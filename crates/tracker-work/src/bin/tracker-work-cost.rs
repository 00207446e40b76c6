//! Prints the native cost of one client-tick of the tracker's work, in
//! nanoseconds of one CPU's time (`cargo xtask bench-sockets` runs it in
//! release).
//!
//! `tracker-work-cost [--threads N] [ITERATIONS]`: N (default 1) copies of
//! the work run at once, each on its own thread, and the figure is a
//! client-tick's cost on one of them. With one thread per CPU, that is what
//! a client-tick costs when every CPU works, as in a host under load: the
//! CPUs of a machine share caches, memory bandwidth and a power budget (and,
//! on a virtual machine, perhaps the cores of one physical CPU), so each may
//! run slower than a CPU working alone.

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// How long each thread times the work, after its warm-up.
const TIMED: Duration = Duration::from_secs(1);

fn main() {
    let (mut iterations, mut threads) = (tracker_work::DEFAULT_ITERATIONS, 1usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                let count = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0);
                threads = count.unwrap_or_else(|| usage("--threads wants a count above 0"));
            }
            other => iterations = other.parse().unwrap_or_else(|_| usage(&format!("not a number: {other}"))),
        }
    }
    // All threads start timing together, so that each is timed while the others work.
    let start = Barrier::new(threads);
    let runs: Vec<Run> = if threads == 1 {
        // On the main thread: where no thread can be spawned (wasm32-wasip2), one still runs.
        vec![time(iterations, &start)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| time(iterations, &start))).collect();
            handles.into_iter().map(|h| h.join().expect("a timing thread panicked")).collect()
        })
    };
    let ticks: u64 = runs.iter().map(|r| r.ticks).sum();
    let busy: f64 = runs.iter().map(|r| r.elapsed.as_nanos() as f64).sum();
    println!("{:.0}", busy / ticks as f64);
    let checksum: f64 = runs.iter().map(|r| r.checksum).sum();
    eprintln!("({ticks} client-ticks on {threads} thread(s); checksum {checksum:.3})");
}

/// Says what is wrong with the arguments, and how to give them, and exits with status 2.
fn usage(problem: &str) -> ! {
    eprintln!("tracker-work-cost: {problem}\nusage: tracker-work-cost [--threads N] [ITERATIONS]");
    std::process::exit(2);
}

/// One thread's timing.
struct Run {
    ticks: u64,
    elapsed: Duration,
    /// The sum of the results, printed so that the work cannot be optimised away.
    checksum: f64,
}

/// Warms up, waits for the other threads, then times about [`TIMED`] of client-ticks.
fn time(iterations: u32, start: &Barrier) -> Run {
    let mut checksum = 0.0;
    for seed in 0..200 {
        checksum += tracker_work::work(iterations, seed);
    }
    start.wait();
    let started = Instant::now();
    let mut ticks = 0u64;
    while started.elapsed() < TIMED {
        for _ in 0..100 {
            checksum += tracker_work::work(iterations, ticks);
            ticks += 1;
        }
    }
    Run { ticks, elapsed: started.elapsed(), checksum }
}
