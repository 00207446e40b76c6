//! Host side of our own WIT (`wit/session.wit`, `wit/host-services.wit`,
//! `wit/sql.wit`, `wit/client.wit`, `wit/request.wit`, `wit/response.wit`,
//! `wit/setup.wit`): the generated bindings, and the host services behind
//! each import, implemented on [`GuestState`] over the process-wide
//! [`Services`].
//!
//! `wasi:http` comes from wasmtime-wasi-http; this module covers only what is
//! ours. Bad input from a guest (an undeclared metric, say) is logged, not
//! fatal, and SQL errors are values the guest handles; the import errors
//! that trap are a shared-state write over its limits ([`StateLimit`]), a
//! response `response.send` cannot send ([`Refused`]), and `request.body`
//! asked of a request the call does not answer: each ends the call with its
//! message. Every import is synchronous but `sql`, which waits for the
//! database.

use crate::runtime::declared_metrics::Kind;
#[cfg(doc)]
use crate::runtime::shared_state::StateLimit;
use crate::runtime::state::GuestState;
#[cfg(doc)]
use crate::runtime::whole_response::Refused;
use bytes::Bytes;
use wasmtime::component::Resource;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "scalelab:guests/host-world",
    imports: {
        "scalelab:guests/sql": async,
        "scalelab:guests/state.set": trappable,
        "scalelab:guests/state.increment": trappable,
        "scalelab:guests/state.insert-if-absent": trappable,
        "scalelab:guests/request.head": trappable,
        "scalelab:guests/request.body": trappable,
        "scalelab:guests/response.send": trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq],
    // `request` and `response` take wasi:http's resources: wasmtime-wasi-http's own types.
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

/// The `setup` export (`wit/setup.wit`), found apart from the session export.
pub mod setup {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "scalelab:guests/setup-guest",
        exports: { default: async },
    });
}

pub use self::scalelab::guests::sql;
use self::scalelab::guests::{client, log, metrics, request, response, session_types, sessions, state};
/// The session export's bindings, by the name of the world guests target.
pub use HostWorld as SessionGuest;
pub use HostWorldIndices as SessionGuestIndices;
pub use exports::scalelab::guests::session_handler::{Effect, Peer, SessionOptions};

impl state::Host for GuestState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.services.state.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        Ok(self.services.state.set(key, value)?)
    }

    fn delete(&mut self, key: String) -> bool {
        self.services.state.delete(&key)
    }

    fn increment(&mut self, key: String, delta: i64) -> wasmtime::Result<i64> {
        Ok(self.services.state.increment(&key, delta)?)
    }

    fn insert_if_absent(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<bool> {
        Ok(self.services.state.insert_if_absent(key, value)?)
    }

    fn list_prefix(&mut self, prefix: String) -> Vec<(String, Vec<u8>)> {
        self.services.state.list_prefix(&prefix)
    }
}

impl metrics::Host for GuestState {
    fn declare(
        &mut self,
        name: String,
        help: String,
        kind: metrics::MetricKind,
        buckets: Vec<f64>,
        labels: Vec<(String, String)>,
    ) -> Result<(), String> {
        let kind = match kind {
            metrics::MetricKind::Counter => Kind::Counter,
            metrics::MetricKind::Gauge => Kind::Gauge,
            metrics::MetricKind::Histogram => Kind::Histogram,
        };
        self.services.metrics.declare(&name, &help, kind, &buckets, &labels)
    }

    fn read_process_stats(&mut self) -> metrics::ProcessStats {
        let (resident_bytes, cpu_seconds) = crate::process_stats::read();
        metrics::ProcessStats { resident_bytes, cpu_seconds }
    }

    fn add(&mut self, name: String, value: f64) {
        self.report(self.services.metrics.add(&name, value));
    }

    fn set(&mut self, name: String, value: f64) {
        self.report(self.services.metrics.set(&name, value));
    }

    fn observe(&mut self, name: String, value: f64) {
        self.report(self.services.metrics.observe(&name, value));
    }
}

impl GuestState {
    /// Logs a guest's misuse of the metrics interface.
    fn report(&self, result: Result<(), String>) {
        if let Err(message) = result {
            tracing::warn!(guest = %self.guest, error = %message, "guest metric update ignored");
        }
    }
}

impl log::Host for GuestState {
    fn log(&mut self, level: log::Level, message: String) {
        let guest = &*self.guest;
        match level {
            log::Level::Trace => tracing::trace!(target: "scalelab::guest", guest, "{message}"),
            log::Level::Debug => tracing::debug!(target: "scalelab::guest", guest, "{message}"),
            log::Level::Info => tracing::info!(target: "scalelab::guest", guest, "{message}"),
            log::Level::Warn => tracing::warn!(target: "scalelab::guest", guest, "{message}"),
            log::Level::Error => tracing::error!(target: "scalelab::guest", guest, "{message}"),
        }
    }
}

