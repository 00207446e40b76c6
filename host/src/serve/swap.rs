//! Hot-swapping the guest: compile, link and instantiate the new guest once,
//! and run its `setup`, *before* switching, then switch atomically.
//!
//! The serving state of one guest is an `Active` (`runtime/active.rs`); the
//! `LiveGuest` holds the current one. A request loads it once when it arrives
//! and keeps its `Arc` to the end, so requests that started on the old guest
//! finish on it while new ones go to the new guest, and no request fails
//! because of a swap.
//! A guest that cannot be loaded is rejected with a log line and a metric, and
//! the old guest keeps serving (readiness is untouched).

use crate::metrics::Metrics;
use crate::runtime::active::{Active, ActiveParts, GuestInfo};
use crate::runtime::cache::CompileCache;
use crate::runtime::call::Limits;
use crate::runtime::guest::{self, Guest};
use crate::runtime::live::LiveGuest;
use crate::runtime::services::Services;
use crate::runtime::state::GuestState;
use crate::serve::settings::GrantsRequest;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Linker;

/// Where the new guest comes from.
pub enum GuestSource {
    /// A guest name or a path, as for `--guest`.
    Spec(String),
    /// A component uploaded through the admin API, with the name to show.
    Bytes { bytes: Vec<u8>, name: Option<String> },
}

/// A swap to perform.
pub struct SwapRequest {
    pub source: GuestSource,
    /// New per-request deadline, or keep the current one.
    pub deadline: Option<Option<Duration>>,
    /// New memory cap, or keep the current one.
    pub max_memory: Option<u64>,
    /// The new guest's tick interval, instead of its own.
    pub tick_interval: Option<Duration>,
    /// Environment, mounts and database of the new guest; `None` keeps the current guest's.
    pub grants: Option<GrantsRequest>,
    /// What asked for it, for logs: "config file", "admin API".
    pub origin: &'static str,
}

/// How a successful swap went.
#[derive(Debug, Clone, Serialize)]
pub struct SwapReport {
    pub guest: GuestInfo,
    pub compile_ms: f64,
    pub switch_ms: f64,
}

/// Performs swaps, one at a time.
pub struct Swapper {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: CompileCache,
    guests_dir: Option<PathBuf>,
    /// Where uploaded components are written before loading.
    uploads: PathBuf,
    live: Arc<LiveGuest>,
    metrics: Arc<Metrics>,
    services: Arc<Services>,
    /// Whether compiled code checks epochs: a deadline needs it.
    epochs: bool,
    /// The memory each pool slot can hold; caps above it need a restart.
    max_memory_ceiling: u64,
    lock: tokio::sync::Mutex<()>,
}

pub struct SwapperParts {
    pub engine: Engine,
    /// Whether the engine compiles epoch checks (it does when started with a deadline).
    pub epochs: bool,
    pub linker: Linker<GuestState>,
    pub cache: CompileCache,
    pub guests_dir: Option<PathBuf>,
    pub uploads: PathBuf,
    pub live: Arc<LiveGuest>,
    pub metrics: Arc<Metrics>,
    pub services: Arc<Services>,
    pub max_memory_ceiling: u64,
}

impl Swapper {
    pub fn new(parts: SwapperParts) -> Swapper {
        Swapper {
            engine: parts.engine,
            linker: parts.linker,
            cache: parts.cache,
            guests_dir: parts.guests_dir,
            uploads: parts.uploads,
            live: parts.live,
            metrics: parts.metrics,
            services: parts.services,
            epochs: parts.epochs,
            max_memory_ceiling: parts.max_memory_ceiling,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> GuestInfo {
        self.live.active().info()
    }

    /// The tick interval the config file set for the current guest, if any.
    pub fn current_tick_override(&self) -> Option<Duration> {
        self.live.active().tick_override
    }

    /// Loads the new guest and switches to it; on any error the old guest
    /// keeps serving.
    pub async fn swap(&self, request: SwapRequest) -> Result<SwapReport> {
        let _one_at_a_time = self.lock.lock().await;
        let origin = request.origin;
        let result = self.try_swap(request).await;
        match &result {
            Ok(report) => {
                self.metrics.swaps.swapped(true, Some((report.compile_ms, report.switch_ms)));
                tracing::info!(
                    step = "swap",
                    origin,
                    guest = %report.guest.name,
                    sha256 = %report.guest.sha256,
                    compile_ms = report.compile_ms,
                    switch_ms = report.switch_ms,
                    "swapped to the new guest"
                );
            }
            Err(e) => {
                self.metrics.swaps.swapped(false, None);
                tracing::error!(
                    step = "swap",
                    origin,
                    error = format!("{e:#}"),
                    "swap rejected; the current guest keeps serving"
                );
            }
        }
        result
    }

    async fn try_swap(&self, request: SwapRequest) -> Result<SwapReport> {
        let current = self.live.active();
        let deadline = request.deadline.unwrap_or(current.limits.deadline);
        if deadline.is_some() && !self.epochs {
            bail!("a deadline needs a host started with one (it was started with --deadline off); restart to enable it");
        }
        let max_memory = request.max_memory.unwrap_or(current.limits.max_memory as u64);
        if max_memory > self.max_memory_ceiling {
            bail!(
                "max_memory {max_memory} is above the {} bytes the host reserved per instance at start; restart to raise it",
                self.max_memory_ceiling
            );
        }
        let max_memory = usize::try_from(max_memory).context("max_memory is too large")?;

        let started = Instant::now();
        let (path, source) = match request.source {
            GuestSource::Spec(spec) => {
                let path = guest::resolve(&spec, self.guests_dir.as_deref())?;
                let source = path.display().to_string();
                (path, source)
            }
            GuestSource::Bytes { bytes, name } => {
                let path = self.store_upload(&bytes, name.as_deref())?;
                let source = path.display().to_string();
                (path, source)
            }
        };
        let grants = match request.grants {
            Some(asked) => Arc::new(asked.open(&self.services.databases)?),
            None => current.grants.clone(),
        };
        let guest = Guest::load(&self.engine, &self.linker, &self.cache, &path, max_memory, &grants, &self.services).await?;
        guest.setup(&self.engine, max_memory, &grants, &self.services, deadline).await?;
        let compile = started.elapsed();

        let started = Instant::now();
        let limits = Limits { deadline, max_memory, ..current.limits.clone() };
        let parts = ActiveParts { guest, limits, grants, source, tick_override: request.tick_interval };
        let active = Active::new(parts, &self.metrics, &self.services);
        let info = active.info();
        self.live.switch_to(active);
        current.instances.retire();
        self.metrics.instances.retire_guest(&current.guest.name, &current.guest.sha256, &info.name, &info.sha256);
        Ok(SwapReport { guest: info, compile_ms: compile.as_secs_f64() * 1e3, switch_ms: started.elapsed().as_secs_f64() * 1e3 })
    }

    /// Writes an uploaded component where the loader can read it: in a
    /// directory named by its content, under the name it was given.
    fn store_upload(&self, bytes: &[u8], name: Option<&str>) -> Result<PathBuf> {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        let dir = self.uploads.join(&sha[..16]);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.wasm", name.unwrap_or("upload")));
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}
