//! A slot number that belongs to one live thread at a time, so that a
//! structure with one part per slot (the per-thread metrics) can let each
//! thread write its own part with plain stores: no other thread writes it.
//!
//! A thread takes the lowest free slot the first time it asks and gives it
//! back when it exits; a thread that starts later may take it then. The
//! give-back (a release) and the take (an acquire) order the old owner's
//! writes before the new owner's, so a part never has two writers at once.
//! Only threads that write such a structure ever ask: the runtime's worker
//! threads, which run the requests and session calls. Past [`SLOTS`] live
//! askers, or while a thread is exiting, a thread has no slot, and writers
//! fall back to a shared part written with atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many slots there are: one bit each in a [`Slots`] word.
pub const SLOTS: usize = 64;

/// The slots of the process (one instance, [`SLOTS_OF_PROCESS`]); a type so
/// that tests can hand out slots of their own.
struct Slots {
    /// Bit `n` set: slot `n` belongs to a live thread.
    taken: AtomicU64,
}

impl Slots {
    const fn new() -> Slots {
        Slots { taken: AtomicU64::new(0) }
    }

    /// The lowest free slot, now taken; `None` when all are.
    fn take(&self) -> Option<usize> {
        let mut taken = self.taken.load(Ordering::Relaxed);
        loop {
            let free = (!taken).trailing_zeros() as usize;
            if free >= SLOTS {
                return None;
            }
            match self.taken.compare_exchange_weak(taken, taken | 1 << free, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(free),
                Err(now) => taken = now,
            }
        }
    }

    fn give_back(&self, slot: usize) {
        self.taken.fetch_and(!(1 << slot), Ordering::Release);
    }
}

static SLOTS_OF_PROCESS: Slots = Slots::new();

/// A thread's slot, given back when the thread exits.
struct Held(Option<usize>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            SLOTS_OF_PROCESS.give_back(slot);
        }
    }
}

thread_local! {
    static HELD: Held = Held(SLOTS_OF_PROCESS.take());
}

/// This thread's slot, the same every time it asks while it lives and no
/// other live thread's; `None` when every slot is taken or the thread is
/// exiting (its slot already given back).
pub fn current() -> Option<usize> {
    HELD.try_with(|held| held.0).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn live_threads_hold_different_slots_and_a_thread_keeps_its_own() {
        let here = current();
        assert!(here.is_some());
        assert_eq!(here, current());
        // Eight threads alive at once: eight different slots, none of them ours.
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let slot = current();
                    barrier.wait();
                    slot
                })
            })
            .collect();
        let mut slots: Vec<_> = threads.into_iter().map(|thread| thread.join().unwrap().unwrap()).collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), 8);
        assert!(!slots.contains(&here.unwrap()));
    }

    #[test]
    fn slots_run_out_and_one_given_back_is_taken_again() {
        let slots = Slots::new();
        let all: Vec<usize> = (0..SLOTS).map(|_| slots.take().unwrap()).collect();
        assert_eq!(all, (0..SLOTS).collect::<Vec<_>>(), "the lowest free slot first");
        assert_eq!(slots.take(), None);
        slots.give_back(17);
        assert_eq!(slots.take(), Some(17));
        assert_eq!(slots.take(), None);
    }
}
