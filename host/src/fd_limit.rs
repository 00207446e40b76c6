//! Raises the open-file limit at start-up: every session and every simulated
//! engine is a socket, and distributions' default soft limit (1024) would
//! cap a broker at about a thousand engines.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs what it got.
pub fn raise() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(step = "limits", open_files = limit, "open file limit raised to the hard limit");
            limit
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open file limit");
            0
        }
    }
}
