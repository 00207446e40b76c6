//! The guest configuration file parser the host runs at start and on every
//! ConfigMap change: any text is a configuration or an error that names the
//! file and a line of the text; a parsed file keeps only valid mounts.
#![no_main]

use guest_config::GuestConfig;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    let lines = text.matches('\n').count() + 1;
    match GuestConfig::parse(Path::new("/etc/scalelab/guest.toml"), text) {
        Ok(config) => {
            assert!(config.guest_line <= lines);
            for guest_path in config.mounts.keys() {
                assert!(guest_path.starts_with('/') && !guest_path.split('/').any(|p| p == ".."), "{guest_path}");
            }
            assert_ne!(config.database.pool_size, Some(0));
        }
        Err(e) => {
            assert!(e.to_string().starts_with("/etc/scalelab/guest.toml"), "{e}");
            assert!(e.line <= lines, "line {} of {lines}", e.line);
        }
    }
});
