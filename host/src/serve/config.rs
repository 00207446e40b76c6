//! The guest configuration file (`guest.toml`, from a ConfigMap): the
//! `guest-config` crate, kept apart so that it can be fuzzed without the host.

pub use guest_config::{ConfigError, DEFAULT_PATH, DatabaseFile, GuestConfig};
