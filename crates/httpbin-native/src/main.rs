//! `httpbin-native [ADDR]` (default `127.0.0.1:0`): serves httpbin's API
//! natively (see the library) on as many worker threads as usable CPUs, as
//! `scalelab serve` does; prints `listening on ADDR` on stdout once bound.
//! Exits with success on SIGINT, as a return from `main` (an instrumented
//! build then writes its profile: see `xtask/src/pgo.rs`).

use std::io::Write;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?;
    runtime.block_on(async {
        tokio::select! {
            // The handler is in place before the server says it listens.
            biased;
            interrupted = tokio::signal::ctrl_c() => interrupted,
            served = serve(&addr) => served,
        }
    })
}

async fn serve(addr: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    httpbin_native::serve(listener).await
}
