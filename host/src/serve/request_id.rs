//! Request ids (`x-request-id`, and the log lines about a request): unique in
//! the process, handed to each thread in blocks, so that a request takes its
//! id from its thread's block rather than from a counter both cores write.
//! A thread's ids increase; ids of different threads interleave.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many ids a thread takes at once.
const BLOCK: u64 = 1024;

/// The first id of the next block a thread takes.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's next id and the end of its block (exclusive).
    static BLOCK_LEFT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A new request id, never 0 and never handed out before in this process.
pub fn next() -> u64 {
    BLOCK_LEFT.with(|left| {
        let (mut id, mut end) = left.get();
        if id == end {
            id = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = id + BLOCK;
        }
        left.set((id + 1, end));
        id
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_from_many_threads_are_all_different_and_never_0() {
        let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(|| (0..3 * BLOCK).map(|_| next()).collect::<Vec<_>>())).collect();
        let mut seen = HashSet::new();
        for thread in threads {
            let ids = thread.join().unwrap();
            assert!(ids.is_sorted(), "a thread's ids increase");
            for id in ids {
                assert_ne!(id, 0);
                assert!(seen.insert(id), "id {id} handed out twice");
            }
        }
        assert_eq!(seen.len(), 8 * 3 * BLOCK as usize);
    }
}
