//! Running sessions: the transport-neutral loop of one session (raw TCP,
//! socket.io), the calls into the session guest, the effects they return,
//! and the guest's periodic `tick` and per-session `session-tick`.
//!
//! Each session is one task. It calls `opened`, then `received` for each
//! message in order, then `closed`, awaiting each call before reading on, so
//! the calls of one session never overlap or reorder; different sessions run
//! in parallel. No instance belongs to a session: every call takes a warm
//! instance from the guest's pool and gives it back.
//!
//! A session stays on the guest that was active when it opened. When the
//! guest is swapped, the session keeps running on the old one until it
//! closes or `--session-drain` passes; then the host closes it with the
//! reason `guest swapped` (and calls the old guest's `closed`).
//!
//! Every session task is spawned on the host's task tracker, so shutdown
//! waits for each one to have closed its socket and called `closed`
//! ([`SessionHost::closed`]), not merely to have left the session table.

use crate::metrics::per_thread::Counter;
use crate::metrics::{CloseReason, Metrics, SessionCallKind, SessionRefusal};
use crate::runtime::active::Active;
use crate::runtime::bindings::{Effect, Peer};
use crate::runtime::call::Failure;
use crate::runtime::instances::Warm;
use crate::runtime::live::LiveGuest;
use crate::runtime::services::Services;
use crate::runtime::session_table::{Mailbox, Outgoing, Overflow, SessionId};
use crate::serve::session_signals::{self, Signals};
use bytes::Bytes;
use futures_util::FutureExt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::task::TaskTracker;

/// The socket side of a session.
pub trait Transport: Send {
    /// The `transport` label: `tcp` or `socket.io`.
    const KIND: &'static str;
    /// The next message from the peer; `None` once the peer has closed.
    /// Must be cancel-safe: it races with outgoing messages.
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;
    /// Queues one message for the peer (it may sit in a buffer until `flush`).
    fn send(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes out what `send` queued.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the connection, telling the peer `reason` where the transport can.
    fn close(self, reason: &str) -> impl Future<Output = ()> + Send;
}

/// How long closing a connection may take (a WebSocket close frame to a
/// peer that does not read would wait for ever); then it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How an I/O failure counts: the peer going away (reset, broken pipe,
/// already closed) is the peer closing; anything else is an error.
fn failure_reason(error: &io::Error) -> CloseReason {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected | UnexpectedEof => CloseReason::Peer,
        _ => CloseReason::Error,
    }
}

/// How a write to the peer ended.
enum Written {
    Done,
    /// The guest closed the session (a close was queued among the writes).
    Closed(String),
    Failed(io::Error),
    SlowConsumer(SlowConsumer),
    Shutdown,
}

/// Why a peer counts as a slow consumer.
#[derive(Debug, Clone, Copy)]
enum SlowConsumer {
    /// More than `--session-max-outgoing` waited behind a blocked write.
    Overflow,
    /// A write stayed blocked for `--session-write-timeout`.
    Stalled,
}

impl SlowConsumer {
    fn as_str(self) -> &'static str {
        match self {
            SlowConsumer::Overflow => "overflow",
            SlowConsumer::Stalled => "stalled",
        }
    }
}

/// A call into the session guest.
enum Call {
    Opened(Peer),
    Received(Bytes),
    Closed(String),
    Tick,
    SessionTick,
}

impl Call {
    fn kind(&self) -> SessionCallKind {
        match self {
            Call::Opened(_) => SessionCallKind::Opened,
            Call::Received(_) => SessionCallKind::Received,
            Call::Closed(_) => SessionCallKind::Closed,
            Call::Tick => SessionCallKind::Tick,
            Call::SessionTick => SessionCallKind::SessionTick,
        }
    }
}

/// The bounds of every session (flags of `serve`).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// How long sessions may stay on a swapped-out guest.
    pub drain: Duration,
    /// How long one write may stay blocked before the peer counts as a slow consumer.
    pub write_timeout: Duration,
    /// Most sessions open at once.
    pub max_sessions: u32,
}

