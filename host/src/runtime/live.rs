//! The live guest: the [`Active`] being served, replaced whole by a swap, a
//! counter of swaps that sessions watch, and the process-wide call slots.
//! The HTTP handler, the session host and the swapper all hold one
//! `Arc<LiveGuest>`; none of them holds another.

use crate::metrics::per_thread::Gauge;
use crate::runtime::active::Active;
use crate::runtime::call_slots::{CallSlot, CallSlots, RequestSlot};
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::watch;

pub struct LiveGuest {
    /// The guest being served. A call loads it once and keeps its `Arc`, so
    /// it finishes on the guest it started on.
    active: ArcSwap<Active>,
    /// Counts swaps; sessions watch it to start draining off an old guest.
    swaps: watch::Sender<u64>,
    /// One slot per guest call in flight (`--max-in-flight`): the pool has
    /// one instance slot per call slot, so calls never wait for one inside wasmtime.
    slots: Arc<CallSlots>,
}

impl LiveGuest {
    /// Serves `active` with `max_in_flight` call slots; HTTP requests holding
    /// one are counted in `requests_in_flight`.
    pub fn new(active: Active, max_in_flight: u32, requests_in_flight: Arc<Gauge>) -> LiveGuest {
        LiveGuest {
            active: ArcSwap::from_pointee(active),
            swaps: watch::Sender::new(0),
            slots: Arc::new(CallSlots::new(max_in_flight as usize, requests_in_flight)),
        }
    }

    /// The guest being served now.
    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// Serves `active` from now on; calls under way finish on the old guest.
    pub fn switch_to(&self, active: Active) {
        self.active.store(Arc::new(active));
        self.swaps.send_modify(|n| *n += 1);
    }

    /// Changes whenever the guest is swapped.
    pub fn swaps(&self) -> watch::Receiver<u64> {
        self.swaps.subscribe()
    }

    /// A call slot now, or `None` at the limit (HTTP refuses with 503).
    pub fn try_slot(&self) -> Option<RequestSlot> {
        self.slots.try_request()
    }

    /// A call slot, waiting for one (a session's call, a tick: these queue
    /// rather than fail).
    pub async fn slot(&self) -> CallSlot<'_> {
        self.slots.call().await
    }
}
