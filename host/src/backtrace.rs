//! Keeps `RUST_BACKTRACE=1` from slowing the serving path.
//!
//! With its default `backtrace` feature, wasmtime 48 captures a std backtrace
//! whenever it creates a `wasmtime::Error`, and it creates one when a
//! component `Store` is dropped: with `RUST_BACKTRACE=1` that is a stack walk
//! per request, measured at up to 7x fewer requests per second. Two defences:
//!
//! 1. `host/Cargo.toml` builds wasmtime with `default-features = false` and
//!    without `backtrace`, so wasmtime errors capture nothing;
//! 2. here, at start, the host sets `RUST_LIB_BACKTRACE=0` unless the user set
//!    it. It takes precedence over `RUST_BACKTRACE` for library captures only
//!    (`std::backtrace::Backtrace::capture`, used by wasmtime and anyhow), so
//!    those stay off even if a dependency turns the feature back on, while
//!    panics still print backtraces as `RUST_BACKTRACE` asks.

/// Must run first in `main`, before any thread starts (it edits the
/// environment) and before any capture (std reads the variable once).
/// Returns the user's own `RUST_LIB_BACKTRACE`, left in place, if any.
pub fn disable_library_captures() -> Option<String> {
    if let Ok(value) = std::env::var("RUST_LIB_BACKTRACE") {
        return Some(value);
    }
    // SAFETY: called at the top of `main`, while the process has one thread.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    None
}
