//! The tests' private Postgres servers: `local-postgres` clusters under
//! `target/test-postgres`, with failures turned into panics that say what
//! went wrong.

use std::path::PathBuf;

pub struct Postgres(local_postgres::Postgres);

impl Postgres {
    /// Makes and starts a new cluster; panics with what is missing.
    pub fn start(name: &str) -> Postgres {
        let parent = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-postgres");
        Postgres(local_postgres::Postgres::start(&parent, name).unwrap_or_else(|e| panic!("starting Postgres: {e:#}")))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (the password is in [`Postgres::password_file`]).
    pub fn url(&self) -> String {
        self.0.url()
    }

    pub fn password_file(&self) -> PathBuf {
        self.0.password_file()
    }

    /// Starts the server again, after [`Postgres::stop`], on the same port.
    pub fn start_server(&self) {
        self.0.start_server().unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Stops the server at once (connections are cut).
    pub fn stop(&self) {
        self.0.stop().unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Runs SQL with psql and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.0.psql(sql).unwrap_or_else(|e| panic!("{e:#}"))
    }
}
