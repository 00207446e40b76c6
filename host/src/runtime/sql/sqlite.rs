//! The embedded SQLite backend: a pool of connections to one file (WAL
//! journal, so readers do not wait for the writer), each statement run on
//! tokio's blocking threads, never on an async worker.
//!
//! SQLite takes one writer at a time: writes and transactions of this
//! process take `writer` first, so they queue here instead of spinning on
//! `SQLITE_BUSY`; another process on the same file is waited for up to the
//! busy timeout. A statement still running at the call's deadline is
//! interrupted by the progress handler.

use super::results::{self, Collect};
use super::sqlite_manager::{Manager, PoolError};
use super::{BackendMetrics, Error, Statement, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, ErrorCode, ToSql, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// SQLite's virtual-machine steps between two looks at the deadline.
const PROGRESS_STEPS: i32 = 1000;

/// Each connection's settings: WAL, and a wait for another process's writer.
const PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

pub struct Pool {
    pool: super::sqlite_manager::Pool,
    path: PathBuf,
    /// Taken by every write, so that this process's writers queue in order.
    writer: Arc<Mutex<()>>,
    /// Set once the file's directory exists: made before the first connection,
    /// not at start-up, so a host whose guest never uses SQL writes nothing.
    dir_ready: AtomicBool,
}

impl Pool {
    pub fn open(path: &Path, size: usize) -> anyhow::Result<Pool> {
        let manager = Manager::new(path.to_path_buf(), PRAGMAS);
        let pool = super::sqlite_manager::Pool::builder(manager).max_size(size).runtime(deadpool::Runtime::Tokio1).build()?;
        Ok(Pool { pool, path: path.to_path_buf(), writer: Arc::default(), dir_ready: AtomicBool::new(false) })
    }

    pub fn status(&self) -> deadpool::Status {
        self.pool.status()
    }

    pub async fn query<C: Collect>(
        &self,
        sql: String,
        params: Vec<Value>,
        cap: usize,
        expires: Instant,
        metrics: &BackendMetrics,
    ) -> Result<C::Output, Error> {
        self.run(expires, metrics, move |connection, writer| query::<C>(connection, Some(writer), &sql, &params, cap)).await
    }

    pub async fn execute(
        &self,
        sql: String,
        params: Vec<Value>,
        expires: Instant,
        metrics: &BackendMetrics,
    ) -> Result<u64, Error> {
        self.run(expires, metrics, move |connection, writer| execute(connection, Some(writer), &sql, &params)).await
    }

    pub async fn transaction(
        &self,
        statements: Vec<Statement>,
        expires: Instant,
        metrics: &BackendMetrics,
    ) -> Result<Vec<u64>, Error> {
        self.run(expires, metrics, move |connection, writer| {
            let _writing = writer.lock().unwrap_or_else(|e| e.into_inner());
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(error)?;
            let mut changed = Vec::with_capacity(statements.len());
            for statement in &statements {
                changed.push(execute(&transaction, None, &statement.sql, &statement.params)?);
            }
            transaction.commit().map_err(error)?;
            Ok(changed)
        })
        .await
    }

    /// Takes a connection (creating the data directory the first time) and
    /// runs `work` on a blocking thread, stopped by the deadline.
    async fn run<T: Send + 'static>(
        &self,
        expires: Instant,
        metrics: &BackendMetrics,
        work: impl FnOnce(&mut Connection, &Mutex<()>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.ensure_dir()?;
        let waited = Instant::now();
        let connection = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        metrics.waited(waited.elapsed());
        let writer = self.writer.clone();
        let outcome = connection
            .interact(move |connection| {
                let _ = connection.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= expires));
                let result = work(connection, &writer);
                let _ = connection.progress_handler(0, None::<fn() -> bool>);
                result
            })
            .await;
        outcome.unwrap_or_else(|e| Err(Error::Other(format!("the database call failed: {e}"))))
    }

    /// Creates the database file's directory, once.
    fn ensure_dir(&self) -> Result<(), Error> {
        if self.dir_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Connection(format!("cannot create the data directory {}: {e}", dir.display())))?;
        }
        self.dir_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// A connection could not be made.
    fn pool_error(&self, e: PoolError) -> Error {
        match e {
            PoolError::Timeout(_) => Error::Timeout(format!("waiting for an SQLite connection: {e}")),
            PoolError::Backend(e) => error(e),
            e => Error::Connection(format!("opening {}: {e}", self.path.display())),
        }
    }
}

