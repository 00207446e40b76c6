//! The settings that both flags and the guest configuration file can set
//! (`guest`, `deadline`, `max_memory`), and the one precedence rule between
//! them ([`choose`]): a flag or its `SCALELAB_*` twin wins over the file, the
//! file over the default. Start-up applies it to the file it reads; every
//! later change of the file goes through the same rule ([`FileChange`]),
//! where a value the flags pin stays and the file's is ignored, with a warning.
//! The database settings follow the same rule, key by key ([`database`]); the
//! guest's grants (environment, mounts, database) are read from the file each
//! time ([`GrantsRequest`]).

use crate::cli::{DatabaseArgs, Deadline, Explicit, ServeArgs};
use crate::runtime::sql::{DatabaseConfig, Databases, Target};
use crate::runtime::state::Grants;
use crate::serve::config::{ConfigError, DatabaseFile, GuestConfig};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database when neither a flag nor the file names one: a file in the data directory.
pub const DEFAULT_DATABASE: &str = "sqlite:scalelab.db";

/// Connections of a database pool when neither a flag nor the file says.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    File,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag or environment",
            Source::File => "config file",
            Source::Default => "default",
        }
    }
}

/// The precedence rule: the flag's value when it was given (on the command
/// line or in the environment), else the file's, else the flag's default.
pub fn choose<T>(flag_given: bool, flag: T, file: Option<T>) -> (T, Source) {
    match (flag_given, file) {
        (true, _) => (flag, Source::Flag),
        (false, Some(value)) => (value, Source::File),
        (false, None) => (flag, Source::Default),
    }
}

/// The settings given by flags or the environment, which the file cannot change.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pinned {
    pub guest: bool,
    pub deadline: bool,
    pub max_memory: bool,
}

/// The start-up settings after precedence, with where each came from.
pub struct Settings {
    pub guest: String,
    pub guest_source: Source,
    pub deadline: Deadline,
    pub deadline_source: Source,
    pub max_memory: u64,
    pub max_memory_source: Source,
}

impl Settings {
    pub fn resolve(args: &ServeArgs, explicit: Explicit, file: &GuestConfig, path: &Path) -> Result<Settings> {
        let (guest, guest_source) = choose(args.guest.guest.is_some(), args.guest.guest.clone(), file.guest.clone().map(Some));
        let Some(guest) = guest else {
            let message = "no guest to serve: give --guest, SCALELAB_GUEST, or `guest = \"<name>\"` in this file".into();
            return Err(ConfigError { path: path.into(), line: 0, message }.into());
        };
        let (deadline, deadline_source) = choose(explicit.deadline, args.engine.deadline, file.deadline);
        let (max_memory, max_memory_source) = choose(explicit.max_memory, args.engine.max_memory, file.max_memory);
        Ok(Settings { guest, guest_source, deadline, deadline_source, max_memory, max_memory_source })
    }

    /// What the file cannot change from now on.
    pub fn pinned(&self) -> Pinned {
        Pinned {
            guest: self.guest_source == Source::Flag,
            deadline: self.deadline_source == Source::Flag,
            max_memory: self.max_memory_source == Source::Flag,
        }
    }

    pub fn log(&self, path: &Path, file_exists: bool) {
        tracing::info!(
            step = "config",
            config = %path.display(),
            config_found = file_exists,
            guest = %self.guest,
            guest_source = self.guest_source.as_str(),
            deadline = ?self.deadline.0,
            deadline_source = self.deadline_source.as_str(),
            max_memory = self.max_memory,
            max_memory_source = self.max_memory_source.as_str(),
            "configuration (precedence: flag or environment, then config file, then default)"
        );
    }
}

/// What a changed file asks for, after precedence; `None` keeps the current value.
#[derive(Debug, PartialEq)]
pub struct FileChange {
    pub guest: Option<String>,
    pub deadline: Option<Option<Duration>>,
    pub max_memory: Option<u64>,
}

impl FileChange {
    pub fn of(config: &GuestConfig, pinned: Pinned, path: &Path) -> FileChange {
        // "Keep the current value" plays the flag's part: a pinned setting keeps it.
        let keep = |given: bool, in_file: bool, key: &str| {
            if given && in_file {
                tracing::warn!(path = %path.display(), key, "set by a flag or the environment, which win over the file; ignored");
            }
            given
        };
        let guest = choose(keep(pinned.guest, config.guest.is_some(), "guest"), None, config.guest.clone().map(Some)).0;
        let deadline =
            choose(keep(pinned.deadline, config.deadline.is_some(), "deadline"), None, config.deadline.map(|d| Some(d.0))).0;
        let max_memory =
            choose(keep(pinned.max_memory, config.max_memory.is_some(), "max_memory"), None, config.max_memory.map(Some)).0;
        FileChange { guest, deadline, max_memory }
    }
}

