//! The panic handler: writes `guest panicked at <file:line:column>:
//! <message>` to stderr as one line, which the host logs, then traps (the
//! host answers 500 and drops the instance, as for a guest built with std).
//!
//! The message is formatted into a buffer on the stack: a panic may come
//! from a failed allocation, so this allocates nothing.

use crate::bindings::wasi::cli::stderr::get_stderr;
use core::fmt::Write;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut line = Line::default();
    let _ = match info.location() {
        Some(at) => write!(line, "guest panicked at {at}: {}", info.message()),
        None => write!(line, "guest panicked: {}", info.message()),
    };
    let _ = get_stderr().blocking_write_and_flush(line.ended());
    core::arch::wasm32::unreachable()
}

/// A line of at most [`Line::CAPACITY`] bytes, newline included; what does
/// not fit is dropped.
struct Line {
    bytes: [u8; Line::CAPACITY],
    len: usize,
}

impl Line {
    /// Below WASI's 4096-byte limit for one `blocking-write-and-flush`.
    const CAPACITY: usize = 1024;

    /// The line with its newline, which replaces the last byte when full.
    fn ended(&mut self) -> &[u8] {
        let end = self.len.min(Line::CAPACITY - 1);
        self.bytes[end] = b'\n';
        &self.bytes[..=end]
    }
}

impl Default for Line {
    fn default() -> Line {
        Line { bytes: [0; Line::CAPACITY], len: 0 }
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let taken = s.len().min(Line::CAPACITY - self.len);
        self.bytes[self.len..self.len + taken].copy_from_slice(&s.as_bytes()[..taken]);
        self.len += taken;
        Ok(())
    }
}
