//! The one wasmtime `Engine` of the process, configured in one place.
//!
//! Everything that shapes compiled code lives here, because a precompiled
//! guest (`.cwasm`, compile cache) is only reusable by an engine configured
//! the same way: the compile cache keys artefacts by
//! `Engine::precompile_compatibility_hash`.

use anyhow::{Context, Result};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A guest running CPU-bound code yields to the
/// async runtime at every tick, so no guest holds a worker thread for longer
/// than this, and the deadline timer (a tokio timer) can fire on time.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Settings of the engine and its instance pool.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Whether compiled code checks the epoch (needed for deadlines).
    pub epoch_interruption: bool,
    /// Largest linear memory of one instance, in bytes. Also the virtual
    /// address space reserved per memory slot, instead of wasmtime's default
    /// 4 GiB plus guard: hundreds of slots stay at tens of GiB of (unbacked)
    /// address space, at the price of explicit bounds checks.
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

pub fn build(settings: &EngineSettings) -> Result<Engine> {
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
        .max_memory_size(max_memory);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(settings.epoch_interruption)
        // Copy-on-write initialisation of linear memory from the compiled image.
        .memory_init_cow(true)
        .memory_reservation(settings.max_memory)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
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
