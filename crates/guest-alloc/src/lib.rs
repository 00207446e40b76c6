//! The guests' memory allocator: a bump arena in front of a general
//! allocator, emptied whenever nothing in it is live.
//!
//! A guest's work is one call at a time, and what it allocates for a call
//! it frees before the call returns: guests keep nothing in linear memory
//! (the architecture's rule), so at the end of every call the arena holds
//! no live block and starts again from its base. Allocating is then moving
//! a pointer, and freeing is counting down, where dlmalloc (the allocator of
//! std's wasm targets and of wasi-libc) spends over a hundred instructions
//! on each (callgrind, httpbin's `/uuid`: 26 allocations a request, a
//! seventh of all the instructions the host executes for it). A block that does not fit goes to
//! the general allocator behind, and so does everything if a guest does
//! keep a block across calls and the arena fills: slower, never wrong.
//!
//! [`Bump`] is the arena's bookkeeping (plain code, tested natively);
//! [`RequestArena`] is the `GlobalAlloc` a guest declares, over a [`Memory`]
//! static of its own: all zeros, so it lies in `.bss` and adds no bytes to
//! the component (inside the allocator's static, next to non-zero fields,
//! it would be data written out in full).

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

/// The bookkeeping of an arena `[base, end)`.
#[derive(Debug)]
pub struct Bump {
    base: usize,
    end: usize,
    /// The first free byte: everything at or above it is free.
    top: usize,
    /// Blocks handed out and not yet freed: at 0, `top` goes back to `base`.
    live: usize,
}

impl Bump {
    /// An empty arena over `len` bytes at `base` (set up later with
    /// [`Bump::place`] when the address is not known at compile time).
    pub const fn new(base: usize, len: usize) -> Bump {
        Bump { base, end: base + len, top: base, live: 0 }
    }

    /// Moves an empty arena to `len` bytes at `base`.
    pub fn place(&mut self, base: usize, len: usize) {
        debug_assert_eq!(self.live, 0, "an arena with live blocks cannot move");
        *self = Bump::new(base, len);
    }

    /// Whether `ptr` is a block of this arena.
    pub fn owns(&self, ptr: *mut u8) -> bool {
        (self.base..self.end).contains(&(ptr as usize))
    }

    /// A block for `layout`, or null when it does not fit.
    pub fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let Some(start) = self.top.checked_next_multiple_of(layout.align()) else {
            return ptr::null_mut();
        };
        match start.checked_add(layout.size()) {
            Some(new_top) if new_top <= self.end && layout.size() > 0 => {
                self.top = new_top;
                self.live += 1;
                start as *mut u8
            }
            _ => ptr::null_mut(),
        }
    }

    /// Frees a block of this arena allocated with `layout`. The last block
    /// gives its bytes back at once; the others when the arena empties.
    pub fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        debug_assert!(self.owns(ptr) && self.live > 0);
        self.live -= 1;
        if self.live == 0 {
            self.top = self.base;
        } else if ptr as usize + layout.size() == self.top {
            self.top = ptr as usize;
        }
    }

    /// Resizes a block of this arena where it lies: the last block grows or
    /// shrinks while the arena has room, any block shrinks. False when the
    /// block must move.
    pub fn resize_in_place(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> bool {
        let start = ptr as usize;
        if start + layout.size() == self.top {
            match start.checked_add(new_size) {
                Some(new_top) if new_top <= self.end && new_size > 0 => {
                    self.top = new_top;
                    true
                }
                _ => false,
            }
        } else {
            new_size <= layout.size() && new_size > 0
        }
    }

    /// Blocks handed out and not yet freed.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Bytes from the base to the first free byte.
    pub fn used(&self) -> usize {
        self.top - self.base
    }
}

/// The arena's memory, aligned for any block up to 16 bytes of alignment
/// (larger alignments are padded inside it).
#[repr(C, align(16))]
pub struct Memory<const N: usize>(UnsafeCell<[u8; N]>);

impl<const N: usize> Memory<N> {
    pub const fn new() -> Memory<N> {
        Memory(UnsafeCell::new([0; N]))
    }
}

impl<const N: usize> Default for Memory<N> {
    fn default() -> Memory<N> {
        Memory::new()
    }
}

/// A `GlobalAlloc`: blocks from an arena of `N` bytes while they fit, from
/// `fallback` otherwise (std's `System` in guests with std, dlmalloc in
/// `prime`).
pub struct RequestArena<A, const N: usize> {
    memory: &'static Memory<N>,
    bump: UnsafeCell<Bump>,
    fallback: A,
}

impl<A, const N: usize> RequestArena<A, N> {
    /// An allocator over `memory`, which nothing else may use.
    pub const fn new(memory: &'static Memory<N>, fallback: A) -> RequestArena<A, N> {
        RequestArena {
            memory,
            // Placed at the first allocation: a static's address is not a
            // constant that code can compute with.
            bump: UnsafeCell::new(Bump::new(0, 0)),
            fallback,
        }
    }

    /// The arena, placed over this allocator's memory on first use.
    ///
    /// # Safety
    /// No other reference to the arena may be alive: the allocator is used
    /// from one thread (see the `Sync` implementation).
    #[allow(clippy::mut_from_ref)]
    unsafe fn bump(&self) -> &mut Bump {
        let bump = unsafe { &mut *self.bump.get() };
        if bump.end == 0 {
            bump.place(self.memory.0.get() as usize, N);
        }
        bump
    }
}

