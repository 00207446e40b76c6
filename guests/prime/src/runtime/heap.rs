//! The guest's heap: the request arena of `crates/guest-alloc` (a call's
//! blocks come from a bump arena that empties when the call has freed them)
//! in front of dlmalloc (the allocator of std's own wasm targets without
//! libc, and the algorithm of wasi-libc's `malloc`) over linear memory, and
//! the `cabi_realloc` export that the host allocates through.
//!
//! As wasi-libc's `malloc` does, the heap's first segment is the rest of the
//! memory the module starts with (from `__heap_base` to `__heap_end`), and
//! only what does not fit there grows memory. The `dlmalloc` crate's own
//! wasm allocator grows memory for its very first segment on this target,
//! and in a fresh instance every growth costs the host two `mprotect` calls
//! (growing, then shrinking the slot back when the instance is dropped):
//! with a fresh instance per request that halved the requests per second.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};
use dlmalloc::{Allocator, Dlmalloc};
use guest_alloc::{Memory, RequestArena};

const PAGE: usize = 64 * 1024;

unsafe extern "C" {
    /// The first byte after the stack and static data (placed by wasm-ld).
    static __heap_base: u8;
    /// The end of the memory the module is instantiated with (wasm-ld).
    static __heap_end: u8;
}

/// Where dlmalloc gets memory from: the initial memory's free tail once,
/// then `memory.grow`.
struct LinearMemory {
    /// Whether the tail of the initial memory was handed out already.
    tail_taken: AtomicBool,
}

unsafe impl Allocator for LinearMemory {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let (base, end) = (&raw const __heap_base as usize, &raw const __heap_end as usize);
        if end.saturating_sub(base) >= size && !self.tail_taken.swap(true, Ordering::Relaxed) {
            return (base as *mut u8, end - base, 0);
        }
        let pages = size.div_ceil(PAGE);
        let previous = wasm32::memory_grow(0, pages);
        if previous == usize::MAX {
            return (ptr::null_mut(), 0, 0);
        }
        let start = previous * PAGE;
        let len = pages * PAGE;
        // The last page of a 4 GiB memory: a pointer may not wrap to 0, so
        // its last bytes stay out of the segment (as the dlmalloc crate does).
        let len = if start.wrapping_add(len) == 0 { len - 16 } else { len };
        (start as *mut u8, len, 0)
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }

    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        // Both the initial memory's tail and grown pages start zeroed.
        true
    }

    fn page_size(&self) -> usize {
        PAGE
    }
}

/// The global allocator. A guest instance runs one call at a time on one
/// thread (this target has no threads), so no lock.
struct Heap(UnsafeCell<Dlmalloc<LinearMemory>>);

// SAFETY: wasm32-wasip2 code runs on one thread.
unsafe impl Sync for Heap {}

/// dlmalloc asks for memory in multiples of this. Its default, 64 KiB, is
/// more than the initial memory's tail (less than one wasm page): the first
/// allocation would grow memory without using the tail.
const GRANULARITY: usize = 4 * 1024;

/// The request arena's size: a request's blocks (its path, the JSON it
/// writes, the host's lists) fit many times over; a larger block (the
/// divisors of a large `n`) comes from dlmalloc.
const ARENA: usize = 64 * 1024;

static ARENA_MEMORY: Memory<ARENA> = Memory::new();

#[global_allocator]
static HEAP: RequestArena<Heap, ARENA> = RequestArena::new(
    &ARENA_MEMORY,
    Heap(UnsafeCell::new(
        const {
            let mut heap = Dlmalloc::new_with_allocator(LinearMemory { tail_taken: AtomicBool::new(false) });
            assert!(heap.set_granularity(GRANULARITY));
            heap
        },
    )),
);

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).malloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).calloc(layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { (*self.0.get()).realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

/// Allocates, grows or shrinks guest memory for the host (the component
/// model's `cabi_realloc`), as wasi-libc's does for guests built with std.
///
/// # Safety
/// Called by the host with the canonical ABI's arguments: `old_ptr` and
/// `old_len` describe an allocation of this heap (or are 0), `align` is a
/// power of two.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    // Out of memory (the host's --max-memory) traps, as std's guests do.
    unsafe { guest_alloc::cabi_realloc_on(&HEAP, old_ptr, old_len, align, new_len) }
}
