//! A private Postgres server for the tests: Debian's `postgresql` binaries
//! (installed by `cargo xtask test` when missing), a cluster made with
//! `initdb` under `target/` on a free loopback port, a password (so the
//! host's password file is exercised), stopped and deleted when dropped.
//! `initdb` refuses to run as root, so as root every server command runs as
//! the `postgres` user (`runuser`).

use std::path::{Path, PathBuf};
use std::process::Command;

pub const PASSWORD: &str = "scalelab-test-password";

pub struct Postgres {
    bin: PathBuf,
    /// The cluster's directory (data, socket, log, password file).
    dir: PathBuf,
    pub port: u16,
}

impl Postgres {
    /// Makes and starts a new cluster; panics with what is missing.
    pub fn start(name: &str) -> Postgres {
        let bin = binaries();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/test-postgres")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("password"), format!("{PASSWORD}\n")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { bin, dir, port };
        pg.give_to_postgres();
        pg.run(
            "initdb",
            &["-D", &pg.data(), "-U", "postgres", "-A", "scram-sha-256", "--pwfile", &pg.path("password"), "-E", "UTF8"],
        );
        pg.start_server();
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (the password is in [`Postgres::password_file`]).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port.
    pub fn start_server(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100", self.port, self.dir.display());
        self.run("pg_ctl", &["-D", &self.data(), "-l", &self.path("log"), "-o", &options, "-w", "-t", "60", "start"]);
    }

    /// Stops the server at once (connections are cut).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    /// Runs SQL with psql and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-Atc", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("running psql");
        assert!(output.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    fn data(&self) -> String {
        self.path("data")
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// As root, the cluster's directory must belong to the user the server runs as.
    fn give_to_postgres(&self) {
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&self.dir).status().unwrap();
            assert!(status.success(), "chown of {}", self.dir.display());
            // Let the server's user reach the directory through target/.
            let mut dir = self.dir.parent();
            while let Some(d) = dir.filter(|d| d.ends_with("test-postgres")) {
                let _ = Command::new("chmod").arg("a+rx").arg(d).status();
                dir = d.parent();
            }
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command.args(args).output().unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\nserver log: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = command.args(["-D", &data, "-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's server binaries (`/usr/lib/postgresql/<version>/bin`), newest first.
fn binaries() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| Path::new(bin).join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().expect("no Postgres server in /usr/lib/postgresql/*/bin: `cargo xtask test` installs Debian's postgresql")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