/// Prepares and binds a statement; one that writes also takes `writer`
/// (when given), held until the statement is done.
fn prepare<'c, 'w>(
    connection: &'c Connection,
    writer: Option<&'w Mutex<()>>,
    sql: &str,
    params: &[Value],
) -> Result<(CachedStatement<'c>, Option<MutexGuard<'w, ()>>), Error> {
    let mut statement = connection.prepare_cached(sql).map_err(error)?;
    bind(&mut statement, params)?;
    let writing = if statement.readonly() { None } else { writer.map(|w| w.lock().unwrap_or_else(|e| e.into_inner())) };
    Ok((statement, writing))
}

/// Runs a statement that returns rows, within `cap` bytes.
fn query<C: Collect>(
    connection: &Connection,
    writer: Option<&Mutex<()>>,
    sql: &str,
    params: &[Value],
    cap: usize,
) -> Result<C::Output, Error> {
    let (mut statement, _writing) = prepare(connection, writer, sql, params)?;
    let columns: Vec<String> = statement.column_names().into_iter().map(String::from).collect();
    let width = columns.len();
    let mut result = C::start(columns, cap);
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next().map_err(error)? {
        result.start_row();
        for index in 0..width {
            result.push(ours(row.get_ref(index).map_err(error)?))?;
        }
    }
    Ok(result.finish())
}

/// Runs a statement to its end; the rows it changed (a read: the rows it read).
fn execute(connection: &Connection, writer: Option<&Mutex<()>>, sql: &str, params: &[Value]) -> Result<u64, Error> {
    let (mut statement, _writing) = prepare(connection, writer, sql, params)?;
    let read_only = statement.readonly();
    let mut read = 0;
    let mut cursor = statement.raw_query();
    while cursor.next().map_err(error)?.is_some() {
        read += 1;
    }
    drop(cursor);
    Ok(if read_only { read } else { connection.changes() })
}

/// Binds `$N` (or `?N`, or a bare `?` by position) to `params[N - 1]`. As on
/// Postgres, the parameters given must be exactly as many as the highest
/// number used.
fn bind(statement: &mut CachedStatement<'_>, params: &[Value]) -> Result<(), Error> {
    let mut highest = 0;
    for index in 1..=statement.parameter_count() {
        let number = match statement.parameter_name(index) {
            None => index,
            Some(name) => placeholder_number(name)
                .ok_or_else(|| Error::Syntax(format!("parameter {name} is not positional: use $1, $2, ...")))?,
        };
        highest = highest.max(number);
        let Some(value) = params.get(number - 1) else { continue };
        statement.raw_bind_parameter(index, Param(value)).map_err(error)?;
    }
    if params.len() != highest {
        return Err(Error::Syntax(format!("the statement takes {highest} parameters but {} were given", params.len())));
    }
    Ok(())
}

/// `$3` or `?3` -> 3.
fn placeholder_number(name: &str) -> Option<usize> {
    name.strip_prefix(['$', '?'])?.parse().ok().filter(|n| *n >= 1)
}

struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(blob) => ValueRef::Blob(blob),
        }))
    }
}

