//! Warm guest instances, reused across calls, and the one place that runs a
//! call on one ([`Instances::call`]): take an instance, arm its deadline, run
//! the call, give the instance back after a clean call or drop it after a
//! failure.
//!
//! Creating a store and an instance per request costs more than the request
//! itself for small workloads: mostly the pooling allocator resetting the
//! instance's memory afterwards (page-table work and TLB shootdowns across
//! cores). So an instance whose call returned normally goes back to an idle
//! list and serves a later request, up to `--instance-reuse` requests in all;
//! one that trapped, ran out of memory or was cut off by the deadline is
//! dropped, since wasmtime does not allow re-entering it.
//!
//! Isolation, explicitly: requests served by the same instance share its
//! linear memory, so what one request leaves in memory a later one could read.
//! Guests must not rely on it (the architecture rule: nothing that must
//! survive lives in guest memory), and `--instance-reuse 1` gives every
//! request a fresh instance when a test needs strict isolation. One instance
//! never serves two requests at once.

use crate::metrics::GuestMetrics;
use crate::runtime::bindings::{SessionGuest, SessionGuestIndices};
use crate::runtime::call::{Failure, Limits, arm, classify, within};
use crate::runtime::guest::Guest;
use crate::runtime::idle::IdleLists;
use crate::runtime::services::Services;
use crate::runtime::state::{Grants, GuestState, new_store};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::InstancePre;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};

/// Idle instances kept at most: enough for the concurrency of a busy pod,
/// few enough that a burst does not keep hundreds of memories resident.
pub const MAX_IDLE: usize = 64;

/// How long a WASI context is handed on from instance to instance before a
/// new one is built: long enough that fresh instances rarely build one, short
/// enough that a mount directory replaced on the host (not only its files)
/// reaches them soon.
pub const SPARE_CONTEXT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(1);

/// The future of one guest call on a warm instance (boxed: it borrows the instance).
pub type GuestCall<'a, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// An instance with its store, between or during requests.
pub struct Warm {
    pub store: Store<GuestState>,
    /// The HTTP export, when the guest has one.
    pub proxy: Option<Proxy>,
    /// The session export, when the guest has one.
    pub session: Option<SessionGuest>,
    /// Requests this instance has started, including the current one.
    uses: u32,
}

/// Whether a kept WASI context may still be handed on. A mount directory's
/// handle is opened when its context is built: one replaced on the host
/// since is seen only by contexts built after, so none is used past
/// `SPARE_CONTEXT_LIFETIME`, whether it waited in the list or not.
fn young(wasi: &(Instant, WasiCtx)) -> bool {
    wasi.0.elapsed() <= SPARE_CONTEXT_LIFETIME
}

pub struct Instances {
    pre: InstancePre<GuestState>,
    http: Option<ProxyIndices>,
    session: Option<SessionGuestIndices>,
    services: Arc<Services>,
    /// The guest's name, for its log lines.
    name: Arc<str>,
    max_memory: usize,
    /// Requests one instance may serve; 1 means a fresh instance every time.
    max_uses: u32,
    /// What every instance may reach beyond the call (environment, mounts, database).
    grants: Arc<Grants>,
    idle: IdleLists<Warm>,
    /// WASI contexts (with when they were built) of instances dropped after
    /// serving their share of requests, for the next new instances
    /// (`GuestState::around`), so that a fresh instance (`--instance-reuse
    /// 1`) need not build one.
    spare_wasi: Mutex<Vec<(Instant, WasiCtx)>>,
    /// Set once the guest is swapped out: its remaining calls (draining
    /// sessions, late requests) get fresh instances and keep none idle, so
    /// that pool slots go to the new guest.
    retired: AtomicBool,
    metrics: GuestMetrics,
}

impl Instances {
    pub fn new(guest: &Guest, services: Arc<Services>, limits: &Limits, grants: Arc<Grants>, metrics: GuestMetrics) -> Instances {
        Instances {
            pre: guest.pre.clone(),
            http: guest.http.clone(),
            session: guest.session.clone(),
            services,
            name: guest.name.as_str().into(),
            max_memory: limits.max_memory,
            max_uses: limits.instance_reuse.max(1),
            grants,
            idle: IdleLists::per_cpu(MAX_IDLE),
            spare_wasi: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
            metrics,
        }
    }

