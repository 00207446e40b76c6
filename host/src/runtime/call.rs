//! One guest call's limits ([`Limits`]) and how it can fail: the deadline (an epoch
//! callback for a guest that computes, a timeout for one that waits in a host
//! call) and the classification of a failed call as deadline, memory, a
//! shared-state limit or trap.
//! `Instances::call` applies both to every call, HTTP or session.

use crate::metrics::FailureReason;
use crate::runtime::shared_state::StateLimit;
use crate::runtime::state::GuestState;
use std::task::Poll;
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
/// deadline (the instant the store's epoch callback, [`epoch_callback`], and
/// host calls that wait respect), or no deadline.
pub fn arm(store: &mut Store<GuestState>, deadline: Option<Duration>) {
    store.data_mut().memory.exceeded = false;
    let expires = deadline.map(|limit| Instant::now() + limit);
    store.data_mut().deadline = expires;
    store.set_epoch_deadline(if expires.is_some() { 1 } else { u64::MAX / 2 });
}

/// Runs a guest call under the deadline. The epoch callback stops a guest
/// that computes past it; a timeout stops one that waits in a host call.
/// The timeout is armed only if the call is still running after its first
/// poll: most calls (a guest that computes and answers) end within it, and
/// they skip the timer wheel.
pub async fn within<T>(
    deadline: Option<Duration>,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<wasmtime::Result<T>, Failure> {
    let Some(limit) = deadline else { return Ok(call.await) };
    let expires = tokio::time::Instant::now() + limit;
    let mut call = std::pin::pin!(call);
    if let Poll::Ready(result) = futures_util::poll!(call.as_mut()) {
        return Ok(result);
    }
    tokio::time::timeout_at(expires, call).await.map_err(|_| Failure {
        reason: FailureReason::Deadline,
        message: deadline_message(deadline),
        detail: String::new(),
    })
}

/// The epoch callback of every store (set once, by `state::new_store`): at
/// every tick, stop the guest if its call's deadline has passed, otherwise
/// yield to the runtime. It reads the deadline from the store (`arm`), so a
/// call does not install a callback of its own.
///
/// The yield goes through `tokio::task::yield_now`, which reschedules the
/// task only after the runtime has polled its I/O and timer driver. A plain
/// self-wake would be polled again at once, and a CPU-bound guest would then
/// delay other connections (and timers) by up to 61 ticks.
pub fn epoch_callback(store: wasmtime::StoreContextMut<'_, GuestState>) -> wasmtime::Result<UpdateDeadline> {
    if store.data().deadline.is_some_and(|expires| Instant::now() >= expires) {
        return Ok(UpdateDeadline::Interrupt);
    }
    Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_waits_past_the_deadline_is_cut_off() {
        let waits = std::future::pending::<wasmtime::Result<()>>();
        let failure = within(Some(Duration::from_millis(50)), waits).await.unwrap_err();
        assert!(matches!(failure.reason, FailureReason::Deadline), "{failure:?}");
        assert!(failure.message.contains("50ms"), "{}", failure.message);
    }

    #[tokio::test]
    async fn a_call_still_running_after_its_first_poll_finishes_under_the_timer() {
        let mut polls = 0;
        let yields_once = std::future::poll_fn(|cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(wasmtime::Result::Ok(7))
        });
        assert_eq!(within(Some(Duration::from_secs(5)), yields_once).await.unwrap().unwrap(), 7);
        assert_eq!(within(None, async { wasmtime::Result::Ok(8) }).await.unwrap().unwrap(), 8);
    }
}
