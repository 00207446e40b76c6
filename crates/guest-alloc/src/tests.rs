extern crate std;

use super::*;
use proptest::prelude::*;
use std::alloc::System;
use std::cell::Cell;
use std::vec::Vec;

/// The system allocator, counting the blocks it holds.
#[derive(Default)]
struct Counting {
    live: Cell<usize>,
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.live.set(self.live.get() + 1);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.live.set(self.live.get() - 1);
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// An allocator over fresh memory of its own, as a guest's statics give it.
fn arena<const N: usize>() -> RequestArena<Counting, N> {
    RequestArena::new(std::boxed::Box::leak(std::boxed::Box::new(Memory::new())), Counting::default())
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn blocks_are_aligned_and_the_arena_empties_when_none_is_live() {
    let mut bump = Bump::new(4096, 1024);
    let a = bump.alloc(layout(3, 1));
    let b = bump.alloc(layout(8, 8));
    let c = bump.alloc(layout(100, 64));
    assert_eq!(a as usize, 4096);
    assert_eq!(b as usize % 8, 0);
    assert!(b as usize >= 4099);
    assert_eq!(c as usize % 64, 0);
    assert!(c as usize >= b as usize + 8);
    assert_eq!(bump.live(), 3);
    bump.dealloc(a, layout(3, 1));
    bump.dealloc(c, layout(100, 64));
    assert!(bump.used() > 0, "b is still live");
    bump.dealloc(b, layout(8, 8));
    assert_eq!((bump.live(), bump.used()), (0, 0));
    assert_eq!(bump.alloc(layout(5, 1)) as usize, 4096, "the next call starts from the base again");
}

#[test]
fn the_last_block_gives_its_bytes_back_at_once() {
    let mut bump = Bump::new(0x1000, 256);
    let a = bump.alloc(layout(16, 8));
    let b = bump.alloc(layout(32, 8));
    bump.dealloc(b, layout(32, 8));
    assert_eq!(bump.used(), 16);
    assert_eq!(bump.alloc(layout(32, 8)), b);
    let _ = a;
}

#[test]
fn what_does_not_fit_is_refused() {
    let mut bump = Bump::new(0x1000, 64);
    assert!(bump.alloc(layout(65, 1)).is_null());
    assert!(!bump.alloc(layout(64, 1)).is_null());
    assert!(bump.alloc(layout(1, 1)).is_null());
    let mut high = Bump::new(usize::MAX - 15, 15);
    assert!(high.alloc(layout(8, 32)).is_null(), "an alignment past the end of the address space");
}

#[test]
fn blocks_resize_in_place_at_the_top_and_shrink_anywhere() {
    let mut bump = Bump::new(0x1000, 128);
    let a = bump.alloc(layout(16, 8));
    assert!(bump.resize_in_place(a, layout(16, 8), 64));
    assert_eq!(bump.used(), 64);
    assert!(!bump.resize_in_place(a, layout(64, 8), 129), "past the end");
    let b = bump.alloc(layout(16, 8));
    assert!(!bump.resize_in_place(a, layout(64, 8), 65), "a block below another cannot grow");
    assert!(bump.resize_in_place(a, layout(64, 8), 32), "but it can shrink");
    bump.dealloc(a, layout(32, 8));
    bump.dealloc(b, layout(16, 8));
    assert_eq!(bump.used(), 0);
}

#[test]
fn large_blocks_go_to_the_fallback_and_come_back_to_it() {
    let arena = arena::<256>();
    unsafe {
        let small = arena.alloc(layout(100, 8));
        let large = arena.alloc(layout(1000, 8));
        assert_eq!(arena.fallback.live.get(), 1);
        assert!(!(*arena.bump.get()).owns(large) && (*arena.bump.get()).owns(small));
        arena.dealloc(large, layout(1000, 8));
        arena.dealloc(small, layout(100, 8));
        assert_eq!(arena.fallback.live.get(), 0);
        assert_eq!((*arena.bump.get()).used(), 0);
    }
}

#[test]
fn realloc_keeps_the_bytes_in_place_when_moved_and_into_the_fallback() {
    let arena = arena::<256>();
    unsafe {
        let a = arena.alloc(layout(8, 1));
        a.copy_from(b"abcdefgh".as_ptr(), 8);
        let a = arena.realloc(a, layout(8, 1), 16);
        let b = arena.alloc(layout(8, 1));
        let moved = arena.realloc(a, layout(16, 1), 64);
        assert_ne!(moved, a, "a block below another moves to grow");
        assert_eq!(std::slice::from_raw_parts(moved, 8), b"abcdefgh");
        let far = arena.realloc(moved, layout(64, 1), 4096);
        assert_eq!(arena.fallback.live.get(), 1, "too large for the arena");
        assert_eq!(std::slice::from_raw_parts(far, 8), b"abcdefgh");
        arena.dealloc(far, layout(4096, 1));
        arena.dealloc(b, layout(8, 1));
        assert_eq!(arena.fallback.live.get(), 0);
        assert_eq!((*arena.bump.get()).live(), 0);
    }
}

#[test]
fn zeroed_blocks_are_zero_though_the_arena_was_used_before() {
    let arena = arena::<256>();
    unsafe {
        let dirty = arena.alloc(layout(64, 1));
        dirty.write_bytes(0xAB, 64);
        arena.dealloc(dirty, layout(64, 1));
        let clean = arena.alloc_zeroed(layout(64, 1));
        assert_eq!(clean, dirty, "the same bytes again");
        assert!(std::slice::from_raw_parts(clean, 64).iter().all(|&b| b == 0));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, align_log2: u32 },
    Free(usize),
    Realloc(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..600, 0u32..7).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        any::<usize>().prop_map(Op::Free),
        (any::<usize>(), 1usize..900).prop_map(|(i, size)| Op::Realloc(i, size)),
    ]
}

proptest! {
    /// Any sequence of allocations, frees and reallocations: every live
    /// block keeps its own bytes (no two overlap) and has its alignment,
    /// and when all are freed both allocators are empty.
    #[test]
    fn live_blocks_keep_their_bytes(ops in proptest::collection::vec(op(), 1..200)) {
        let arena = arena::<2048>();
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let check = |live: &[(*mut u8, Layout, u8)]| {
            for &(ptr, layout, fill) in live {
                let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                assert!(bytes.iter().all(|&b| b == fill), "a block lost its bytes");
                assert_eq!(ptr as usize % layout.align(), 0);
            }
        };
        for (n, op) in ops.into_iter().enumerate() {
            let fill = n as u8;
            match op {
                Op::Alloc { size, align_log2 } => {
                    let layout = layout(size, 1 << align_log2);
                    let ptr = unsafe { arena.alloc(layout) };
                    unsafe { ptr.write_bytes(fill, size) };
                    live.push((ptr, layout, fill));
                }
                Op::Free(i) if !live.is_empty() => {
                    let (ptr, layout, _) = live.swap_remove(i % live.len());
                    unsafe { arena.dealloc(ptr, layout) };
                }
                Op::Realloc(i, size) if !live.is_empty() => {
                    let i = i % live.len();
                    let (ptr, old, old_fill) = live[i];
                    let new = unsafe { arena.realloc(ptr, old, size) };
                    let kept = unsafe { std::slice::from_raw_parts(new, old.size().min(size)) };
                    prop_assert!(kept.iter().all(|&b| b == old_fill), "realloc lost bytes");
                    unsafe { new.write_bytes(fill, size) };
                    live[i] = (new, layout(size, old.align()), fill);
                }
                _ => {}
            }
            check(&live);
        }
        for (ptr, layout, _) in live.drain(..) {
            unsafe { arena.dealloc(ptr, layout) };
        }
        prop_assert_eq!(arena.fallback.live.get(), 0);
        prop_assert_eq!(unsafe { (*arena.bump.get()).used() }, 0);
    }
}

#[test]
fn host_lists_go_to_the_arena_only_inside_the_scope() {
    assert!(!host_lists_go_to_arena());
    let inside = host_lists_in_arena(|| (host_lists_go_to_arena(), host_lists_in_arena(host_lists_go_to_arena)));
    assert_eq!(inside, (true, true));
    assert!(!host_lists_go_to_arena(), "the scope ends with the call, nested or not");
}

#[test]
fn cabi_realloc_allocates_resizes_and_keeps_zero_sized_lists_out() {
    let arena = arena::<256>();
    unsafe {
        assert_eq!(cabi_realloc_on(&arena, ptr::null_mut(), 0, 8, 0) as usize, 8, "no block for 0 bytes");
        let block = cabi_realloc_on(&arena, ptr::null_mut(), 0, 4, 12);
        assert!((*arena.bump.get()).owns(block) && (block as usize).is_multiple_of(4));
        block.copy_from(b"twelve bytes".as_ptr(), 12);
        let grown = cabi_realloc_on(&arena, block, 12, 4, 500);
        assert_eq!(std::slice::from_raw_parts(grown, 12), b"twelve bytes");
        assert_eq!(arena.fallback.live.get(), 1, "500 bytes do not fit in 256");
        arena.dealloc(grown, layout(500, 4));
        assert_eq!(arena.fallback.live.get(), 0);
    }
}
