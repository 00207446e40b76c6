//! The todo table and its statements, the same on both backends but for the
//! table's DDL. Placeholders are `$1` (Postgres' syntax, which SQLite also
//! reads).

/// The table on SQLite.
pub const CREATE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS todo (id INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT NOT NULL)";

/// The table on Postgres.
pub const CREATE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS todo (id BIGSERIAL PRIMARY KEY, task TEXT NOT NULL)";

/// Taken first in the set-up transaction on Postgres: `CREATE TABLE IF NOT
/// EXISTS` run at the same moment by several pods can still collide in the
/// catalog (a unique violation on `pg_type`), so set-ups run one at a time.
/// The number is the lock's key: any constant shared by every pod.
pub const LOCK_POSTGRES: &str = "SELECT pg_advisory_xact_lock(7012016)";

/// The newest tasks, newest first (ids grow with every insert).
pub const SELECT_NEWEST: &str = "SELECT task FROM todo ORDER BY id DESC LIMIT 50";

/// Inserts one task: `$1` is its text.
pub const INSERT: &str = "INSERT INTO todo (task) VALUES ($1)";
