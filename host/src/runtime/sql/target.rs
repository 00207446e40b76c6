//! Which database a guest gets: the `--database` setting parsed
//! ([`Target`]), with the settings that shape its pool ([`DatabaseConfig`]).

use std::path::{Path, PathBuf};

/// The database a setting names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// No database: the interface answers `not-configured`.
    Off,
    /// An SQLite file (a relative path is in the data directory).
    Sqlite(PathBuf),
    /// A Postgres URL (`postgres://user@host:port/db`).
    Postgres(String),
}

impl Target {
    /// Parses `off`, `sqlite:<path>` (also `sqlite://<path>`) or
    /// `postgres://...` (also `postgresql://`). Relative SQLite paths are
    /// taken in `data_dir`.
    pub fn parse(text: &str, data_dir: &Path) -> Result<Target, String> {
        let text = text.trim();
        if matches!(text, "off" | "none") {
            return Ok(Target::Off);
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "sqlite: needs a file name, such as sqlite:todo.db (in the data directory) or sqlite:/abs/path.db".into()
                );
            }
            let path = Path::new(path);
            return Ok(Target::Sqlite(if path.is_absolute() { path.to_path_buf() } else { data_dir.join(path) }));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<tokio_postgres::Config>().map_err(|e| format!("{text:?} is not a valid Postgres URL: {e}"))?;
            return Ok(Target::Postgres(text.to_string()));
        }
        Err(format!("{text:?} is not a database: expected sqlite:<file>, postgres://user@host:port/db, or off"))
    }
}

/// A database and its pool settings: one pool per distinct value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatabaseConfig {
    pub target: Target,
    /// A file holding the Postgres password (a mounted Secret).
    pub password_file: Option<PathBuf>,
    /// Most connections the pool opens.
    pub pool_size: usize,
}

impl DatabaseConfig {
    /// The database for logs: a path, or the URL without its password.
    pub fn label(&self) -> String {
        match &self.target {
            Target::Off => "off".into(),
            Target::Sqlite(path) => format!("sqlite:{}", path.display()),
            Target::Postgres(url) => hide_password(url),
        }
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((credentials, host)) = rest.split_once('@') else { return url.to_string() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// The default data directory: `$XDG_DATA_HOME/scalelab`,
/// `~/.local/share/scalelab`, else `/var/lib/scalelab` (the image sets
/// `SCALELAB_DATA_DIR=/var/lib/scalelab`, a volume in Kubernetes).
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("scalelab");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty() && v != "/") {
        return PathBuf::from(home).join(".local/share/scalelab");
    }
    PathBuf::from("/var/lib/scalelab")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_sqlite_files_postgres_urls_or_nothing() {
        let data = Path::new("/data");
        assert_eq!(Target::parse("off", data), Ok(Target::Off));
        assert_eq!(Target::parse("sqlite:todo.db", data), Ok(Target::Sqlite("/data/todo.db".into())));
        assert_eq!(Target::parse("sqlite:///tmp/x.db", data), Ok(Target::Sqlite("/tmp/x.db".into())));
        assert_eq!(Target::parse("sqlite:/tmp/x.db", data), Ok(Target::Sqlite("/tmp/x.db".into())));
        let url = "postgres://todo@127.0.0.1:5432/todo";
        assert_eq!(Target::parse(url, data), Ok(Target::Postgres(url.into())));
        assert!(Target::parse("sqlite:", data).unwrap_err().contains("needs a file name"));
        assert!(Target::parse("mysql://x", data).unwrap_err().contains("expected sqlite:<file>"));
        assert!(Target::parse("postgres://a@h:notaport/db", data).unwrap_err().contains("not a valid Postgres URL"));
    }

    #[test]
    fn labels_hide_the_password() {
        let config = |target| DatabaseConfig { target, password_file: None, pool_size: 4 };
        assert_eq!(config(Target::Postgres("postgres://u:pw@h:5/db".into())).label(), "postgres://u:***@h:5/db");
        assert_eq!(config(Target::Postgres("postgres://u@h/db".into())).label(), "postgres://u@h/db");
        assert_eq!(config(Target::Sqlite("/d/t.db".into())).label(), "sqlite:/d/t.db");
    }
}
