//! The guest configuration file: which guest to serve and its settings,
//! mounted from a Kubernetes ConfigMap so that editing the ConfigMap picks the
//! workload (at start) and swaps it (while running).
//!
//! ```toml
//! guest = "prime"          # a name in the guests directory, or a path
//! deadline = "2s"          # per-request deadline ("off" only if the host started without one)
//! max_memory = "32MiB"     # per-instance memory cap (at most the start-up value)
//! tick_interval = "10s"    # session guests: interval of `tick` calls (wins over the guest's own)
//! [env]                    # handed to the guest as WASI environment variables
//! GREETING = "hello"
//! [mounts]                 # directories the guest sees, read-only: guest path = host directory
//! "/photos" = "/srv/photos"
//! [database]               # the `sql` host service (flags and SCALELAB_DATABASE* win over it)
//! url = "postgres://todo@postgres:5432/todo"   # or "sqlite:todo.db" (in --data-dir), or "off"
//! password_file = "/etc/scalelab-db/password"  # a mounted Secret
//! pool_size = 10
//! ```
//!
//! Every key is optional. Errors name the file, the line and what is allowed.
//!
//! A crate of its own (the host re-exports it as `serve::config`) so that
//! `fuzz/` can fuzz the parser without building the host; the duration,
//! deadline and size values live here because the host's flags take the
//! same forms.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Where Kubernetes mounts the guest ConfigMap; a missing file there is fine.
pub const DEFAULT_PATH: &str = "/etc/scalelab/guest.toml";

/// The per-request deadline, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Option<Duration>);

/// A deadline: a duration, or `off` (also `none`, `0`) for none.
pub fn parse_deadline(s: &str) -> Result<Deadline, String> {
    if matches!(s, "off" | "none" | "0") {
        return Ok(Deadline(None));
    }
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Ok(Deadline(None));
    }
    Ok(Deadline(Some(d)))
}

/// A duration such as `200ms`, `5s` or `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected a duration such as 200ms, 5s or 1m)"))
}

/// A size in bytes, binary units (`512KiB`, `64MiB`, `1048576`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{e} (expected a size such as 512KiB, 64MiB or 1048576)"))
}

/// A parsed configuration file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuestConfig {
    pub guest: Option<String>,
    /// The line of `guest`, for errors about the guest it names.
    pub guest_line: usize,
    pub deadline: Option<Deadline>,
    pub max_memory: Option<u64>,
    pub tick_interval: Option<Duration>,
    pub env: BTreeMap<String, String>,
    /// `[mounts]`: guest path -> host directory (both absolute).
    pub mounts: BTreeMap<String, PathBuf>,
    /// `[database]`.
    pub database: DatabaseFile,
}

/// The `[database]` table; every key optional.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatabaseFile {
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub pool_size: Option<u32>,
}

/// A problem in the file, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path.display(), self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    guest: Option<Spanned<String>>,
    deadline: Option<Spanned<String>>,
    max_memory: Option<Spanned<String>>,
    tick_interval: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    mounts: BTreeMap<String, String>,
    database: Option<Spanned<RawDatabase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    password_file: Option<PathBuf>,
    pool_size: Option<u32>,
}

impl GuestConfig {
    pub fn parse(path: &Path, text: &str) -> Result<GuestConfig, ConfigError> {
        let error = |offset: Option<usize>, message: String| ConfigError {
            path: path.into(),
            line: offset.map_or(0, |o| line_of(text, o)),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let message = if message.starts_with("unknown field") {
                format!("{message} (allowed keys: guest, deadline, max_memory, tick_interval, [env], [mounts], [database])")
            } else {
                message
            };
            error(e.span().map(|s| s.start), message)
        })?;
        let mut config = GuestConfig { env: raw.env, ..GuestConfig::default() };
        for (guest_path, host) in raw.mounts {
            let at = text.find(&format!("\"{guest_path}\"")).or_else(|| text.find("[mounts]"));
            config.mounts.insert(mount_path(&guest_path).map_err(|m| error(at, m))?, PathBuf::from(host));
        }
        if let Some(database) = raw.database {
            let at = database.span().start;
            let RawDatabase { url, password_file, pool_size } = database.into_inner();
            if pool_size == Some(0) {
                return Err(error(Some(at), "[database] pool_size: must be at least 1".into()));
            }
            config.database = DatabaseFile { url, password_file, pool_size };
        }
        if let Some(guest) = raw.guest {
            config.guest_line = line_of(text, guest.span().start);
            config.guest = Some(guest.into_inner());
        }
        if let Some(deadline) = raw.deadline {
            let at = deadline.span().start;
            config.deadline = Some(parse_deadline(deadline.get_ref()).map_err(|e| error(Some(at), format!("deadline: {e}")))?);
        }
        if let Some(size) = raw.max_memory {
            let at = size.span().start;
            config.max_memory = Some(parse_bytes(size.get_ref()).map_err(|e| error(Some(at), format!("max_memory: {e}")))?);
        }
        if let Some(interval) = raw.tick_interval {
            let at = interval.span().start;
            let parsed = humantime::parse_duration(interval.get_ref())
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| error(Some(at), "tick_interval: expected a duration above zero such as 500ms or 10s".into()))?;
            config.tick_interval = Some(parsed);
        }
        Ok(config)
    }
}

