//! The host services every guest reaches through its imports (`state`,
//! `metrics`, `log`, `sessions`): one set per process, created at start-up and
//! kept across guest swaps, so that a swap loses no state.

use crate::metrics::Metrics;
use crate::runtime::declared_metrics::DeclaredMetrics;
use crate::runtime::session_table::SessionTable;
use crate::runtime::shared_state::SharedState;

pub struct Services {
    pub state: SharedState,
    pub metrics: DeclaredMetrics,
    pub sessions: SessionTable,
}

impl Services {
    pub fn new(metrics: &Metrics) -> Services {
        Services {
            state: SharedState::new(metrics.state_keys.clone()),
            metrics: DeclaredMetrics::new(metrics.registry()),
            sessions: SessionTable::default(),
        }
    }
}
