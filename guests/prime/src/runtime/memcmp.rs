//! `memcmp`: the one C library function that the compiled code calls and
//! that wasm has no instruction for (copies and fills compile to
//! `memory.copy` and `memory.fill`). Slice and string comparisons call it;
//! guests built with std get wasi-libc's.

/// Compares `n` bytes: negative, zero or positive, as C's `memcmp`.
///
/// # Safety
/// `a` and `b` are valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}