/// rusqlite's borrowed value as ours (the same five kinds).
fn ours(value: ValueRef<'_>) -> results::ValueRef<'_> {
    match value {
        ValueRef::Null => results::ValueRef::Null,
        ValueRef::Integer(i) => results::ValueRef::Integer(i),
        ValueRef::Real(r) => results::ValueRef::Real(r),
        ValueRef::Text(text) => results::ValueRef::Text(text),
        ValueRef::Blob(blob) => results::ValueRef::Blob(blob),
    }
}

/// Says what failed, in the interface's terms.
fn error(e: rusqlite::Error) -> Error {
    let message = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => Error::Constraint(message),
        Some(ErrorCode::OperationInterrupted) => Error::Timeout(format!("stopped at the call's deadline: {message}")),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Timeout(message),
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::NotADatabase
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::DatabaseCorrupt,
        ) => Error::Connection(message),
        Some(ErrorCode::Unknown) => Error::Syntax(message),
        Some(_) => Error::Other(message),
        None => match e {
            // A syntax error, with the offending token (the bundled SQLite reports it so).
            rusqlite::Error::SqlInputError { .. }
            | rusqlite::Error::InvalidParameterCount(..)
            | rusqlite::Error::InvalidParameterName(_)
            | rusqlite::Error::InvalidColumnIndex(_)
            | rusqlite::Error::MultipleStatement => Error::Syntax(message),
            _ => Error::Other(message),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::sql::Cell;
    use crate::runtime::sql::{Packed, WholeRows};

    fn memory() -> Connection {
        Connection::open_in_memory().unwrap()
    }

    #[test]
    fn dollar_placeholders_bind_by_number_in_any_order_and_repeat() {
        let db = memory();
        let params = [Value::Text("a".into()), Value::Integer(2)];
        let rows = query::<WholeRows>(&db, None, "SELECT $2 AS two, $1 AS one, $2 + 1 AS three", &params, 1 << 20).unwrap();
        assert_eq!(rows.columns, ["two", "one", "three"]);
        assert_eq!(rows.rows, [vec![Value::Integer(2), Value::Text("a".into()), Value::Integer(3)]]);

        let err = query::<WholeRows>(&db, None, "SELECT $1, $2", &[Value::Null], 1 << 20).unwrap_err();
        assert!(matches!(&err, Error::Syntax(m) if m.contains("takes 2 parameters but 1")), "{err:?}");
        let err = query::<WholeRows>(&db, None, "SELECT :name", &[Value::Null], 1 << 20).unwrap_err();
        assert!(matches!(&err, Error::Syntax(m) if m.contains("not positional")), "{err:?}");
    }

    #[test]
    fn errors_say_what_failed_and_results_respect_the_cap() {
        let db = memory();
        db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)").unwrap();
        assert_eq!(execute(&db, None, "INSERT INTO t (v) VALUES ($1)", &[Value::Text("x".into())]).unwrap(), 1);
        let err = execute(&db, None, "INSERT INTO t (v) VALUES ($1)", &[Value::Text("x".into())]).unwrap_err();
        assert!(matches!(err, Error::Constraint(_)), "{err:?}");
        assert!(matches!(execute(&db, None, "INSERT INTO nowhere VALUES (1)", &[]).unwrap_err(), Error::Syntax(_)));
        assert!(matches!(execute(&db, None, "SELEC 1", &[]).unwrap_err(), Error::Syntax(_)));

        for i in 0..100 {
            execute(&db, None, "INSERT INTO t (v) VALUES ($1)", &[Value::Text(format!("{i:0>20}"))]).unwrap();
        }
        let err = query::<WholeRows>(&db, None, "SELECT v FROM t", &[], 1000).unwrap_err();
        assert!(matches!(&err, Error::TooLarge(m) if m.contains("1000 bytes")), "{err:?}");
        assert_eq!(query::<WholeRows>(&db, None, "SELECT v FROM t LIMIT 5", &[], 1000).unwrap().rows.len(), 5);
        assert_eq!(execute(&db, None, "SELECT v FROM t", &[]).unwrap(), 101);
    }

    #[test]
    fn every_value_type_round_trips() {
        let db = memory();
        let values = [Value::Null, Value::Integer(-7), Value::Real(1.5), Value::Text("héllo".into()), Value::Blob(vec![0, 255])];
        let rows = query::<WholeRows>(&db, None, "SELECT $1, $2, $3, $4, $5", &values, 1 << 20).unwrap();
        assert_eq!(rows.rows, [values.to_vec()]);

        let packed = query::<Packed>(&db, None, "SELECT $1, $2, $3, $4, $5", &values, 1 << 20).unwrap();
        assert_eq!(packed.cells, [Cell::Null, Cell::Integer(-7), Cell::Real(1.5), Cell::Text(6), Cell::Blob(2)]);
        assert_eq!(packed.data, [&b"h\xc3\xa9llo"[..], &[0, 255]].concat());
    }

    /// SQLite stores whatever bytes it is given as text; both forms of a
    /// result hand the guest valid UTF-8 (`wit/sql.wit` promises it).
    #[test]
    fn invalid_utf8_text_reaches_the_guest_made_valid() {
        let db = memory();
        let sql = "SELECT CAST(X'61FF62' AS TEXT)";
        assert_eq!(query::<WholeRows>(&db, None, sql, &[], 100).unwrap().rows, [[Value::Text("a\u{fffd}b".into())]]);
        let packed = query::<Packed>(&db, None, sql, &[], 100).unwrap();
        assert_eq!((packed.cells, packed.data), (vec![Cell::Text(5)], "a\u{fffd}b".as_bytes().to_vec()));
    }
}
