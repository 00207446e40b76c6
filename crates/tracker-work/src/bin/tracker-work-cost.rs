//! Prints the native cost of one client-tick of the tracker's work, in
//! nanoseconds (`cargo xtask bench-sockets` runs it in release).

use std::time::Instant;

fn main() {
    let iterations = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(tracker_work::DEFAULT_ITERATIONS);
    // Warm up, then time about a second.
    let mut sink = 0.0;
    for seed in 0..200 {
        sink += tracker_work::work(iterations, seed);
    }
    let started = Instant::now();
    let mut ticks = 0u64;
    while started.elapsed().as_secs_f64() < 1.0 {
        for _ in 0..100 {
            sink += tracker_work::work(iterations, ticks);
            ticks += 1;
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / ticks as f64;
    println!("{ns:.0}");
    eprintln!("({ticks} client-ticks; checksum {sink:.3})");
}
