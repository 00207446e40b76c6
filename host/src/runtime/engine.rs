//! The one wasmtime `Engine` of the process, configured in one place.
//!
//! Everything that shapes compiled code lives here, because a precompiled
//! guest (`.cwasm`, compile cache) is only reusable by an engine configured
//! the same way: the compile cache keys artefacts by
//! `Engine::precompile_compatibility_hash`.

use anyhow::{Context, Result};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A guest running CPU-bound code yields to the
/// async runtime at every tick, so no guest holds a worker thread for longer
/// than this, and the deadline timer (a tokio timer) can fire on time.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Settings of the engine and its instance pool.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Whether compiled code checks the epoch (needed for deadlines).
    pub epoch_interruption: bool,
    /// Largest linear memory of one instance, in bytes (the pool's limit;
    /// the store's limiter enforces it too, whatever the reservation).
    pub max_memory: u64,
    /// Instances that can exist at once: one per request in flight.
    pub pool_slots: u32,
}

/// Core instances, tables and memories one component may bring. A Rust
/// `wasm32-wasip2` component has a handful of core instances (main module,
/// WASI adapter, shims) and one or two memories; these leave headroom for
/// components from other toolchains.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const TABLES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 2;

/// How the pool reserves address space for each linear memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// 4 GiB plus a guard region per memory: every 32-bit address a guest can
    /// form lands in the reservation or its guard, so compiled code needs no
    /// bounds checks (an out-of-bounds access faults and traps). Costs about
    /// 4 GiB of unbacked address space per pool slot: terabytes for a pool
    /// of hundreds, which a 64-bit process normally has.
    Guarded,
    /// Only `--max-memory` per memory: every load and store carries an
    /// explicit bounds check. The fallback when the guarded pool cannot be
    /// reserved (an address-space limit such as `ulimit -v`).
    Checked,
}

impl Reservation {
    pub fn as_str(self) -> &'static str {
        match self {
            Reservation::Guarded => "guarded",
            Reservation::Checked => "checked",
        }
    }
}

impl std::str::FromStr for Reservation {
    type Err = String;

    fn from_str(s: &str) -> Result<Reservation, String> {
        match s {
            "guarded" => Ok(Reservation::Guarded),
            "checked" => Ok(Reservation::Checked),
            _ => Err(format!("{s:?} is not a memory reservation (guarded or checked)")),
        }
    }
}

/// Bytes of each freed memory and table slot that are reset in place
/// (memset) and stay resident, rather than being given back to the kernel.
///
/// Giving pages back (madvise) makes the next instance of the slot take a
/// page fault for every page it touches, and each madvise flushes the TLBs
/// of every core that ran the process (an inter-processor interrupt): with a
/// fresh instance per request (`--instance-reuse 1`) that was about half of
/// the CPU per request. With the kernel's `PAGEMAP_SCAN` (Linux 6.7 or
/// later; without it wasmtime memsets this prefix whole) only the pages the
/// guest wrote are reset. Beyond this prefix, pages are still given back.
/// The cost: up to this much stays resident per warm slot (the pool keeps at
/// most 100 unused warm slots), and a guest's small heap sits well within it.
const KEEP_RESIDENT: usize = 2 << 20;

/// The guarded reservation: the whole 32-bit address space of a memory.
const GUARDED_RESERVATION: u64 = 1 << 32;

/// Builds the engine with the guarded reservation, or with the checked one
/// (logged) when the address space for the guarded pool is not available.
pub fn build(settings: &EngineSettings) -> Result<(Engine, Reservation)> {
    if settings.max_memory <= GUARDED_RESERVATION {
        match build_with(settings, Reservation::Guarded) {
            Ok(engine) => return Ok((engine, Reservation::Guarded)),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                pool_slots = settings.pool_slots,
                "no address space for 4 GiB per memory slot: guest memory accesses get explicit bounds checks"
            ),
        }
    }
    Ok((build_with(settings, Reservation::Checked)?, Reservation::Checked))
}

/// Builds the engine with exactly this reservation (a compile child does,
/// so that its code matches the serving host's engine).
pub fn build_with(settings: &EngineSettings, reservation: Reservation) -> Result<Engine> {
    let max_memory = usize::try_from(settings.max_memory).context("--max-memory is too large")?;
    let slots = settings.pool_slots;

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_tables(slots.saturating_mul(TABLES_PER_COMPONENT))
        .total_memories(slots.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_stacks(slots)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_memory_size(max_memory)
        // A slot being freed resets its memory and tables with memset, page by
        // page where the guest wrote (PAGEMAP_SCAN), rather than with madvise.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(settings.epoch_interruption)
        // Copy-on-write initialisation of linear memory from the compiled image.
        .memory_init_cow(true)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match reservation {
        // wasmtime's default guard region (32 MiB) follows each reservation.
        Reservation::Guarded => config.memory_reservation(GUARDED_RESERVATION),
        Reservation::Checked => config.memory_reservation(settings.max_memory),
    };
    Engine::new(&config).map_err(anyhow::Error::from).context("configuring the wasmtime engine")
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a dedicated thread, for
/// the life of the process.
pub fn spawn_epoch_ticker(engine: &Engine) -> Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("starting the epoch ticker thread")?;
    Ok(())
}
