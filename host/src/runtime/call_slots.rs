//! The process-wide call slots (`--max-in-flight`): at most that many guest
//! calls run at once, and the instance pool has one slot per call slot, so a
//! call never waits for an instance inside wasmtime. An HTTP request takes a
//! slot or is refused (503); a session's call waits for one.
//!
//! Not tokio's `Semaphore`: its release locks its list of waiters every
//! time, even when no one waits, and every request and every client-tick
//! releases a slot. Here taking a slot is one compare-and-swap and giving it
//! back one atomic subtraction; the waiters (a `Notify`) are touched only
//! while a session call waits. A request's slot also counts it in
//! `scalelab_http_requests_in_flight`, so that the two share one guard.

use crate::metrics::per_thread::Gauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

pub struct CallSlots {
    /// `--max-in-flight`.
    max: usize,
    /// Slots taken now.
    taken: AtomicUsize,
    /// Session calls waiting for a slot: a give-back wakes one only when
    /// this is not 0, so a give-back with no one waiting touches no list.
    waiting: AtomicUsize,
    /// Where waiting session calls sleep.
    freed: Notify,
    /// HTTP requests holding a slot (`scalelab_http_requests_in_flight`).
    requests: Arc<Gauge>,
}

/// A request's slot: counted in the in-flight gauge, given back when dropped.
/// It owns its `Arc` because a request's call may run on in a task of its own.
pub struct RequestSlot(Arc<CallSlots>);

/// A session call's slot, given back when dropped.
pub struct CallSlot<'a>(&'a CallSlots);

impl CallSlots {
    /// `max` slots; requests holding one are counted in `requests`.
    pub fn new(max: usize, requests: Arc<Gauge>) -> CallSlots {
        CallSlots { max, taken: AtomicUsize::new(0), waiting: AtomicUsize::new(0), freed: Notify::new(), requests }
    }

    /// A slot for an HTTP request now, or `None` at the limit.
    pub fn try_request(self: &Arc<Self>) -> Option<RequestSlot> {
        self.try_take().then(|| {
            self.requests.inc();
            RequestSlot(self.clone())
        })
    }

    /// A slot for a session call, waiting for one while all are taken.
    pub async fn call(&self) -> CallSlot<'_> {
        if !self.try_take() {
            self.wait().await;
        }
        CallSlot(self)
    }

    /// Slots taken now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    /// Takes a slot if one is free. Sequentially consistent, like the
    /// give-back: a waiter that counted itself in `waiting` and then finds
    /// no slot free is seen by the next give-back (see `give_back`).
    fn try_take(&self) -> bool {
        let mut taken = self.taken.load(Ordering::SeqCst);
        loop {
            if taken >= self.max {
                return false;
            }
            match self.taken.compare_exchange_weak(taken, taken + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => taken = now,
            }
        }
    }

    /// Waits until this caller has taken a slot.
    async fn wait(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _counted = Waiting(self);
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking, so a give-back after the look wakes it.
            freed.as_mut().enable();
            if self.try_take() {
                return;
            }
            freed.await;
        }
    }

    fn give_back(&self) {
        self.taken.fetch_sub(1, Ordering::SeqCst);
        // Either this sees a waiter's count, or that waiter's `try_take`
        // (after its count) sees the slot just given back.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_one();
        }
    }
}

/// A waiting call, counted in `waiting` until it has a slot or is dropped.
struct Waiting<'a>(&'a CallSlots);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.0.requests.dec();
        self.0.give_back();
    }
}

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::per_thread::PerThreadVec;
    use std::time::Duration;

    fn slots(max: usize) -> (Arc<CallSlots>, Arc<Gauge>) {
        let gauge = PerThreadVec::gauges("in_flight", "Requests", &[]).unwrap().with_label_values(&[]);
        (Arc::new(CallSlots::new(max, gauge.clone())), gauge)
    }

    #[test]
    fn requests_take_slots_up_to_the_limit_and_are_counted_while_they_hold_one() {
        let (slots, gauge) = slots(2);
        let first = slots.try_request().unwrap();
        let second = slots.try_request().unwrap();
        assert!(slots.try_request().is_none(), "a third request at a limit of 2");
        assert_eq!((slots.taken(), gauge.get()), (2, 2));
        drop(first);
        assert_eq!((slots.taken(), gauge.get()), (1, 1));
        let third = slots.try_request().unwrap();
        drop((second, third));
        assert_eq!((slots.taken(), gauge.get()), (0, 0));
    }

    #[tokio::test]
    async fn a_session_call_waits_for_a_slot_and_is_not_counted_as_a_request() {
        let (slots, gauge) = slots(1);
        let request = slots.try_request().unwrap();
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move {
                let _slot = slots.call().await;
                slots.taken()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a call took a slot beyond the limit");
        drop(request);
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap(), 1);
        assert_eq!((slots.taken(), gauge.get()), (0, 0));
    }

    /// Counts a holder of a slot while it yields once, keeping the most at once.
    async fn hold(running: &AtomicUsize, most: &AtomicUsize) {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        running.fetch_sub(1, Ordering::SeqCst);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn under_contention_no_more_than_the_limit_run_and_no_waiter_is_forgotten() {
        let (slots, _) = slots(3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    for _ in 0..200 {
                        // Requests that find no slot go away; session calls wait.
                        if i % 2 == 0 {
                            let Some(_slot) = slots.try_request() else { continue };
                            hold(&running, &most).await;
                        } else {
                            let _slot = slots.call().await;
                            hold(&running, &most).await;
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(30), task).await.expect("a waiting call was never woken").unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3, "{} ran at once", most.load(Ordering::SeqCst));
        assert_eq!(slots.taken(), 0);
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_waiting_call_dropped_before_its_slot_leaves_no_count_behind() {
        let (slots, _) = slots(1);
        let request = slots.try_request().unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(20), slots.call()).await;
        assert!(waiting.is_err());
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 0);
        drop(request);
        let _slot = slots.call().await;
        assert_eq!(slots.taken(), 1);
    }
}
