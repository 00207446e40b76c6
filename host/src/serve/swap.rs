//! Hot-swapping the guest: compile, link and instantiate the new guest once
//! *before* switching, then switch atomically.
//!
//! The serving state of one guest is an [`Active`]: the guest, its warm
//! instances, its limits and metric handles. The handler holds the current one
//! in an `ArcSwap`; a request loads it once when it arrives and keeps its
//! `Arc` to the end, so requests that started on the old guest finish on it
//! while new ones go to the new guest, and no request fails because of a swap.
//! A guest that cannot be loaded is rejected with a log line and a metric, and
//! the old guest keeps serving (readiness is untouched).

use crate::cache::CompileCache;
use crate::guest::{self, Guest};
use crate::handler::{Handler, Limits};
use crate::instances::Instances;
use crate::metrics::{GuestMetrics, Metrics};
use crate::services::Services;
use crate::state::GuestState;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Linker;

/// Everything needed to serve one guest.
pub struct Active {
    pub guest: Guest,
    pub instances: Instances,
    pub metrics: GuestMetrics,
    pub limits: Limits,
    /// When this guest started serving.
    pub since: SystemTime,
    /// Its WASI environment (the config file's `[env]`).
    pub env: BTreeMap<String, String>,
    /// The guest file (an uploaded component is written to a file first).
    pub source: String,
    /// The config file's `tick_interval`, which wins over the guest's own.
    pub tick_override: Option<Duration>,
}

impl Active {
    pub fn new(
        guest: Guest,
        limits: Limits,
        env: &BTreeMap<String, String>,
        metrics: &Metrics,
        services: &Arc<Services>,
        source: String,
        tick_override: Option<Duration>,
    ) -> Active {
        let guest_metrics = metrics.for_guest(&guest.name, &guest.sha256);
        let instances = Instances::new(
            &guest,
            services.clone(),
            limits.max_memory,
            limits.instance_reuse,
            env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            guest_metrics.clone(),
        );
        Active {
            guest,
            instances,
            metrics: guest_metrics,
            limits,
            since: SystemTime::now(),
            env: env.clone(),
            source,
            tick_override,
        }
    }

    /// How often a session guest's `tick` runs: the config file's interval,
    /// else the guest's own; `None` for no ticks.
    pub fn tick_interval(&self) -> Option<Duration> {
        self.guest.session.as_ref()?;
        self.tick_override.or(self.guest.tick_interval)
    }

    /// What `GET /admin/guest` shows.
    pub fn info(&self) -> GuestInfo {
        GuestInfo {
            name: self.guest.name.clone(),
            sha256: self.guest.sha256.clone(),
            since: httpdate::fmt_http_date(self.since),
            world: self.guest.world(),
            source: self.source.clone(),
            deadline_ms: self.limits.deadline.map(|d| d.as_secs_f64() * 1e3),
            max_memory: self.limits.max_memory,
            tick_interval_ms: self.tick_interval().map(|d| d.as_secs_f64() * 1e3),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GuestInfo {
    pub name: String,
    pub sha256: String,
    /// When it started serving (HTTP date).
    pub since: String,
    pub world: &'static str,
    pub source: String,
    pub deadline_ms: Option<f64>,
    pub max_memory: usize,
    /// Session guests: the interval of `tick` calls.
    pub tick_interval_ms: Option<f64>,
}

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
    /// Environment for the new guest.
    pub env: BTreeMap<String, String>,
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
    handler: Arc<Handler>,
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
    pub handler: Arc<Handler>,
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
            handler: parts.handler,
            metrics: parts.metrics,
            services: parts.services,
            epochs: parts.epochs,
            max_memory_ceiling: parts.max_memory_ceiling,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> GuestInfo {
        self.handler.active().info()
    }

    /// The environment the current guest was given (a swap through the admin
    /// API keeps it).
    pub fn current_env(&self) -> BTreeMap<String, String> {
        self.handler.active().env.clone()
    }

    /// The tick interval the config file set for the current guest, if any.
    pub fn current_tick_override(&self) -> Option<Duration> {
        self.handler.active().tick_override
    }

    /// Loads the new guest and switches to it; on any error the old guest
    /// keeps serving.
    pub async fn swap(&self, request: SwapRequest) -> Result<SwapReport> {
        let _one_at_a_time = self.lock.lock().await;
        let origin = request.origin;
        let result = self.try_swap(request).await;
        match &result {
            Ok(report) => {
                self.metrics.swapped(true, Some((report.compile_ms, report.switch_ms)));
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
                self.metrics.swapped(false, None);
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
        let current = self.handler.active();
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
        let guest = Guest::load(&self.engine, &self.linker, &self.cache, &path, max_memory, &self.services).await?;
        let compile = started.elapsed();

        let started = Instant::now();
        let limits = Limits { deadline, max_memory, ..current.limits.clone() };
        let active = Active::new(guest, limits, &request.env, &self.metrics, &self.services, source, request.tick_interval);
        let info = active.info();
        self.handler.switch_to(active);
        current.instances.retire();
        self.metrics.retire_guest(&current.guest.name, &current.guest.sha256, &info.name, &info.sha256);
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
