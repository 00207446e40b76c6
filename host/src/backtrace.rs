//! Keeps `RUST_BACKTRACE=1` from slowing the serving path.
//!
//! With `RUST_BACKTRACE` set, `std::backtrace::Backtrace::capture` walks the
//! stack every time an `anyhow` error is created, and wasmtime 48 creates one
//! when a component `Store` is dropped: one capture per request, measured here
//! at up to 7x fewer requests per second. `RUST_LIB_BACKTRACE` takes precedence
//! over `RUST_BACKTRACE` for library captures only, so setting it to `0` turns
//! those captures off while panics still print backtraces as asked.

/// Must run first in `main`, before any thread starts (it edits the
/// environment) and before any capture (std reads the variable once).
/// Returns whether the user's own `RUST_LIB_BACKTRACE` was left in place.
pub fn disable_library_captures() -> Option<String> {
    if let Ok(value) = std::env::var("RUST_LIB_BACKTRACE") {
        return Some(value);
    }
    // SAFETY: called at the top of `main`, while the process has one thread.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    None
}
