//! Readiness follows the database: while the guest being served uses SQL
//! and its database does not answer `SELECT 1`, `/readyz` says 503, so that
//! Kubernetes sends traffic elsewhere; liveness is untouched, so the pod is
//! not restarted for a database's outage. Checked every [`INTERVAL`] in the
//! background, never per probe.

use crate::runtime::live::LiveGuest;
use crate::serve::admin::Readiness;
use std::sync::Arc;
use std::time::Duration;

/// How often the database is checked.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// How long one check may take before the database counts as unreachable.
const LIMIT: Duration = Duration::from_secs(2);

/// Runs until the process exits.
pub async fn run(live: Arc<LiveGuest>, ready: Readiness) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let active = live.active();
        let database = active.grants.database.clone().filter(|_| active.guest.uses_sql);
        drop(active);
        let Some(database) = database else {
            ready.set_database(true);
            continue;
        };
        let result = database.ping(LIMIT).await;
        let was = ready.set_database(result.is_ok());
        match result {
            Err(e) if was => tracing::warn!(database = %database.label, error = ?e, "database unreachable: not ready"),
            Ok(()) if !was => tracing::info!(database = %database.label, "database reachable again: ready"),
            _ => {}
        }
    }
}
