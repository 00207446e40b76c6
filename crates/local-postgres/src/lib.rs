//! A private Postgres server on loopback, for the tests and for
//! `cargo xtask bench-todo`: Debian's `postgresql` binaries (`cargo xtask
//! test` installs them when missing), a cluster made with `initdb` in a
//! directory of the caller's choosing (under `target/`) on a free loopback
//! port, with a password (so a host's password file is exercised), stopped
//! and deleted when dropped.
//!
//! `initdb` refuses to run as root, so as root every server command runs as
//! the `postgres` user (`runuser`), and the cluster's directory is handed to
//! that user.

mod session;

pub use session::Session;

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The superuser's password of every cluster made here.
pub const PASSWORD: &str = "scalelab-local-password";

pub struct Postgres {
    /// Debian's `/usr/lib/postgresql/<version>/bin`.
    bin: PathBuf,
    /// The cluster's own directory (data, socket, log, password file);
    /// deleted on drop.
    dir: PathBuf,
    /// The loopback port, kept across [`Postgres::stop`] and
    /// [`Postgres::start_server`] so clients find it again.
    pub port: u16,
}

impl Postgres {
    /// Makes and starts a new cluster in `parent/<name>-<pid>`.
    pub fn start(parent: &Path, name: &str) -> Result<Postgres> {
        let bin = binaries()?;
        let dir = parent.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("password"), format!("{PASSWORD}\n"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = Postgres { bin, dir, port };
        pg.give_to_postgres()?;
        pg.run(
            "initdb",
            &["-D", &pg.data(), "-U", "postgres", "-A", "scram-sha-256", "--pwfile", &pg.path("password"), "-E", "UTF8"],
        )?;
        pg.start_server()?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (the password is in
    /// [`Postgres::password_file`]).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The same URL with the password and `application_name` in it, for
    /// clients that take no password file.
    pub fn url_with_password(&self, application_name: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?application_name={application_name}", self.port)
    }

    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port.
    pub fn start_server(&self) -> Result<()> {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100", self.port, self.dir.display());
        self.run("pg_ctl", &["-D", &self.data(), "-l", &self.path("log"), "-o", &options, "-w", "-t", "60", "start"])
    }

    /// The server's main process (the postmaster), whose children are the
    /// backends serving each connection: what a bench counts the CPU of.
    pub fn server_pid(&self) -> Result<u32> {
        let file = self.path("data/postmaster.pid");
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
        text.lines().next().and_then(|line| line.trim().parse().ok()).with_context(|| format!("no process id in {file}"))
    }

    /// Stops the server at once (connections are cut).
    pub fn stop(&self) -> Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"])
    }

    /// Runs SQL with psql and returns its unaligned output, trimmed.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let output = self.psql_command().args(["-Atc", sql]).output().context("running psql")?;
        ensure!(output.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8(output.stdout)?.trim().to_string())
    }

    /// A psql kept open for many statements ([`Session`]): one connection
    /// for a sampler, rather than one per statement as [`Postgres::psql`].
    pub fn session(&self) -> Result<Session> {
        let child = self
            .psql_command()
            .arg("-Atq")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting psql")?;
        Session::new(child)
    }

    /// psql, connected to this server as the superuser, with its password.
    fn psql_command(&self) -> Command {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres"])
            .env("PGPASSWORD", PASSWORD);
        psql
    }

    fn data(&self) -> String {
        self.path("data")
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// As root, the cluster's directory must belong to the user the server
    /// runs as, and that user must be able to reach it (the directories above
    /// the caller's must already be searchable).
    fn give_to_postgres(&self) -> Result<()> {
        if !is_root() {
            return Ok(());
        }
        let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&self.dir).status()?;
        ensure!(status.success(), "chown of {} failed", self.dir.display());
        if let Some(parent) = self.dir.parent() {
            let _ = Command::new("chmod").arg("a+rx").arg(parent).status();
        }
        Ok(())
    }

    /// A server command, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let output = self.command(program).args(args).output().with_context(|| format!("running {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} {args:?} failed: {}{}\nserver log: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's server binaries (`/usr/lib/postgresql/<version>/bin`), newest first.
fn binaries() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no Postgres server in /usr/lib/postgresql/*/bin: install Debian's postgresql (`cargo xtask test` does)")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_pid_is_the_postmaster_of_this_cluster() {
        let parent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-postgres");
        let pg = Postgres::start(&parent, "pid").unwrap();
        let pid = pg.server_pid().unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "postgres");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        // pg_ctl hands the server its data directory's canonical path.
        let data = std::fs::canonicalize(pg.data()).unwrap();
        assert!(
            cmdline.split(|&b| b == 0).any(|arg| arg == data.as_os_str().as_encoded_bytes()),
            "{pid} serves another cluster: {}",
            String::from_utf8_lossy(&cmdline)
        );
    }

    #[test]
    fn a_session_answers_many_statements_over_one_connection() {
        let parent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-postgres");
        let pg = Postgres::start(&parent, "session").unwrap();
        let mut session = pg.session().unwrap();
        let backend = session.query("SELECT pg_backend_pid()").unwrap();
        assert_eq!(session.query("SELECT 1, 'a'; ").unwrap(), ["1|a"]);
        assert_eq!(session.query("SELECT generate_series(1, 3)").unwrap(), ["1", "2", "3"]);
        // A failing statement answers nothing, and the session goes on.
        assert!(session.query("SELECT no_such_column").unwrap().is_empty());
        assert!(session.query("SELECT 1\nSELECT 2").is_err(), "two lines are refused");
        // Still the same connection: one backend for every statement.
        assert_eq!(session.query("SELECT pg_backend_pid()").unwrap(), backend);
    }
}