    /// Drops the idle instances and keeps no more (the guest was swapped out).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.idle.clear();
        self.spare_wasi.lock().unwrap().clear();
    }

    /// WASI contexts kept for new instances (for diagnostics and tests).
    pub fn spare_contexts(&self) -> usize {
        self.spare_wasi.lock().unwrap().len()
    }

    /// Runs `call` on a warm instance under `deadline`. After a clean call
    /// the instance goes back to the idle list; after a failure it is
    /// dropped before this returns (wasmtime does not allow re-entering it).
    ///
    /// Returns its future rather than being an `async fn`: an `async fn`
    /// keeps its arguments twice in its future (rust-lang/rust#62958), and
    /// every caller's future holds this one.
    #[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice in its future (rust-lang/rust#62958)")]
    pub fn call<T>(
        &self,
        deadline: Option<std::time::Duration>,
        call: impl for<'a> FnOnce(&'a mut Warm) -> GuestCall<'a, T>,
    ) -> impl Future<Output = Result<T, Failure>> {
        async move {
            let mut warm = match self.reuse() {
                Some(warm) => warm,
                // Boxed: instantiation's future is large, and held inline it
                // would make every call's future larger, and each move of a
                // future a copy of all of it (the HTTP handler's was 3,544
                // bytes with it inline, 2,312 boxed: about 1% fewer host
                // instructions a request, callgrind, todo `GET /`). Most
                // calls reuse an instance and never take this path.
                None => match Box::pin(self.instantiate()).await {
                    Ok(warm) => warm,
                    Err((e, store)) => return Err(classify(&e, &store, deadline)),
                },
            };
            arm(&mut warm.store, deadline);
            let outcome = within(deadline, call(&mut warm)).await;
            let result = match outcome {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(classify(&e, &warm.store, deadline)),
                Err(failure) => Err(failure),
            };
            if result.is_ok() {
                self.give_back(warm);
            }
            result
        }
    }

    /// An idle instance, counted as reused. Not `async`: the common case
    /// then adds no future of its own to every call's.
    fn reuse(&self) -> Option<Warm> {
        let mut warm = self.idle.take()?;
        warm.uses += 1;
        self.metrics.reused();
        Some(warm)
    }

    /// A new instance, in a new store.
    async fn instantiate(&self) -> Result<Warm, (wasmtime::Error, Store<GuestState>)> {
        let started = Instant::now();
        let (grants, services, name) = (self.grants.clone(), self.services.clone(), self.name.clone());
        let state = match self.spare_context() {
            Some(wasi) => GuestState::around(wasi, self.max_memory, grants, services, name),
            None => GuestState::new(self.max_memory, grants, services, name),
        };
        let mut store = new_store(self.pre.engine(), state);
        let loaded = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let proxy = self.http.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?;
            let session = self.session.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?;
            wasmtime::Result::Ok((proxy, session))
        }
        .await;
        match loaded {
            Ok((proxy, session)) => {
                self.metrics.instantiated(started.elapsed());
                Ok(Warm { store, proxy, session, uses: 1 })
            }
            Err(e) => Err((e, store)),
        }
    }

    /// A kept WASI context still young enough to hand on; older ones met on
    /// the way are dropped (outside the lock).
    fn spare_context(&self) -> Option<(Instant, WasiCtx)> {
        let mut stale = Vec::new();
        let found = {
            let mut spare = self.spare_wasi.lock().unwrap();
            loop {
                match spare.pop() {
                    Some(wasi) if young(&wasi) => break Some(wasi),
                    Some(old) => stale.push(old),
                    None => break None,
                }
            }
        };
        drop(stale);
        found
    }

    /// Returns an instance whose call ended normally, unless it has served
    /// its share of requests (then only its WASI context is kept, for a new
    /// instance) or enough instances are idle already.
    fn give_back(&self, warm: Warm) {
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        if warm.uses >= self.max_uses {
            let wasi = warm.store.into_data().into_wasi();
            if !young(&wasi) {
                return;
            }
            let mut spare = self.spare_wasi.lock().unwrap();
            if spare.len() < MAX_IDLE {
                spare.push(wasi);
            }
            return;
        }
        self.idle.give(warm);
    }
}
