//! The settings that both flags and the guest configuration file can set
//! (`guest`, `deadline`, `max_memory`), and the one precedence rule between
//! them ([`choose`]): a flag or its `SCALELAB_*` twin wins over the file, the
//! file over the default. Start-up applies it to the file it reads; every
//! later change of the file goes through the same rule ([`FileChange`]),
//! where a value the flags pin stays and the file's is ignored, with a warning.

use crate::cli::{Deadline, Explicit, ServeArgs};
use crate::serve::config::{ConfigError, GuestConfig};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

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
