//! What the host keeps inside each guest `Store`: the WASI and wasi:http
//! contexts, and the memory cap that records when a guest hits it.
//!
//! A store lives for one instance (a few calls), and nothing here must
//! outlive it: what lasts is in the shared [`Services`]. The
//! sandbox is explicit ([`Grants`]): no arguments, no environment but the
//! config file's `[env]` table, no directory but the config file's
//! `[mounts]` (read-only), no database but the configured one, TCP, UDP and
//! name lookup refused, outgoing HTTP requests refused. Guest stdout and
//! stderr go to the host's stderr.

use crate::runtime::services::Services;
use crate::runtime::sql::Database;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// What a guest's instances may reach beyond the call: the only openings in
/// the sandbox, all from the guest configuration.
#[derive(Clone, Default)]
pub struct Grants {
    /// WASI environment variables (`[env]`).
    pub env: BTreeMap<String, String>,
    /// Directories the guest sees read-only: guest path -> host directory (`[mounts]`).
    pub mounts: BTreeMap<String, PathBuf>,
    /// The database behind the `sql` import; `None`: it answers `not-configured`.
    pub database: Option<Arc<Database>>,
}

pub struct GuestState {
    /// The host services behind our own imports (state, metrics, sessions).
    pub services: Arc<Services>,
    /// The guest's name, for the log lines it writes.
    pub guest: Arc<str>,
    /// The openings of the sandbox, shared by every instance of the guest.
    pub grants: Arc<Grants>,
    /// When the current call must end (`call::arm`), so that host calls that
    /// wait (SQL) stop in time; `None` without a deadline.
    pub deadline: Option<Instant>,
    /// The client of the HTTP request being answered (`wit/client.wit`),
    /// set for each request: wasi:http does not tell a guest who sent it.
    pub client: Option<IpAddr>,
    /// The body of the HTTP request being answered, which the host read
    /// whole before the call, and the rep of that request's resource
    /// (`request.body`, `wit/request.wit`); set for each request.
    pub request_body: Option<(u32, bytes::Bytes)>,
    wasi: WasiCtx,
    /// When `wasi` was built: a context is handed on to later instances for
    /// a bounded time only (`Instances::give_back`).
    wasi_built: Instant,
    http: WasiHttpCtx,
    /// Resources (requests, streams, fields) handed to the guest.
    table: ResourceTable,
    hooks: DenyOutgoing,
    /// The memory cap; also tells, after a failure, whether the guest hit it.
    pub memory: MemoryCap,
}

impl GuestState {
    /// State of a new instance, given what its guest was granted.
    pub fn new(max_memory: usize, grants: Arc<Grants>, services: Arc<Services>, guest: Arc<str>) -> GuestState {
        let wasi = (Instant::now(), wasi_context(&grants, &guest));
        GuestState::around(wasi, max_memory, grants, services, guest)
    }

    /// State of a new instance around the WASI context of an earlier
    /// instance of the same guest ([`GuestState::into_wasi`]), with the
    /// instant it was built. Building a context seeds two random generators
    /// and allocates its parts, a tenth of what a fresh instance costs; and a
    /// context holds nothing a guest can change but the state of those
    /// generators (its environment, mounts and streams are the guest's
    /// grants). Resources live in the table, which is new.
    pub fn around(
        (wasi_built, wasi): (Instant, WasiCtx),
        max_memory: usize,
        grants: Arc<Grants>,
        services: Arc<Services>,
        guest: Arc<str>,
    ) -> GuestState {
        GuestState {
            wasi_built,
            services,
            guest,
            grants,
            deadline: None,
            client: None,
            request_body: None,
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyOutgoing,
            memory: MemoryCap::new(max_memory),
        }
    }

    /// The WASI context with the instant it was built, for a later instance
    /// of the same guest.
    pub fn into_wasi(self) -> (Instant, WasiCtx) {
        (self.wasi_built, self.wasi)
    }
}

/// The WASI context of an instance: the guest's grants and nothing else.
fn wasi_context(grants: &Grants, guest: &str) -> WasiCtx {
    let mut wasi = WasiCtxBuilder::new();
    // Mounts are read-only local directories (ConfigMaps, volumes): their
    // file operations take microseconds on the calling thread, where a
    // round trip through tokio's blocking pool for each one cost most of
    // the time of a route that reads a small file. Set before the
    // preopens: each directory takes the setting when it is added.
    wasi.allow_blocking_current_thread(true);
    for (name, value) in &grants.env {
        wasi.env(name, value);
    }
    for (guest_path, host) in &grants.mounts {
        // Checked when the configuration was read; a directory removed
        // since is left out (the guest sees it missing), not fatal.
        if let Err(e) = wasi.preopened_dir(host, guest_path, FsPerms::ReadOnly) {
            tracing::warn!(guest = %guest, mount = %guest_path, dir = %host.display(), error = %e, "mount left out");
        }
    }
    wasi.inherit_stdout().inherit_stderr().allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build()
}

/// A store for one new instance: every store of the host is made here. The
/// memory cap is the store's limiter, and epoch checks (compiled in when a
/// deadline is configured) get plenty of room while start functions run;
/// each call then sets its own deadline (`call::arm`), which the store's
/// epoch callback reads.
pub fn new_store(engine: &Engine, state: GuestState) -> Store<GuestState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    store.set_epoch_deadline(u64::MAX / 2);
    store.epoch_deadline_callback(crate::runtime::call::epoch_callback);
    store
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Guests get no network: every outgoing wasi:http request is denied.
/// Header rules are wasmtime's but for `Proxy-Authenticate`, which a guest
/// answering 407 must send (httpbin's `/status/407`).
struct DenyOutgoing;

/// wasmtime's forbidden headers, less `Proxy-Authenticate`: one filter for
/// the process, since wasmtime asks for it with every header map.
static FORBIDDEN_HEADERS: std::sync::LazyLock<wasmtime_wasi_http::ForbiddenHeaderFilter> = std::sync::LazyLock::new(|| {
    std::sync::Arc::new(|name: &http::HeaderName| {
        *name != http::header::PROXY_AUTHENTICATE && wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    })
});

/// Whether a guest may not set the header `name` (wasi:http's fields and
/// `response.send` apply the same rule).
pub fn is_forbidden(name: &http::HeaderName) -> bool {
    FORBIDDEN_HEADERS(name)
}

impl WasiHttpHooks for DenyOutgoing {
    /// The rule itself, not through `forbidden_header_filter`: that hands
    /// out a clone of one `Arc` per header checked, two atomic operations
    /// on a count every core shares.
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        is_forbidden(name)
    }

    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        FORBIDDEN_HEADERS.clone()
    }

    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// `StoreLimits` plus a record of whether a growth was refused, so that a
/// failed call can be reported as "memory" rather than as a generic trap.
pub struct MemoryCap {
    limits: StoreLimits,
    /// Set when the guest asked for more memory than the cap allows.
    pub exceeded: bool,
}

impl MemoryCap {
    fn new(max_memory: usize) -> MemoryCap {
        let limits = StoreLimitsBuilder::new().memory_size(max_memory).trap_on_grow_failure(true).build();
        MemoryCap { limits, exceeded: false }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let verdict = self.limits.memory_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.exceeded = true;
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.exceeded = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
