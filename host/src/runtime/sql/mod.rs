//! The SQL host service (`wit/sql.wit`): a database the host holds for its
//! guests, since a guest can open no socket or file of its own.
//!
//! A [`Database`] is a connection pool: embedded SQLite (`sqlite.rs`, the
//! default, a file in the data directory) or Postgres (`postgres.rs`, through
//! recycled connections). Every instance of every guest shares it, a guest
//! holds no connection between calls, and it belongs to the process
//! ([`Databases`]), so a swap to another guest and back finds the same data
//! and the same warm connections. Each call is bounded by the deadline of the
//! guest call it runs in and its result by a size cap; each is counted and
//! timed (`metrics.rs`).

mod metrics;
mod postgres;
mod results;
mod sqlite;
mod sqlite_manager;
mod target;

pub use self::metrics::{BackendMetrics, SqlMetrics};
pub use self::results::{Collect, Packed, WholeRows};
pub use self::target::{DatabaseConfig, Target, default_data_dir};
pub use crate::runtime::bindings::sql::{Backend, Error, Rows, Statement, Value};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a call may wait and run when its guest call has no deadline
/// (`--deadline off`), so that a database that does not answer never holds
/// a request for ever.
const NO_DEADLINE_LIMIT: Duration = Duration::from_secs(30);

/// One database and its pool.
pub struct Database {
    pool: Pool,
    /// The URL without its password, for logs and `GET /admin/guest`.
    pub label: String,
    /// Largest result a query may return, in bytes.
    max_result: usize,
    /// This backend's series (the per-call path looks up only its guest's).
    metrics: BackendMetrics,
}

enum Pool {
    Sqlite(sqlite::Pool),
    Postgres(postgres::Pool),
}

impl Database {
    fn open(config: &DatabaseConfig, max_result: usize, metrics: &SqlMetrics) -> anyhow::Result<Database> {
        let pool = match &config.target {
            Target::Sqlite(path) => Pool::Sqlite(sqlite::Pool::open(path, config.pool_size)?),
            Target::Postgres(url) => {
                Pool::Postgres(postgres::Pool::open(url, config.password_file.as_deref(), config.pool_size)?)
            }
            Target::Off => anyhow::bail!("no database to open (off)"),
        };
        tracing::info!(database = %config.label(), pool_size = config.pool_size, "database pool created (connections open on first use)");
        let metrics = metrics.for_backend(match pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        });
        Ok(Database { pool, label: config.label(), max_result, metrics })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a statement that returns rows, collected as `C` collects them
    /// ([`WholeRows`], [`Packed`]).
    pub async fn query<C: Collect>(
        &self,
        guest: &str,
        deadline: Option<Instant>,
        sql: String,
        params: Vec<Value>,
    ) -> Result<C::Output, Error> {
        let work = match &self.pool {
            Pool::Sqlite(pool) => pool.query::<C>(sql, params, self.max_result, expiry(deadline), &self.metrics).boxed(),
            Pool::Postgres(pool) => pool.query::<C>(&sql, &params, self.max_result, &self.metrics).boxed(),
        };
        self.measured(guest, deadline, work).await
    }

    /// Runs a statement and returns the rows it changed.
    pub async fn execute(&self, guest: &str, deadline: Option<Instant>, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        let work = match &self.pool {
            Pool::Sqlite(pool) => pool.execute(sql, params, expiry(deadline), &self.metrics).boxed(),
            Pool::Postgres(pool) => pool.execute(&sql, &params, &self.metrics).boxed(),
        };
        self.measured(guest, deadline, work).await
    }

    /// Runs statements in one transaction.
    pub async fn transaction(
        &self,
        guest: &str,
        deadline: Option<Instant>,
        statements: Vec<Statement>,
    ) -> Result<Vec<u64>, Error> {
        let work = match &self.pool {
            Pool::Sqlite(pool) => pool.transaction(statements, expiry(deadline), &self.metrics).boxed(),
            Pool::Postgres(pool) => pool.transaction(&statements, &self.metrics).boxed(),
        };
        self.measured(guest, deadline, work).await
    }

    /// Whether the database answers `SELECT 1` within `limit`: the readiness check.
    pub async fn ping(&self, limit: Duration) -> Result<(), Error> {
        self.query::<WholeRows>("readiness", Some(Instant::now() + limit), "SELECT 1".into(), Vec::new()).await.map(drop)
    }