/// The database a guest gets, key by key: flag or environment, then the
/// file's `[database]`, then the default.
pub fn database(flags: &DatabaseArgs, file: &DatabaseFile) -> Result<DatabaseConfig, String> {
    let data_dir = flags.data_dir.clone().unwrap_or_else(crate::runtime::sql::default_data_dir);
    let (url, source) = choose(flags.database.is_some(), flags.database.clone(), file.url.clone().map(Some));
    let url = url.unwrap_or_else(|| DEFAULT_DATABASE.to_string());
    let target = Target::parse(&url, &data_dir).map_err(|e| match source {
        Source::File => format!("[database] url: {e}"),
        _ => format!("--database: {e}"),
    })?;
    let password_file = choose(
        flags.database_password_file.is_some(),
        flags.database_password_file.clone(),
        file.password_file.clone().map(Some),
    )
    .0;
    let pool_size = choose(flags.database_pool_size.is_some(), flags.database_pool_size, file.pool_size.map(Some)).0;
    let pool_size = pool_size.unwrap_or(DEFAULT_POOL_SIZE) as usize;
    Ok(DatabaseConfig { target, password_file, pool_size })
}

/// What a guest is granted beyond the call, as the file and flags ask for it
/// (the swapper opens the database).
#[derive(Debug, Clone)]
pub struct GrantsRequest {
    pub env: BTreeMap<String, String>,
    pub mounts: BTreeMap<String, PathBuf>,
    pub database: DatabaseConfig,
}

impl GrantsRequest {
    /// The grants themselves: the database opened (or found open) in `databases`.
    pub fn open(self, databases: &Databases) -> Result<Grants> {
        let database = databases.get(&self.database)?;
        Ok(Grants { env: self.env, mounts: self.mounts, database })
    }

    /// Reads the grants of `config`; a mount whose directory is missing is an error.
    pub fn of(config: &GuestConfig, flags: &DatabaseArgs, path: &Path) -> Result<GrantsRequest, ConfigError> {
        let error = |message: String| ConfigError { path: path.into(), line: 0, message };
        for (guest_path, host) in &config.mounts {
            if !host.is_absolute() || !host.is_dir() {
                return Err(error(format!(
                    "[mounts] {guest_path:?} = {:?}: the host directory must be an absolute path to an existing directory",
                    host.display()
                )));
            }
        }
        let database = database(flags, &config.database).map_err(error)?;
        Ok(GrantsRequest { env: config.env.clone(), mounts: config.mounts.clone(), database })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        assert_eq!(choose(true, 1, Some(2)), (1, Source::Flag));
        assert_eq!(choose(false, 1, Some(2)), (2, Source::File));
        assert_eq!(choose(false, 1, None), (1, Source::Default));
    }

    #[test]
    fn database_settings_take_the_flag_then_the_file_then_the_default() {
        let flags = DatabaseArgs {
            database: None,
            database_password_file: None,
            database_pool_size: None,
            database_max_result: 1 << 20,
            data_dir: Some("/data".into()),
        };
        let none = DatabaseFile::default();
        let default = database(&flags, &none).unwrap();
        assert_eq!(default.target, Target::Sqlite("/data/scalelab.db".into()));
        assert_eq!(default.pool_size, DEFAULT_POOL_SIZE as usize);

        let file =
            DatabaseFile { url: Some("postgres://t@db/t".into()), password_file: Some("/s/pw".into()), pool_size: Some(3) };
        let from_file = database(&flags, &file).unwrap();
        assert_eq!(from_file.target, Target::Postgres("postgres://t@db/t".into()));
        assert_eq!((from_file.password_file.as_deref(), from_file.pool_size), (Some(Path::new("/s/pw")), 3));

        let pinned = DatabaseArgs { database: Some("off".into()), database_pool_size: Some(7), ..flags.clone() };
        let from_flags = database(&pinned, &file).unwrap();
        assert_eq!((from_flags.target, from_flags.pool_size), (Target::Off, 7));

        let bad = DatabaseFile { url: Some("mysql://x".into()), ..DatabaseFile::default() };
        assert!(database(&flags, &bad).unwrap_err().starts_with("[database] url: "));
    }

    #[test]
    fn a_changed_file_changes_only_what_the_flags_leave_free() {
        let config = GuestConfig {
            guest: Some("prime".into()),
            deadline: Some(Deadline(Some(Duration::from_secs(2)))),
            max_memory: None,
            ..GuestConfig::default()
        };
        let free = FileChange::of(&config, Pinned::default(), Path::new("guest.toml"));
        assert_eq!(
            free,
            FileChange { guest: Some("prime".into()), deadline: Some(Some(Duration::from_secs(2))), max_memory: None }
        );
        let pinned = Pinned { guest: true, deadline: true, max_memory: true };
        let kept = FileChange::of(&config, pinned, Path::new("guest.toml"));
        assert_eq!(kept, FileChange { guest: None, deadline: None, max_memory: None });
    }
}