/// A `[mounts]` key: an absolute guest path without `..` (`/photos`).
fn mount_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path.split('/').any(|part| part == "..") || path == "/" {
        return Err(format!("[mounts] {path:?}: the guest path must be absolute, below / and without `..`, such as \"/photos\""));
    }
    Ok(path.trim_end_matches('/').to_string())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GuestConfig, ConfigError> {
        GuestConfig::parse(Path::new("/etc/scalelab/guest.toml"), text)
    }

    #[test]
    fn deadlines_parse() {
        assert_eq!(parse_deadline("200ms"), Ok(Deadline(Some(Duration::from_millis(200)))));
        assert_eq!(parse_deadline("off"), Ok(Deadline(None)));
        assert_eq!(parse_deadline("0s"), Ok(Deadline(None)));
        assert!(parse_deadline("soon").unwrap_err().contains("expected a duration"));
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1KiB"), Ok(1024));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").unwrap_err().contains("expected a size"));
    }

    #[test]
    fn a_full_file_parses() {
        let config =
            parse("guest = \"prime\"\ndeadline = \"250ms\"\nmax_memory = \"32MiB\"\ntick_interval = \"2s\"\n[env]\nA = \"1\"\n")
                .unwrap();
        assert_eq!(config.guest.as_deref(), Some("prime"));
        assert_eq!(config.guest_line, 1);
        assert_eq!(config.deadline, Some(Deadline(Some(Duration::from_millis(250)))));
        assert_eq!(config.max_memory, Some(32 << 20));
        assert_eq!(config.tick_interval, Some(Duration::from_secs(2)));
        assert_eq!(config.env["A"], "1");
        assert_eq!(parse("").unwrap(), GuestConfig::default());
    }

    #[test]
    fn mounts_and_the_database_table_parse_and_bad_ones_say_where() {
        let text =
            "guest = \"todo\"\n[mounts]\n\"/photos/\" = \"/srv/photos\"\n[database]\nurl = \"sqlite:t.db\"\npool_size = 4\n";
        let config = parse(text).unwrap();
        assert_eq!(config.mounts["/photos"], PathBuf::from("/srv/photos"));
        assert_eq!(config.database, DatabaseFile { url: Some("sqlite:t.db".into()), password_file: None, pool_size: Some(4) });

        let err = parse("[mounts]\n\"photos\" = \"/srv\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("must be absolute"), "{err}");
        assert!(parse("[mounts]\n\"/a/../etc\" = \"/srv\"\n").is_err());
        let err = parse("[database]\nurl = \"sqlite:x\"\npool_size = 0\n").unwrap_err();
        assert!(err.message.contains("pool_size"), "{err}");
        let err = parse("[database]\nuri = \"sqlite:x\"\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn errors_name_the_file_the_line_and_what_is_allowed() {
        let err = parse("guest = \"prime\"\n\ndeadlin = \"1s\"\n").unwrap_err();
        assert_eq!(err.line, 3);
        let text = err.to_string();
        assert!(text.starts_with("/etc/scalelab/guest.toml:3: unknown field"), "{text}");
        assert!(text.contains("allowed keys: guest, deadline, max_memory, tick_interval, [env], [mounts], [database]"), "{text}");

        let err = parse("guest = \"prime\"\ndeadline = \"soon\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("expected a duration"), "{err}");

        let err = parse("max_memory = \"lots\"\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.to_string().contains("expected a size"), "{err}");

        let err = parse("guest = \"b\"\ntick_interval = \"0s\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("tick_interval"), "{err}");

        let err = parse("guest = 3\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(parse("guest = \"prime\"\n[env]\nA = 1\n").unwrap_err().line == 3);
    }

    proptest::proptest! {
        /// Any text is a configuration or an error naming the file; never a panic.
        #[test]
        fn any_text_parses_or_is_refused_with_the_file_named(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    "guest = \"[a-z]{0,8}\"",
                    "deadline = \"[0-9a-z ]{0,6}\"",
                    "max_memory = \"[0-9A-Za-z]{0,6}\"",
                    "tick_interval = \"[0-9a-z]{0,5}\"",
                    "\\[(env|mounts|database)\\]",
                    "[a-z_]{1,10} = [0-9\"a-z]{0,6}",
                    "\\PC{0,20}",
                ],
                0..8,
            )
        ) {
            let text = lines.join("\n");
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(e.to_string().contains("guest.toml"), "{}", e);
            }
        }
    }
}