    /// Bounds `work` by the deadline, then counts and times it.
    ///
    /// `work` comes boxed: a backend's future holds the driver's whole state
    /// machine (several KB for Postgres), and each layer above it (this one,
    /// the call's, wasmtime's own box of every async host call) would embed
    /// it and copy it whole each time it moves. Boxed once where it is made,
    /// what moves is a pointer: inline, a call's future was 4,472 bytes (debug
    /// build), and its copies cost about 850 instructions per SQL call
    /// (callgrind, the todo guest's `GET /api/todos`).
    async fn measured<T>(
        &self,
        guest: &str,
        deadline: Option<Instant>,
        work: BoxFuture<'_, Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let expires = expiry(deadline);
        let result = match tokio::time::timeout_at(expires.into(), work).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(format!(
                "the database did not answer within the call's deadline ({} ms)",
                expires.saturating_duration_since(started).as_millis()
            ))),
        };
        self.metrics.finished(guest, result.as_ref().err(), started.elapsed());
        match &self.pool {
            Pool::Sqlite(pool) => self.metrics.pool_status(pool.status()),
            Pool::Postgres(pool) => self.metrics.pool_status(pool.status()),
        }
        result
    }
}

/// When a call must be over: its guest call's deadline, or a generous
/// bound without one.
fn expiry(deadline: Option<Instant>) -> Instant {
    deadline.unwrap_or_else(|| Instant::now() + NO_DEADLINE_LIMIT)
}

/// The label of an error, for the `result` label of the query counter.
pub fn error_label(error: &Error) -> &'static str {
    match error {
        Error::NotConfigured(_) => "not_configured",
        Error::Connection(_) => "connection",
        Error::Constraint(_) => "constraint",
        Error::Syntax(_) => "syntax",
        Error::Timeout(_) => "timeout",
        Error::TooLarge(_) => "too_large",
        Error::Other(_) => "other",
    }
}

/// The databases of this process, one per configuration, kept for the life
/// of the process: a swap away and back finds the same pool.
pub struct Databases {
    open: Mutex<HashMap<DatabaseConfig, Arc<Database>>>,
    max_result: usize,
    metrics: SqlMetrics,
}

impl Databases {
    pub fn new(registry: &prometheus::Registry, max_result: usize) -> Databases {
        Databases { open: Mutex::default(), max_result, metrics: SqlMetrics::new(registry) }
    }

    /// The database of `config` (none for `off`), opened on first use.
    pub fn get(&self, config: &DatabaseConfig) -> anyhow::Result<Option<Arc<Database>>> {
        if config.target == Target::Off {
            return Ok(None);
        }
        let mut open = self.open.lock().unwrap();
        if let Some(database) = open.get(config) {
            return Ok(Some(database.clone()));
        }
        let database = Arc::new(Database::open(config, self.max_result, &self.metrics)?);
        open.insert(config.clone(), database.clone());
        Ok(Some(database))
    }

    /// The error a guest gets when its host has no database (counted).
    pub fn refuse(&self, guest: &str) -> Error {
        let error = Error::NotConfigured(
            "this host has no database for its guest (--database off): set --database (SCALELAB_DATABASE) \
             or `[database] url` in the config file to `sqlite:<file>` or `postgres://...`"
                .into(),
        );
        self.metrics.refused(guest, &error);
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The future of an SQL call holds the backend's work by pointer
    /// (`measured`), so that wasmtime's box of every async host call, and
    /// each move on the way there, copies a few hundred bytes rather than the
    /// driver's whole state machine: inline, `query` made 4,472 bytes and
    /// `execute` 4,440 (debug build). The pool connects on first use, so no
    /// server is needed to build the futures.
    #[test]
    fn an_sql_calls_future_holds_the_backends_work_by_pointer() {
        let registry = prometheus::Registry::new();
        let databases = Databases::new(&registry, 1 << 20);
        let config = DatabaseConfig {
            target: Target::Postgres("postgres://scalelab@127.0.0.1:1/none".into()),
            password_file: None,
            pool_size: 1,
        };
        let database = databases.get(&config).unwrap().expect("a Postgres target opens a pool");
        let query = database.query::<Packed>("guest", None, "SELECT 1".into(), Vec::new());
        let execute = database.execute("guest", None, "SELECT 1".into(), Vec::new());
        let transaction = database.transaction("guest", None, Vec::new());
        for (name, size) in [
            ("query", std::mem::size_of_val(&query)),
            ("execute", std::mem::size_of_val(&execute)),
            ("transaction", std::mem::size_of_val(&transaction)),
        ] {
            assert!(size <= 1024, "the future of {name} is {size} bytes: a backend's work is held inline again");
        }
    }
}
