//! How the SQLite pool opens its connections and takes them back.
//!
//! deadpool-sqlite's manager checks every connection it hands out by running
//! `SELECT $1` on it, on a blocking thread: for every SQL call, one more hand-off
//! to that thread and back, and one more statement prepared (its text changes
//! with each check, so SQLite's statement cache cannot keep it). That check
//! suits connections over a network, which go stale; a connection to a file
//! does not. This manager hands a connection back out unless its mutex was
//! poisoned (a panic while a statement ran on it), and sets each new
//! connection's pragmas as it opens it.

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_sync::SyncWrapper;
use std::path::PathBuf;

pub type Pool = managed::Pool<Manager>;
pub type PoolError = managed::PoolError<rusqlite::Error>;

pub struct Manager {
    path: PathBuf,
    /// Run on each new connection (journal mode, busy timeout, ...).
    pragmas: &'static str,
}

impl Manager {
    pub fn new(path: PathBuf, pragmas: &'static str) -> Manager {
        Manager { path, pragmas }
    }
}

impl managed::Manager for Manager {
    type Type = SyncWrapper<rusqlite::Connection>;
    type Error = rusqlite::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        let (path, pragmas) = (self.path.clone(), self.pragmas);
        SyncWrapper::new(Runtime::Tokio1, move || {
            let connection = rusqlite::Connection::open(path)?;
            connection.execute_batch(pragmas)?;
            Ok(connection)
        })
        .await
    }

    async fn recycle(&self, connection: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        if connection.is_mutex_poisoned() {
            return Err(RecycleError::message("a statement panicked on this SQLite connection"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pool(name: &str) -> (Pool, PathBuf) {
        let path = std::env::temp_dir().join(format!("scalelab-sqlite-manager-{name}-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let manager = Manager::new(path.clone(), "PRAGMA journal_mode = WAL;");
        (Pool::builder(manager).max_size(1).runtime(Runtime::Tokio1).build().unwrap(), path)
    }

    /// A connection taken back runs no statement (SQLite's progress handler,
    /// called every virtual-machine step, counts none) before it goes out again.
    #[tokio::test]
    async fn a_connection_goes_back_out_without_running_a_statement() {
        let (pool, path) = pool("recycle");
        let steps = Arc::new(AtomicUsize::new(0));
        let connection = pool.get().await.unwrap();
        let counted = steps.clone();
        connection
            .interact(move |c| {
                c.progress_handler(
                    1,
                    Some(move || {
                        counted.fetch_add(1, Ordering::Relaxed);
                        false
                    }),
                )
            })
            .await
            .unwrap()
            .unwrap();
        drop(connection);
        let connection = pool.get().await.unwrap();
        assert_eq!(steps.load(Ordering::Relaxed), 0, "taking the connection back ran a statement");
        assert_eq!(pool.status().size, 1, "the same connection came back out");
        let journal: String =
            connection.interact(|c| c.query_row("PRAGMA journal_mode", [], |row| row.get(0))).await.unwrap().unwrap();
        assert_eq!(journal, "wal", "a new connection gets the pragmas");
        assert!(steps.load(Ordering::Relaxed) > 0, "the handler counts the steps of a statement");
        drop(connection);
        let _ = std::fs::remove_file(path);
    }

    /// A connection whose statement panicked is not handed out again.
    #[tokio::test]
    async fn a_poisoned_connection_is_replaced() {
        let (pool, path) = pool("poisoned");
        let connection = pool.get().await.unwrap();
        connection.interact(|c| c.execute_batch("CREATE TABLE t (v INTEGER)")).await.unwrap().unwrap();
        assert!(connection.interact(|_| -> () { panic!("a statement's panic (expected by this test)") }).await.is_err());
        assert!(connection.is_mutex_poisoned());
        drop(connection);
        let connection = pool.get().await.unwrap();
        assert!(!connection.is_mutex_poisoned(), "a new connection replaced the poisoned one");
        let count: i64 =
            connection.interact(|c| c.query_row("SELECT count(*) FROM t", [], |row| row.get(0))).await.unwrap().unwrap();
        assert_eq!(count, 0);
        drop(connection);
        let _ = std::fs::remove_file(path);
    }
}
