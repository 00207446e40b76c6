//! Idle warm instances, in one list per thread that runs calls.
//!
//! An instance that served a call goes back to the list of the thread that
//! ran it, and that thread takes from its own list first. A warm instance
//! is kilobytes a call touches (its store, the pages of linear memory the
//! guest uses, the fiber stack wasmtime keeps with the store); taken again
//! on the same thread, they are still in that core's cache. From one shared
//! list, the other thread took the instance just given back about half the
//! time, and read all of it from the other core's cache.
//!
//! A thread whose list is empty takes from another's before a new instance
//! is made, so the lists hold no more instances in all than one list did.
//! Threads get their list round-robin, in the order they first ask: the
//! runtime's worker threads, which run the calls, ask first.

use crossbeam_utils::CachePadded;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Hands each thread its list, round-robin, the first time it asks.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number, from `NEXT_THREAD`.
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

pub struct IdleLists<T> {
    /// Each in a cache line of its own: side by side, taking one list's
    /// lock would take the line from the thread using the other.
    lists: Box<[CachePadded<Mutex<Vec<T>>>]>,
    /// Most items one list keeps: the total limit shared out.
    per_list: usize,
}

impl<T> IdleLists<T> {
    /// `lists` lists (at least one) keeping `max` items in all, or a few
    /// more when `max` does not divide evenly.
    pub fn new(lists: usize, max: usize) -> IdleLists<T> {
        let lists = lists.max(1);
        IdleLists { lists: (0..lists).map(|_| CachePadded::new(Mutex::new(Vec::new()))).collect(), per_list: max.div_ceil(lists) }
    }

    /// One list per CPU this process may use (the default worker count):
    /// about one thread per CPU runs calls.
    pub fn per_cpu(max: usize) -> IdleLists<T> {
        IdleLists::new(crate::workers::count(None), max)
    }

    fn home(&self) -> usize {
        THREAD.with(|thread| *thread) % self.lists.len()
    }

    /// The item this thread gave back last, else one from another list.
    pub fn take(&self) -> Option<T> {
        self.take_at(self.home())
    }

    /// Keeps `item` in this thread's list, unless that list is full: then
    /// it is dropped (after the lock is released).
    pub fn give(&self, item: T) {
        self.give_at(self.home(), item)
    }

    fn take_at(&self, home: usize) -> Option<T> {
        let count = self.lists.len();
        (0..count).find_map(|step| self.lists[(home + step) % count].lock().unwrap().pop())
    }

    fn give_at(&self, home: usize, item: T) {
        let mut list = self.lists[home].lock().unwrap();
        if list.len() < self.per_list {
            list.push(item);
            return;
        }
        drop(list);
        drop(item);
    }

    /// Drops every item.
    pub fn clear(&self) {
        for list in &self.lists {
            let items = std::mem::take(&mut *list.lock().unwrap());
            drop(items);
        }
    }

    /// Items kept in all.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lists.iter().map(|list| list.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_takes_back_what_it_gave_before_what_another_gave() {
        let lists = IdleLists::new(2, 8);
        lists.give_at(1, "theirs");
        lists.give_at(0, "ours, first");
        lists.give_at(0, "ours, last");
        assert_eq!(lists.take_at(0), Some("ours, last"));
        assert_eq!(lists.take_at(0), Some("ours, first"));
        assert_eq!(lists.take_at(0), Some("theirs"), "an empty list takes from another");
        assert_eq!(lists.take_at(0), None);
    }

    #[test]
    fn each_thread_keeps_its_number_and_no_two_share_one() {
        let here = (THREAD.with(|n| *n), THREAD.with(|n| *n));
        assert_eq!(here.0, here.1);
        let there = std::thread::spawn(|| THREAD.with(|n| *n)).join().unwrap();
        assert_ne!(here.0, there);
        let lists: IdleLists<()> = IdleLists::new(3, 3);
        assert_eq!(lists.home(), here.0 % 3);
    }

    #[test]
    fn the_lists_keep_no_more_than_their_share_of_the_limit() {
        let lists = IdleLists::new(2, 3);
        for item in 0..5 {
            lists.give(item);
        }
        assert_eq!(lists.len(), 2, "this thread's list keeps 2 of the 3 (3 shared by 2 lists, rounded up)");
        lists.clear();
        assert_eq!(lists.len(), 0);
        let one = IdleLists::new(0, 4);
        (0..6).for_each(|item| one.give(item));
        assert_eq!((one.len(), one.take()), (4, Some(3)), "one list at least; last in, first out");
    }
}
