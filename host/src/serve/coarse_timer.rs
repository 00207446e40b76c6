//! A coarse timer for hyper's header-read timeout (`--header-read-timeout`).
//!
//! hyper arms that timeout each time it waits for a request head, and drops
//! it once the head is read: on a keep-alive connection, once per request.
//! With tokio's timer each of those is an entry added to and removed from the
//! timer wheel, which cost about 1 µs of CPU per request (5% of a small
//! request; `--header-read-timeout off` measured side by side). The timeout
//! only has to close connections that stall for seconds, so it need not be
//! precise: here a sleep is an entry in a list that one task sweeps every
//! tick, waking the sleeps whose deadline has passed and forgetting those
//! hyper dropped. A sleep ends between its deadline and one tick later.

use futures_util::task::AtomicWaker;
use hyper::rt::{Sleep, Timer};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Finest and coarsest sweep: a tenth of the timeout within these bounds, so
/// that a 10 s timeout ends within 100 ms of its deadline and the list holds
/// at most a tenth of a second's worth of requests.
const TICK: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(100));

/// hyper's timer for one listener; cheap to clone (hyper clones it into each
/// connection).
#[derive(Clone)]
pub struct CoarseTimer {
    shared: Arc<Shared>,
}

struct Shared {
    /// Sleeps polled at least once and not yet ended or swept away.
    waiting: Mutex<Vec<Arc<Entry>>>,
}

/// One sleep, shared between its owner (hyper) and the sweeper.
struct Entry {
    deadline: Instant,
    /// Set by the sweeper once the deadline has passed.
    ended: AtomicBool,
    /// Set when hyper drops the sleep: the sweeper forgets the entry.
    dropped: AtomicBool,
    waker: AtomicWaker,
}

impl CoarseTimer {
    /// A timer for sleeps of about `timeout`, with its sweeping task spawned
    /// on the current runtime; the task ends once the timer and its sleeps
    /// are gone.
    pub fn new(timeout: Duration) -> CoarseTimer {
        let shared = Arc::new(Shared { waiting: Mutex::new(Vec::new()) });
        let tick = (timeout / 10).clamp(TICK.0, TICK.1);
        tokio::spawn(sweep(Arc::downgrade(&shared), tick));
        CoarseTimer { shared }
    }
}

/// Every `tick`, ends the sleeps whose deadline has passed (waking their
/// connection) and forgets the dropped ones.
async fn sweep(shared: Weak<Shared>, tick: Duration) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut due = Vec::new();
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        shared.waiting.lock().unwrap().retain(|entry| {
            if entry.dropped.load(Ordering::Acquire) {
                return false;
            }
            if entry.deadline > now {
                return true;
            }
            due.push(entry.clone());
            false
        });
        // Woken outside the lock: a woken connection may arm its next sleep at once.
        for entry in due.drain(..) {
            entry.ended.store(true, Ordering::Release);
            entry.waker.wake();
        }
    }
}

impl Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let entry = Arc::new(Entry {
            deadline,
            ended: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        Box::pin(CoarseSleep { entry, shared: self.shared.clone(), listed: false })
    }
}

/// A sleep of [`CoarseTimer`]: listed for the sweeper when first polled (a
/// head that is read without waiting never is).
struct CoarseSleep {
    entry: Arc<Entry>,
    shared: Arc<Shared>,
    /// Whether the entry is in the sweeper's list already.
    listed: bool,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.entry.ended.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.entry.waker.register(cx.waker());
        if !self.listed {
            self.listed = true;
            self.shared.waiting.lock().unwrap().push(self.entry.clone());
        }
        // Ended between the first check and the registration: not woken, so answer now.
        if self.entry.ended.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
    }
}

impl Sleep for CoarseSleep {}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        self.entry.dropped.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (up to 5 s) until `done` holds.
    async fn eventually(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..500 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done()
    }

    #[tokio::test]
    async fn a_sleep_ends_after_its_deadline() {
        let timer = CoarseTimer::new(Duration::from_millis(200));
        let started = Instant::now();
        let sleep = timer.sleep(Duration::from_millis(200));
        tokio::time::timeout(Duration::from_secs(5), sleep).await.expect("the sleep ended");
        assert!(started.elapsed() >= Duration::from_millis(200), "ended early, after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn dropped_sleeps_are_forgotten_and_the_sweeper_stops_with_the_timer() {
        let timer = CoarseTimer::new(Duration::from_secs(60));
        let shared = Arc::downgrade(&timer.shared);
        for _ in 0..100 {
            let mut sleep = timer.sleep(Duration::from_secs(60));
            // Polled once (so listed), then dropped, as hyper does when a head arrives.
            assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        }
        let listed = || timer.shared.waiting.lock().unwrap().len();
        assert!(listed() > 0);
        assert!(eventually(|| listed() == 0).await, "{} dropped sleeps still listed", listed());
        drop(timer);
        assert!(eventually(|| shared.upgrade().is_none()).await, "the sweeper kept the timer's list");
    }

    #[test]
    fn a_sleep_never_polled_is_never_listed() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let _guard = runtime.enter();
        let timer = CoarseTimer::new(Duration::from_secs(1));
        drop(timer.sleep(Duration::from_secs(1)));
        assert_eq!(timer.shared.waiting.lock().unwrap().len(), 0);
    }
}