impl client::Host for GuestState {
    fn address(&mut self) -> Option<String> {
        self.client.map(|ip| ip.to_string())
    }
}

impl request::Host for GuestState {
    fn head(&mut self, request: Resource<HostIncomingRequest>) -> wasmtime::Result<request::RequestHead> {
        crate::runtime::request_head::head(&mut wasmtime_wasi_http::WasiHttpView::http(self), request.rep())
    }

    fn body(&mut self, request: Resource<HostIncomingRequest>) -> wasmtime::Result<Vec<u8>> {
        match &self.request_body {
            Some((rep, body)) if *rep == request.rep() => Ok(body.to_vec()),
            _ => Err(wasmtime::Error::msg("request.body: the request is not the one the current call answers")),
        }
    }
}

impl response::Host for GuestState {
    fn send(
        &mut self,
        out: Resource<HostResponseOutparam>,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    ) -> wasmtime::Result<()> {
        // A response the host cannot send traps, leaving `out` unset: the
        // client gets the trap's message.
        let response = crate::runtime::whole_response::build(status, headers, body).map_err(wasmtime::Error::msg)?;
        let out = wasmtime_wasi_http::WasiHttpView::http(self).table.delete(out)?;
        (out.send)(Ok(response));
        Ok(())
    }
}

impl session_types::Host for GuestState {}

impl sessions::Host for GuestState {
    fn count(&mut self) -> u32 {
        u32::try_from(self.services.sessions.count()).unwrap_or(u32::MAX)
    }

    fn send(&mut self, id: u64, data: Vec<u8>) -> bool {
        self.services.sessions.send(id, Bytes::from(data))
    }

    fn broadcast(&mut self, data: Vec<u8>) -> u32 {
        u32::try_from(self.services.sessions.broadcast(Bytes::from(data))).unwrap_or(u32::MAX)
    }

    fn close(&mut self, id: u64, reason: String) -> bool {
        self.services.sessions.close(id, reason)
    }
}

impl sql::Host for GuestState {
    async fn get_backend(&mut self) -> Result<sql::Backend, sql::Error> {
        Ok(self.database()?.backend())
    }

    async fn query(&mut self, sql: String, params: Vec<sql::Value>) -> Result<sql::Rows, sql::Error> {
        self.database()?.query::<crate::runtime::sql::WholeRows>(&self.guest, self.deadline, sql, params).await
    }

    async fn query_packed(&mut self, sql: String, params: Vec<sql::Value>) -> Result<sql::PackedRows, sql::Error> {
        self.database()?.query::<crate::runtime::sql::Packed>(&self.guest, self.deadline, sql, params).await
    }

    async fn execute(&mut self, sql: String, params: Vec<sql::Value>) -> Result<u64, sql::Error> {
        self.database()?.execute(&self.guest, self.deadline, sql, params).await
    }

    async fn transaction(&mut self, statements: Vec<sql::Statement>) -> Result<Vec<u64>, sql::Error> {
        self.database()?.transaction(&self.guest, self.deadline, statements).await
    }
}

impl GuestState {
    /// The guest's database, or the error that says how to configure one.
    fn database(&self) -> Result<std::sync::Arc<crate::runtime::sql::Database>, sql::Error> {
        self.grants.database.clone().ok_or_else(|| self.services.databases.refuse(&self.guest))
    }
}

/// Adds our interfaces to the linker every guest is linked against, one by
/// one: the world's own `add_to_linker` would add the wasi:http and wasi:io
/// interfaces `response` uses too, which wasmtime-wasi-http links already.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<GuestState>) -> wasmtime::Result<()> {
    type Data = wasmtime::component::HasSelf<GuestState>;
    fn this(state: &mut GuestState) -> &mut GuestState {
        state
    }
    state::add_to_linker::<GuestState, Data>(linker, this)?;
    metrics::add_to_linker::<GuestState, Data>(linker, this)?;
    log::add_to_linker::<GuestState, Data>(linker, this)?;
    session_types::add_to_linker::<GuestState, Data>(linker, this)?;
    sessions::add_to_linker::<GuestState, Data>(linker, this)?;
    sql::add_to_linker::<GuestState, Data>(linker, this)?;
    client::add_to_linker::<GuestState, Data>(linker, this)?;
    request::add_to_linker::<GuestState, Data>(linker, this)?;
    response::add_to_linker::<GuestState, Data>(linker, this)
}
