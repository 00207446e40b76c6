//! `scalelab`: runs WebAssembly workloads for Kubernetes scaling experiments.
//! A library plus a thin binary (`main.rs`), so that the runtime and the
//! serving side can be tested in-process. See ARCHITECTURE.md for the map.
//!
//! - [`runtime`]: the wasm runtime (engine, guests, warm instances, calls
//!   under limits, the live guest, host services); touches no socket.
//! - [`serve`]: `scalelab serve`, every listener and what runs on it (HTTP,
//!   sessions over TCP and socket.io, the admin API, swaps).
//! - [`clients`]: the load clients (`scalelab load`, `scalelab swarm`), which
//!   share nothing with the runtime.
//! - [`protocol`]: wire formats both sides speak.
//! - The rest is process plumbing: command line, logs, metrics, signals,
//!   worker count, per-thread slots, file-descriptor limit, the binary's allocator.

pub mod allocator;
pub mod backtrace;
pub mod cli;
pub mod clients;
pub mod compile;
pub mod fd_limit;
pub mod logging;
pub mod metrics;
pub mod process_stats;
pub mod protocol;
pub mod runtime;
pub mod serve;
pub mod shutdown;
pub mod thread_slot;
pub mod workers;