/// What every session task shares.
pub struct SessionHost {
    /// The guest being served, and the call slots every guest call takes.
    live: Arc<LiveGuest>,
    services: Arc<Services>,
    metrics: Arc<Metrics>,
    /// How long sessions may stay on a swapped-out guest.
    drain: Duration,
    /// How long a write may stay blocked on a peer that does not read.
    write_timeout: Duration,
    /// Turns true at shutdown: every session closes. Sessions read it from
    /// `signals`; only a write blocked on its peer waits on the channel.
    shutdown: watch::Receiver<bool>,
    /// Shutdown and swaps as flags, set by [`SessionHost::run_signals`].
    signals: Signals,
    /// One permit per open session (`--max-sessions`).
    limit: Arc<Semaphore>,
    /// Every session task, so that shutdown can wait for them to end.
    tasks: TaskTracker,
    received: Arc<Counter>,
    sent: Arc<Counter>,
}

impl SessionHost {
    pub fn new(
        live: Arc<LiveGuest>,
        services: Arc<Services>,
        metrics: Arc<Metrics>,
        limits: SessionLimits,
        shutdown: watch::Receiver<bool>,
    ) -> SessionHost {
        let (received, sent) = metrics.sessions.message_counters();
        SessionHost {
            live,
            services,
            metrics,
            drain: limits.drain,
            write_timeout: limits.write_timeout,
            shutdown,
            signals: Signals::default(),
            limit: Arc::new(Semaphore::new(limits.max_sessions as usize)),
            tasks: TaskTracker::new(),
            received,
            sent,
        }
    }

