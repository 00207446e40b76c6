//! The Postgres backend: a pool of recycled connections (`deadpool-postgres`
//! over `tokio-postgres`), so that a request never pays for a new connection,
//! with statements prepared once per connection.
//!
//! Postgres is typed and our values are not: each parameter is converted to
//! the type the server inferred for its placeholder, and each column of a
//! result is read by its type; other types must be cast in SQL.

use super::results::{Collect, ValueRef};
use super::{BackendMetrics, Error, Statement, Value};
use anyhow::Context;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use futures_util::TryStreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{NoTls, Row};

/// Longest wait for a new connection; a call's own deadline is usually shorter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Pool {
    pool: deadpool_postgres::Pool,
}

impl Pool {
    pub fn open(url: &str, password_file: Option<&Path>, size: usize) -> anyhow::Result<Pool> {
        let mut config: tokio_postgres::Config = url.parse().context("parsing the Postgres URL")?;
        if let Some(path) = password_file {
            let password = std::fs::read_to_string(path)
                .with_context(|| format!("reading the database password file {}", path.display()))?;
            config.password(password.trim_end_matches(['\r', '\n']));
        }
        if config.get_application_name().is_none() {
            config.application_name("scalelab");
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = deadpool_postgres::Pool::builder(manager).max_size(size).runtime(Runtime::Tokio1).build()?;
        Ok(Pool { pool })
    }

    pub fn status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    async fn client(&self, metrics: &BackendMetrics) -> Result<deadpool_postgres::Object, Error> {
        let waited = Instant::now();
        let client = self.pool.get().await.map_err(pool_error)?;
        metrics.waited(waited.elapsed());
        Ok(client)
    }

    pub async fn query<C: Collect>(
        &self,
        sql: &str,
        params: &[Value],
        cap: usize,
        metrics: &BackendMetrics,
    ) -> Result<C::Output, Error> {
        let client = self.client(metrics).await?;
        let statement = client.prepare_cached(sql).await.map_err(error)?;
        // Each row is collected as it comes and dropped: no vector of all
        // the rows (which `Client::query` grows row by row, a reallocation
        // and a copy of every row so far at each doubling), and a result
        // over its cap stops being read at the row that crosses it.
        let rows = client.query_raw(&statement, params).await.map_err(error)?;
        let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_string()).collect();
        let mut result = C::start(columns, cap);
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.try_next().await.map_err(error)? {
            read_row(&row, &mut result)?;
        }
        Ok(result.finish())
    }

    pub async fn execute(&self, sql: &str, params: &[Value], metrics: &BackendMetrics) -> Result<u64, Error> {
        let client = self.client(metrics).await?;
        let statement = client.prepare_cached(sql).await.map_err(error)?;
        client.execute_raw(&statement, params).await.map_err(error)
    }

    pub async fn transaction(&self, statements: &[Statement], metrics: &BackendMetrics) -> Result<Vec<u64>, Error> {
        let mut client = self.client(metrics).await?;
        let transaction = client.transaction().await.map_err(error)?;
        let mut changed = Vec::with_capacity(statements.len());
        for statement in statements {
            let prepared = transaction.prepare_cached(&statement.sql).await.map_err(error)?;
            changed.push(transaction.execute_raw(&prepared, &statement.params).await.map_err(error)?);
        }
        transaction.commit().await.map_err(error)?;
        Ok(changed)
    }
}

/// Our values as parameters of whatever type the server expects.
impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::OID) => u32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT4) => (*i as f32).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Real(r), &Type::FLOAT8) => r.to_sql(ty, out),
            (Value::Real(r), &Type::FLOAT4) => (*r as f32).to_sql(ty, out),
            (Value::Text(text), _) if <&str as ToSql>::accepts(ty) => text.as_str().to_sql(ty, out),
            (Value::Blob(blob), &Type::BYTEA) => blob.as_slice().to_sql(ty, out),
            (value, ty) => Err(format!("a {} parameter cannot be passed where Postgres expects {ty}", kind(value)).into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Integer(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Blob(_) => "blob",
    }
}

/// One row into `result`, each column read by its type.
fn read_row(row: &Row, result: &mut impl Collect) -> Result<(), Error> {
    result.start_row();
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = match *ty {
            Type::BOOL => row.try_get::<_, Option<bool>>(index).map(|v| v.map(|b| ValueRef::Integer(b.into()))),
            Type::INT2 => row.try_get::<_, Option<i16>>(index).map(|v| v.map(|i| ValueRef::Integer(i.into()))),
            Type::INT4 => row.try_get::<_, Option<i32>>(index).map(|v| v.map(|i| ValueRef::Integer(i.into()))),
            Type::INT8 => row.try_get::<_, Option<i64>>(index).map(|v| v.map(ValueRef::Integer)),
            Type::OID => row.try_get::<_, Option<u32>>(index).map(|v| v.map(|i| ValueRef::Integer(i.into()))),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(index).map(|v| v.map(|r| ValueRef::Real(r.into()))),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(index).map(|v| v.map(ValueRef::Real)),
            Type::BYTEA => row.try_get::<_, Option<&[u8]>>(index).map(|v| v.map(ValueRef::Blob)),
            _ if Text::accepts(ty) => row.try_get::<_, Option<Text<'_>>>(index).map(|v| v.map(|t| ValueRef::Text(t.0))),
            _ => {
                return Err(Error::Syntax(format!(
                    "column {} has the Postgres type {ty}, which has no sql value: cast it in the statement ({}::text)",
                    column.name(),
                    column.name()
                )));
            }
        };
        result.push(value.map_err(error)?.unwrap_or(ValueRef::Null))?;
    }
    Ok(())
}

/// A text column's bytes, borrowed from the row. The collector makes sure
/// they are UTF-8 (`results.rs`), so the plain text types skip
/// `&str`'s own check, which was a call per value; the others (`citext`,
/// `ltree`, ...) are read as `&str` reads them.
struct Text<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Text<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Text<'a>, Box<dyn std::error::Error + Sync + Send>> {
        match *ty {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Ok(Text(raw)),
            _ => <&str as FromSql>::from_sql(ty, raw).map(|text| Text(text.as_bytes())),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Timeout(_) => Error::Timeout(format!("waiting for a Postgres connection: {e}")),
        deadpool_postgres::PoolError::Backend(e) => error(e),
        e => Error::Connection(format!("Postgres: {e}")),
    }
}

/// Says what failed, from the SQLSTATE class when the server answered.
fn error(e: tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        let message = format!("Postgres: {e}");
        if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
            return Error::Connection(message);
        }
        // Parameters the server's types cannot take fail before sending.
        return if message.contains("serializing parameter") { Error::Syntax(message) } else { Error::Connection(message) };
    };
    let code = db.code().code();
    let message = format!("{} (SQLSTATE {code})", db.message());
    match &code[..2] {
        "23" => Error::Constraint(message),
        "42" | "22" | "0A" => Error::Syntax(message),
        "08" | "53" | "57" if code != "57014" => Error::Connection(message),
        "57" => Error::Timeout(message),
        _ => Error::Other(message),
    }
}
