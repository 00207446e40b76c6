//! The host services every guest reaches through its imports (`state`,
//! `metrics`, `log`, `sessions`, `sql`): one set per process, created at
//! start-up and kept across guest swaps, so that a swap loses no state.

use crate::metrics::Metrics;
use crate::runtime::declared_metrics::DeclaredMetrics;
use crate::runtime::session_table::SessionTable;
use crate::runtime::shared_state::SharedState;
use crate::runtime::sql::Databases;

pub struct Services {
    pub state: SharedState,
    pub metrics: DeclaredMetrics,
    pub sessions: SessionTable,
    /// Database pools by configuration, kept across swaps.
    pub databases: Databases,
}

impl Services {
    /// `max_result`: the largest SQL result, in bytes; `max_outgoing`: the
    /// most bytes queued for one session.
    pub fn new(metrics: &Metrics, max_result: usize, max_outgoing: usize) -> Services {
        Services {
            state: SharedState::new(metrics.state_keys.clone()),
            metrics: DeclaredMetrics::new(metrics.registry()),
            sessions: SessionTable::new(max_outgoing),
            databases: Databases::new(&metrics.registry(), max_result),
        }
    }
}
