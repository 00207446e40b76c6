//! The process's memory allocator: mimalloc, asked the way it is fastest.
//!
//! A guest call allocates and frees many small host objects (resources,
//! header maps, futures, rows) on every worker thread, which glibc's and
//! above all musl's allocators serve slowly; so the binary allocates with
//! mimalloc (`main.rs` installs [`Allocator`]).
//!
//! The `mimalloc` crate's allocator passes every Rust allocation to
//! `mi_malloc_aligned`, alignment 1 and 8 included. mimalloc 3 serves that
//! through its aligned path, which takes the plain allocation only when the
//! size rounds up to a power of two, and otherwise over-allocates and
//! offsets the block: about 60 instructions where `mi_malloc` takes about 20
//! (cachegrind on the host at `/prime/1`, about 50 allocations per request).
//! This calls the plain functions whenever their blocks already have the
//! alignment asked for, and the aligned ones otherwise.
//!
//! When plain blocks suffice, on a 64-bit target: every mimalloc block is
//! aligned to 8 bytes, and every block of 16 bytes or more to 16 (small size
//! classes are whole double words, larger ones multiples of them, and a
//! page's first block is 16-aligned: `MI_MAX_ALIGN_SIZE`). So an alignment
//! of at most 16 that is no larger than the size is met by `mi_malloc`: the
//! rule the standard library applies to `malloc` too. The test
//! `plain_blocks_have_the_alignment_asked_for` checks it over sizes and
//! alignments.

use libmimalloc_sys::{mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned};
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The largest alignment every plain mimalloc block of at least that size has.
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator (see the module's text).
pub struct Allocator;

/// Whether a plain (unaligned-API) block of `size` bytes has alignment `align`.
fn plain_suffices(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every function hands the layout's size and alignment to mimalloc,
// which returns null or a block of at least that size and alignment (plain
// blocks only where `plain_suffices` holds, see the module's text), and
// frees or grows only blocks it returned.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: plain C allocation calls with a valid size and alignment.
        unsafe {
            if plain_suffices(size, align) { mi_malloc(size) as *mut u8 } else { mi_malloc_aligned(size, align) as *mut u8 }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: as `alloc`.
        unsafe {
            if plain_suffices(size, align) { mi_zalloc(size) as *mut u8 } else { mi_zalloc_aligned(size, align) as *mut u8 }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator; mi_free takes aligned blocks too.
        unsafe { mi_free(ptr as *mut c_void) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        // SAFETY: `ptr` came from this allocator with `layout`; the new block
        // keeps the alignment (plain only when a plain block of the new size has it).
        unsafe {
            if plain_suffices(new_size, align) {
                mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi_realloc_aligned(ptr as *mut c_void, new_size, align) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates, grows and frees blocks of every small size and alignment
    /// through [`Allocator`] (not the test binary's global allocator), and
    /// checks each block's alignment and that its bytes stay its own.
    #[test]
    fn plain_blocks_have_the_alignment_asked_for() {
        let sizes = (1..=512).chain([1000, 4095, 4096, 10_000, 70_000, 1 << 20]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // Several at once, so they come from different places in a page.
                let blocks: Vec<*mut u8> = (0..8)
                    .map(|i| {
                        let zeroed = i % 2 == 0;
                        // SAFETY: a non-zero size; the block is freed below.
                        let p = unsafe { if zeroed { Allocator.alloc_zeroed(layout) } else { Allocator.alloc(layout) } };
                        assert!(!p.is_null() && (p as usize).is_multiple_of(align), "size {size} align {align}: {p:?}");
                        // SAFETY: the block has `size` bytes.
                        let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
                        if zeroed {
                            assert!(bytes.iter().all(|&b| b == 0), "size {size} align {align}: not zeroed");
                        }
                        bytes.fill(i as u8);
                        p
                    })
                    .collect();
                for (i, p) in blocks.into_iter().enumerate() {
                    let grown = size * 2 + 1;
                    // SAFETY: `p` came from `alloc` with `layout`; then freed once.
                    unsafe {
                        let q = Allocator.realloc(p, layout, grown);
                        assert!(
                            !q.is_null() && (q as usize).is_multiple_of(align),
                            "realloc {size}->{grown} align {align}: {q:?}"
                        );
                        assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == i as u8), "realloc lost bytes");
                        Allocator.dealloc(q, Layout::from_size_align(grown, align).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn plain_blocks_are_used_only_where_they_are_aligned_enough() {
        assert!(plain_suffices(8, 8));
        assert!(plain_suffices(24, 8));
        assert!(plain_suffices(16, 16));
        assert!(plain_suffices(48, 16));
        // An 8-byte block is only 8-aligned; 32-byte alignment is never guaranteed.
        assert!(!plain_suffices(8, 16));
        assert!(!plain_suffices(64, 32));
    }
}
