//! One guest call's limits ([`Limits`]) and how it can fail: the deadline (an epoch
//! callback for a guest that computes, a timeout for one that waits in a host
//! call) and the classification of a failed call as deadline, memory, a
//! shared-state limit or trap.
//! `Instances::call` applies both to every call, HTTP or session.

use crate::metrics::FailureReason;
use crate::runtime::shared_state::StateLimit;
use crate::runtime::state::GuestState;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Limits applied to every call of a guest.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock budget of one guest call; `None` means unlimited.
    pub deadline: Option<Duration>,
    /// Largest linear memory one instance may grow to, in bytes.
    pub max_memory: usize,
    /// Calls one instance may serve before it is replaced.
    pub instance_reuse: u32,
}

/// Why a guest call failed.
#[derive(Debug)]
pub struct Failure {
    /// The metric label, and the HTTP status it maps to.
    pub reason: FailureReason,
    /// A short message for the client.
    pub message: String,
    /// The full error (with the wasm backtrace), for the log.
    pub detail: String,
}

/// Prepares a store for one call: clears the memory flag and sets the
/// deadline (epoch callback, and the instant host calls that wait respect),
/// or no deadline.
pub fn arm(store: &mut Store<GuestState>, deadline: Option<Duration>) {
    store.data_mut().memory.exceeded = false;
    let expires = deadline.map(|limit| Instant::now() + limit);
    store.data_mut().deadline = expires;
    match expires {
        Some(expires) => {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(epoch_callback(expires));
        }
        None => store.set_epoch_deadline(u64::MAX / 2),
    }
}

/// Runs a guest call under the deadline. The epoch callback stops a guest
/// that computes past it; this timeout stops one that waits in a host call.
pub async fn within<T>(
    deadline: Option<Duration>,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<wasmtime::Result<T>, Failure> {
    match deadline {
        Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| Failure {
            reason: FailureReason::Deadline,
            message: deadline_message(deadline),
            detail: String::new(),
        }),
        None => Ok(call.await),
    }
}

/// The epoch callback of a call's store: at every tick, stop the guest if
/// the deadline has passed, otherwise yield to the runtime.
///
/// The yield goes through `tokio::task::yield_now`, which reschedules the
/// task only after the runtime has polled its I/O and timer driver. A plain
/// self-wake would be polled again at once, and a CPU-bound guest would then
/// delay other connections (and timers) by up to 61 ticks.
fn epoch_callback(
    expires: Instant,
) -> impl FnMut(wasmtime::StoreContextMut<'_, GuestState>) -> wasmtime::Result<UpdateDeadline> + Send + Sync + 'static {
    move |_| {
        if Instant::now() >= expires {
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
    }
}

fn deadline_message(deadline: Option<Duration>) -> String {
    match deadline {
        Some(limit) => format!("the guest did not finish within the {} deadline (--deadline)", humantime::format_duration(limit)),
        None => "the guest was interrupted".to_string(),
    }
}

/// Names the reason a guest call failed.
pub fn classify(error: &wasmtime::Error, store: &Store<GuestState>, deadline: Option<Duration>) -> Failure {
    let detail = format!("{error:?}");
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) {
        return Failure { reason: FailureReason::Deadline, message: deadline_message(deadline), detail };
    }
    let cause = match trap {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    if let Some(limit) = error.downcast_ref::<StateLimit>() {
        return Failure { reason: FailureReason::StateLimit, message: limit.to_string(), detail };
    }
    if store.data().memory.exceeded {
        let message = format!("the guest exceeded its memory limit (--max-memory): {cause}");
        return Failure { reason: FailureReason::Memory, message, detail };
    }
    Failure { reason: FailureReason::Trap, message: format!("the guest trapped: {cause}"), detail }
}
