//! One guest's serving state ([`Active`]): the loaded guest, its warm
//! instances, its limits and metric handles, and what `GET /admin/guest`
//! shows of it. A swap builds a new `Active` and `live.rs` switches to it;
//! calls under way keep the `Arc` of the one they started on.

use crate::metrics::{GuestMetrics, Metrics};
use crate::runtime::call::Limits;
use crate::runtime::guest::Guest;
use crate::runtime::instances::Instances;
use crate::runtime::services::Services;
use crate::runtime::state::Grants;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Everything needed to serve one guest.
pub struct Active {
    pub guest: Guest,
    pub instances: Instances,
    pub metrics: GuestMetrics,
    pub limits: Limits,
    /// When this guest started serving.
    pub since: SystemTime,
    /// What its instances may reach: environment, mounts, database.
    pub grants: Arc<Grants>,
    /// The guest file (an uploaded component is written to a file first).
    pub source: String,
    /// The config file's `tick_interval`, which wins over the guest's own.
    pub tick_override: Option<Duration>,
}

/// What an `Active` is made of, besides the process-wide metrics and services.
pub struct ActiveParts {
    pub guest: Guest,
    pub limits: Limits,
    pub grants: Arc<Grants>,
    pub source: String,
    pub tick_override: Option<Duration>,
}

impl Active {
    pub fn new(parts: ActiveParts, metrics: &Metrics, services: &Arc<Services>) -> Active {
        let ActiveParts { guest, limits, grants, source, tick_override } = parts;
        let guest_metrics = metrics.for_guest(&guest.name, &guest.sha256);
        let instances = Instances::new(&guest, services.clone(), &limits, grants.clone(), guest_metrics.clone());
        Active { guest, instances, metrics: guest_metrics, limits, since: SystemTime::now(), grants, source, tick_override }
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
            database: self.grants.database.as_ref().map(|d| d.label.clone()),
            mounts: self.grants.mounts.keys().cloned().collect(),
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
    /// The database its `sql` import reaches (password hidden), if any.
    pub database: Option<String>,
    /// The directories it sees, read-only.
    pub mounts: Vec<String>,
}