    /// A session slot, or `None` (counted) at the limit or when the current
    /// guest does not handle sessions.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if self.live.active().guest.session.is_none() {
            self.metrics.sessions.refused(SessionRefusal::NotASessionGuest);
            return None;
        }
        let permit = self.limit.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.metrics.sessions.refused(SessionRefusal::SessionLimit);
        }
        permit
    }

    pub fn open_sessions(&self) -> usize {
        self.services.sessions.count()
    }

    /// Runs one session to its end in a task of its own, which shutdown waits for.
    pub fn spawn<T: Transport + 'static>(self: &Arc<Self>, transport: T, peer: SocketAddr, slot: OwnedSemaphorePermit) {
        self.spawn_tracked(self.clone().run(transport, peer, slot));
    }

    /// Spawns work that shutdown must wait for (a WebSocket upgrade that
    /// becomes a session).
    pub fn spawn_tracked(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Waits until every session task has ended: its socket closed and its
    /// guest's `closed` called. Call it after the shutdown flag is set: a
    /// session admitted later still counts, and closes at once on the flag.
    pub async fn closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Runs one session to its end, in the calling task (which must be one
    /// the host tracks: `spawn` or `spawn_tracked`).
    pub async fn run<T: Transport>(self: Arc<Self>, mut transport: T, peer: SocketAddr, _slot: OwnedSemaphorePermit) {
        let active = self.live.active();
        if active.guest.session.is_none() {
            transport.close("the current guest does not handle sessions").await;
            return;
        }
        let (registration, mut mailbox) = self.services.sessions.open();
        let id = registration.id;
        self.metrics.sessions.opened(T::KIND);
        tracing::debug!(session = id, %peer, transport = T::KIND, guest = %active.guest.name, "session opened");
        let opened = Peer { address: peer.to_string(), transport: T::KIND.to_string() };
        let effects = Box::pin(self.call(&active, id, Call::Opened(opened))).await;
        self.apply(effects);

        let (reason, message) = self.serve(&active, id, &mut transport, &mut mailbox).await;

        // Gone from the table first: what `closed` broadcasts skips this session.
        drop(registration);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, transport.close(&message)).await;
        let effects = Box::pin(self.call(&active, id, Call::Closed(message.clone()))).await;
        self.apply(effects);
        self.metrics.sessions.closed(T::KIND, reason);
        tracing::debug!(session = id, reason = reason.as_str(), cause = %message, "session closed");
    }

    /// An open session's life until it ends, and why it ended: the peer's
    /// data and the guest's ticks go to the guest, what the guest or others
    /// send goes out, and a shutdown, a swap (after the drain), a slow
    /// consumer or an error closes it.
    async fn serve<T: Transport>(
        &self,
        active: &Arc<Active>,
        id: u64,
        transport: &mut T,
        mailbox: &mut Mailbox,
    ) -> (CloseReason, String) {
        // Only a write blocked on its peer waits on the shutdown channel.
        let mut shutdown = self.shutdown.clone();
        let overflow = mailbox.overflow();
        // Shutdown, swaps and overflows arrive as flags plus a wake-up in the
        // mailbox (`session_signals`): read at every turn of the loop with
        // atomic loads, not as channels polled at every turn. The session is
        // in the table already, so a swap or shutdown from now on wakes it;
        // one before (during the `opened` call) is seen by the first turn.
        let mut swaps_seen = None;
        // Set when the guest has been swapped: the session closes then.
        let mut drain: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        // The guest's per-session tick, if it asked for one. A late tick is
        // delayed, not bunched up: falling behind shows as fewer ticks.
        let mut session_tick = active.guest.session_tick_interval.map(|every| {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        loop {
            if self.signals.shutting_down() {
                return (CloseReason::Shutdown, "host shutting down".to_string());
            }
            if overflow.happened() {
                return self.slow_consumer(id, &overflow, SlowConsumer::Overflow);
            }
            let swaps = self.signals.swaps();
            if drain.is_none() && swaps_seen != Some(swaps) {
                swaps_seen = Some(swaps);
                if !Arc::ptr_eq(&self.live.active(), active) {
                    drain = Some(Box::pin(tokio::time::sleep(self.drain)));
                }
            }
            tokio::select! {
                biased;
                out = mailbox.recv() => match out {
                    Some(Outgoing::Data(data)) => {
                        let written = self.write_out(transport, [data], mailbox, &overflow, &mut shutdown).await;
                        if let Some(ending) = self.ending(id, &overflow, written) {
                            return ending;
                        }
                    }
                    Some(Outgoing::Close(reason)) => return (CloseReason::Guest, reason),
                    // The next turn reads the signals.
                    Some(Outgoing::Wake) => {}
                    None => return (CloseReason::Error, "session table entry lost".to_string()),
                },
                _ = async { session_tick.as_mut().expect("guarded").tick().await }, if session_tick.is_some() => {
                    let effects = Box::pin(self.call(active, id, Call::SessionTick)).await;
                    if let Some(ending) = self.answer(transport, id, effects, mailbox, &overflow, &mut shutdown).await {
                        return ending;
                    }
                }
                _ = async { drain.as_mut().expect("guarded").await }, if drain.is_some() => {
                    return (CloseReason::Swapped, "guest swapped".to_string());
                }
                read = transport.recv() => match read {
                    Ok(Some(data)) => {
                        self.received.inc();
                        let effects = Box::pin(self.call(active, id, Call::Received(data))).await;
                        if let Some(ending) = self.answer(transport, id, effects, mailbox, &overflow, &mut shutdown).await {
                            return ending;
                        }
                    }
                    Ok(None) => return (CloseReason::Peer, "peer closed".to_string()),
                    Err(e) => return (failure_reason(&e), format!("read failed: {e}")),
                },
            }
        }
    }

    /// Writes `first` and everything queued behind it with one flush (a
    /// tick's events, a burst of broadcasts). `Some(reason)` when a close
    /// was queued among them.
    async fn write_queued<T: Transport>(
        &self,
        transport: &mut T,
        first: impl IntoIterator<Item = Bytes> + Send,
        mailbox: &mut Mailbox,
    ) -> io::Result<Option<String>> {
        for data in first {
            transport.send(data).await?;
            self.sent.inc();
        }
        let mut close = None;
        while let Some(item) = mailbox.try_recv() {
            match item {
                Outgoing::Data(data) => {
                    transport.send(data).await?;
                    self.sent.inc();
                }
                Outgoing::Close(reason) => {
                    close = Some(reason);
                    break;
                }
                // The loop reads the signals after this write.
                Outgoing::Wake => {}
            }
        }
        transport.flush().await?;
        Ok(close)
    }

    /// Carries out the effects of a call made for session `id`: written
    /// by the session itself when they are only its own frames
    /// ([`own_frames`]), else applied through the table. `Some` when the
    /// session ends on the write.
    async fn answer<T: Transport>(
        &self,
        transport: &mut T,
        id: SessionId,
        effects: Vec<Effect>,
        mailbox: &mut Mailbox,
        overflow: &Overflow,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(CloseReason, String)> {
        match own_frames(id, effects, mailbox) {
            Ok(frames) if frames.is_empty() => None,
            Ok(frames) => {
                let written = self.write_out(transport, frames, mailbox, overflow, shutdown).await;
                self.ending(id, overflow, written)
            }
            Err(effects) => {
                self.apply(effects);
                None
            }
        }
    }

    /// How the session ends after `written`, if it does.
    fn ending(&self, id: SessionId, overflow: &Overflow, written: Written) -> Option<(CloseReason, String)> {
        match written {
            Written::Done => None,
            Written::Closed(reason) => Some((CloseReason::Guest, reason)),
            Written::Failed(e) => Some((failure_reason(&e), format!("write failed: {e}"))),
            Written::SlowConsumer(why) => Some(self.slow_consumer(id, overflow, why)),
            Written::Shutdown => Some((CloseReason::Shutdown, "host shutting down".to_string())),
        }
    }

    /// Writes `first` and what is queued behind it. The write usually
    /// completes at once; one blocked on a peer that does not read ends when
    /// the queue behind it overflows, when it has been blocked for
    /// `--session-write-timeout`, or at shutdown.
    async fn write_out<T: Transport>(
        &self,
        transport: &mut T,
        first: impl IntoIterator<Item = Bytes> + Send,
        mailbox: &mut Mailbox,
        overflow: &Overflow,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Written {
        let write = self.write_queued(transport, first, mailbox);
        tokio::pin!(write);
        // Only a write that blocks pays for a timer.
        let result = match (&mut write).now_or_never() {
            Some(result) => result,
            None => tokio::select! {
                biased;
                _ = overflow.wait() => return Written::SlowConsumer(SlowConsumer::Overflow),
                _ = shutdown.changed() => return Written::Shutdown,
                _ = tokio::time::sleep(self.write_timeout) => return Written::SlowConsumer(SlowConsumer::Stalled),
                result = &mut write => result,
            },
        };
        match result {
            Ok(None) => Written::Done,
            Ok(Some(reason)) => Written::Closed(reason),
            Err(e) => Written::Failed(e),
        }
    }

    /// The close of a session whose peer stopped reading, logged.
    fn slow_consumer(&self, id: SessionId, overflow: &Overflow, why: SlowConsumer) -> (CloseReason, String) {
        let max = self.services.sessions.max_outgoing();
        let timeout = self.write_timeout;
        tracing::warn!(
            session = id,
            queued_bytes = overflow.queued(),
            max_bytes = max,
            cause = why.as_str(),
            "slow consumer: session closed"
        );
        let message = match why {
            SlowConsumer::Overflow => {
                format!("slow consumer: more than {max} bytes waited to be written (--session-max-outgoing)")
            }
            SlowConsumer::Stalled => {
                format!("slow consumer: a write stayed blocked for {timeout:?} (--session-write-timeout)")
            }
        };
        (CloseReason::SlowConsumer, message)
    }

    /// Relays shutdown and swaps to every session (`session_signals`), until
    /// shutdown. Spawned once, beside [`SessionHost::run_ticks`].
    pub async fn run_signals(self: Arc<Self>) {
        session_signals::relay(&self.signals, &self.services.sessions, self.shutdown.clone(), self.live.swaps()).await;
    }

    /// Calls the session guest's `tick` at the interval it asked for (or the
    /// config file's), while it is the active guest, until shutdown.
    pub async fn run_ticks(self: Arc<Self>) {
        let mut swaps = self.live.swaps();
        let mut shutdown = self.shutdown.clone();
        loop {
            let active = self.live.active();
            let Some(interval) = active.tick_interval() else {
                tokio::select! {
                    _ = swaps.changed() => continue,
                    _ = shutdown.changed() => return,
                }
            };
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        let effects = Box::pin(self.call(&active, 0, Call::Tick)).await;
                        self.apply(effects);
                    }
                    _ = swaps.changed() => break,
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// One call into the guest on a pooled instance, under the deadline. A
    /// failure is logged and counted; the session goes on.
    async fn call(&self, active: &Active, id: SessionId, call: Call) -> Vec<Effect> {
        let _slot = self.live.slot().await;
        let started = Instant::now();
        let kind = call.kind();
        let result = active.instances.call(active.limits.deadline, move |warm| Box::pin(call_guest(warm, id, call))).await;
        active.metrics.session_call(kind, started.elapsed());
        match result {
            Ok(effects) => effects,
            Err(Failure { reason, message, detail }) => {
                active.metrics.failed(reason);
                tracing::warn!(
                    session = id,
                    call = kind.as_str(),
                    reason = reason.as_str(),
                    error = %message,
                    %detail,
                    "session guest call failed; the session goes on"
                );
                Vec::new()
            }
        }
    }

    fn apply(&self, effects: Vec<Effect>) {
        let sessions = &self.services.sessions;
        for effect in effects {
            match effect {
                Effect::Send((id, data)) => {
                    sessions.send(id, Bytes::from(data));
                }
                Effect::Broadcast(data) => {
                    sessions.broadcast(Bytes::from(data));
                }
                Effect::Close((id, reason)) => {
                    sessions.close(id, reason);
                }
            }
        }
    }
}

/// The frames of `effects` when the session can write them itself: all of
/// them are sends to session `id` and nothing waits in its mailbox, so they
/// go out in the order the guest returned them, after everything queued
/// before, without the session table's lock, queue and wake-up (a tick's
/// usual answer). Anything else goes through the table (`Err`).
fn own_frames(id: SessionId, effects: Vec<Effect>, mailbox: &Mailbox) -> Result<Vec<Bytes>, Vec<Effect>> {
    let own = |effect: &Effect| matches!(effect, Effect::Send((to, _)) if *to == id);
    if !mailbox.is_empty() || !effects.iter().all(own) {
        return Err(effects);
    }
    Ok(effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Send((_, data)) => Some(Bytes::from(data)),
            _ => None,
        })
        .collect())
}

/// Makes one call of the session contract on a warm instance.
async fn call_guest(warm: &mut Warm, id: SessionId, call: Call) -> wasmtime::Result<Vec<Effect>> {
    let guest = warm.session.as_ref().expect("session guests have the export");
    let handler = guest.scalelab_guests_session_handler();
    let store = &mut warm.store;
    match call {
        Call::Opened(peer) => handler.call_opened(&mut *store, id, &peer).await,
        Call::Received(data) => handler.call_received(&mut *store, id, &data).await,
        Call::Closed(reason) => handler.call_closed(&mut *store, id, &reason).await,
        Call::Tick => handler.call_tick(&mut *store).await,
        Call::SessionTick => handler.call_session_tick(&mut *store, id).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::session_table::SessionTable;

    fn send(to: SessionId, data: &str) -> Effect {
        Effect::Send((to, data.as_bytes().to_vec()))
    }

    #[test]
    fn a_session_writes_its_own_frames_itself_only_when_that_keeps_the_order() {
        let table = SessionTable::new(1 << 20);
        let (me, mut mailbox) = table.open();
        let (other, _other_mailbox) = table.open();
        let (me, other) = (me.id, other.id);

        let frames = own_frames(me, vec![send(me, "clock"), send(me, "value")], &mailbox).unwrap();
        assert_eq!(frames, [Bytes::from("clock"), Bytes::from("value")], "in the guest's order");
        assert_eq!(own_frames(me, Vec::new(), &mailbox).unwrap(), Vec::<Bytes>::new());

        // A frame for another session, a broadcast or a close: all through the table.
        for mixed in [
            vec![send(me, "a"), send(other, "b")],
            vec![send(me, "a"), Effect::Broadcast(b"all".to_vec())],
            vec![Effect::Close((me, "bye".into()))],
        ] {
            assert!(own_frames(me, mixed, &mailbox).is_err());
        }

        // Something already queued for this session goes out first: through the table.
        assert!(table.send(me, Bytes::from("queued")));
        assert!(own_frames(me, vec![send(me, "later")], &mailbox).is_err());
        assert!(matches!(mailbox.try_recv(), Some(Outgoing::Data(data)) if data == "queued"));
        assert!(own_frames(me, vec![send(me, "now")], &mailbox).is_ok());
    }
}
