//! The host services every guest reaches through its imports (`state`,
//! `metrics`, `log`, `sessions`, `sql`): one set per process, created at
//! start-up and kept across guest swaps, so that a swap loses no state.

use crate::metrics::Metrics;
use crate::runtime::declared_metrics::DeclaredMetrics;
use crate::runtime::session_table::SessionTable;
use crate::runtime::shared_state::{SharedState, StateLimits};
use crate::runtime::sql::Databases;

pub struct Services {
    pub state: SharedState,
    pub metrics: DeclaredMetrics,
    pub sessions: SessionTable,
    /// Database pools by configuration, kept across swaps.
    pub databases: Databases,
}

/// What bounds the services' memory, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct ServiceLimits {
    /// The largest SQL result, in bytes (`--sql-max-result`).
    pub max_result: usize,
    /// The most bytes queued for one session (`--session-max-outgoing`).
    pub max_outgoing: usize,
    /// The shared state's bounds (`--state-max-value`, `--state-max-bytes`).
    pub state: StateLimits,
    /// The most metrics guests may declare (`--guest-max-metrics`).
    pub max_metrics: usize,
}

impl ServiceLimits {
    /// Roomy limits, for tests and tools that run guests outside `serve`.
    pub fn generous() -> ServiceLimits {
        ServiceLimits {
            max_result: 1 << 20,
            max_outgoing: 1 << 20,
            state: StateLimits { max_entry: 1 << 20, max_total: 64 << 20 },
            max_metrics: 1000,
        }
    }
}

impl Services {
    pub fn new(metrics: &Metrics, limits: ServiceLimits) -> Services {
        Services {
            state: SharedState::new(limits.state, metrics.state_keys.clone(), metrics.state_bytes.clone()),
            metrics: DeclaredMetrics::new(metrics.registry(), limits.max_metrics),
            sessions: SessionTable::new(limits.max_outgoing),
            databases: Databases::new(&metrics.registry(), limits.max_result),
        }
    }
}