// SAFETY: the arena's bookkeeping has no lock. Wasm guests without the
// threads proposal run on one thread, so no two calls can race.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<A: Sync, const N: usize> Sync for RequestArena<A, N> {}

// SAFETY: as above; only its `RequestArena` touches the memory.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<const N: usize> Sync for Memory<N> {}

unsafe impl<A: GlobalAlloc, const N: usize> GlobalAlloc for RequestArena<A, N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = unsafe { self.bump() }.alloc(layout);
        if block.is_null() { unsafe { self.fallback.alloc(layout) } } else { block }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = unsafe { self.bump() }.alloc(layout);
        if block.is_null() {
            return unsafe { self.fallback.alloc_zeroed(layout) };
        }
        // The arena's bytes are whatever the last call left there.
        unsafe { ptr::write_bytes(block, 0, layout.size()) };
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let bump = unsafe { self.bump() };
        if bump.owns(ptr) {
            bump.dealloc(ptr, layout);
        } else {
            unsafe { self.fallback.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Each `bump()` reference ends before the next is taken (`alloc` takes one).
        let (ours, resized) = {
            let bump = unsafe { self.bump() };
            let ours = bump.owns(ptr);
            (ours, ours && bump.resize_in_place(ptr, layout, new_size))
        };
        if !ours {
            return unsafe { self.fallback.realloc(ptr, layout, new_size) };
        }
        if resized {
            return ptr;
        }
        // SAFETY: the caller guarantees that `new_size`, rounded up to the
        // alignment, does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            unsafe { ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size)) };
            unsafe { self.bump() }.dealloc(ptr, layout);
        }
        moved
    }
}

/// Whether `cabi_realloc` puts what the host passes in into the arena (see
/// [`host_lists_in_arena`]); otherwise it goes to `malloc`.
static HOST_LISTS_IN_ARENA: AtomicBool = AtomicBool::new(false);

/// Runs `call` (a call to a host interface of the guest's own, whose lists
/// and strings only Rust code frees) with what the host passes in allocated
/// from the arena rather than by `malloc`.
///
/// Outside such a call, `cabi_realloc` allocates with `malloc` (see
/// [`std_global_allocator`]): wasi-libc `free`s some of the host's lists
/// itself (the environment, preopened directories), and an arena block in
/// `free` breaks its heap. No wasi-libc code runs inside `call` (one import,
/// one thread), so nothing there frees an arena block by `free`.
pub fn host_lists_in_arena<R>(call: impl FnOnce() -> R) -> R {
    let before = HOST_LISTS_IN_ARENA.swap(true, Ordering::Relaxed);
    let result = call();
    HOST_LISTS_IN_ARENA.store(before, Ordering::Relaxed);
    result
}

/// Whether the host's lists go to the arena now (inside [`host_lists_in_arena`]).
pub fn host_lists_go_to_arena() -> bool {
    HOST_LISTS_IN_ARENA.load(Ordering::Relaxed)
}

/// Declares a guest's global allocator, in a guest built with std: a
/// request arena of `$size` bytes before std's `System` (wasi-libc's
/// `malloc`). Only on wasm targets, so that the guest's native tests keep
/// the system allocator.
///
/// It also exports the guest's `cabi_realloc` (the host's allocations in
/// guest memory, for the lists and strings it passes in) on `System`, not
/// the arena, but inside [`host_lists_in_arena`]: wasi-libc frees some of
/// those itself with `free` (the environment, the preopened directories),
/// which must never see an arena block. Rust code frees the others through
/// the arena, which hands blocks it does not own to `System`.
#[macro_export]
macro_rules! std_global_allocator {
    ($size:expr) => {
        #[cfg(target_family = "wasm")]
        static GUEST_ALLOC_MEMORY: $crate::Memory<{ $size }> = $crate::Memory::new();

        #[cfg(target_family = "wasm")]
        #[global_allocator]
        static GUEST_ALLOCATOR: $crate::RequestArena<::std::alloc::System, { $size }> =
            $crate::RequestArena::new(&GUEST_ALLOC_MEMORY, ::std::alloc::System);

        /// The canonical ABI's `cabi_realloc`: on wasi-libc's allocator, or
        /// on the arena inside `guest_alloc::host_lists_in_arena` (see
        /// `guest_alloc::std_global_allocator`).
        ///
        /// # Safety
        /// Called by the host with the canonical ABI's arguments.
        #[cfg(target_family = "wasm")]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
            // A block to resize may be either allocator's: the arena's own
            // `realloc` tells them apart.
            if old_len != 0 || $crate::host_lists_go_to_arena() {
                unsafe { $crate::cabi_realloc_on(&GUEST_ALLOCATOR, old, old_len, align, new_len) }
            } else {
                unsafe { $crate::cabi_realloc_on(&::std::alloc::System, old, old_len, align, new_len) }
            }
        }
    };
}

/// `cabi_realloc` on `allocator`: a new block when `old_len` is 0 (none at
/// all for 0 bytes), else `old` resized; traps when memory is exhausted.
///
/// # Safety
/// The canonical ABI's arguments: `old` and `old_len` describe a block of
/// `allocator` (or `old_len` is 0), `align` is a power of two.
pub unsafe fn cabi_realloc_on<A: GlobalAlloc>(
    allocator: &A,
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let block = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            allocator.alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            allocator.realloc(old, Layout::from_size_align_unchecked(old_len, align), new_len)
        }
    };
    if block.is_null() {
        // Out of memory (the host's --max-memory): trap, as wasi-libc's does.
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
    }
    block
}

#[cfg(test)]
mod tests;
