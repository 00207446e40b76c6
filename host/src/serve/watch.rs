//! Watching the guest configuration file and swapping when it changes.
//!
//! Kubernetes updates a mounted ConfigMap by writing a new timestamped
//! directory and atomically renaming a `..data` symlink onto it; the file
//! itself (`guest.toml -> ..data/guest.toml`) never changes, so watching the
//! file is not enough. This watches the file's *directory* (inotify) and
//! re-reads the file, following the links, when an entry there is created,
//! deleted, renamed or closed after writing; and it also polls every
//! `--config-poll`, for file systems without inotify. Either way a change is
//! recognised by the file's content, so duplicate events cost nothing.
//!
//! Writes to files that stay open (a SQLite database next to the config,
//! logs) raise no event at all: the watch asks the kernel for no `MODIFY` or
//! `OPEN` events, so a busy neighbour never wakes this process.

use crate::cli::DatabaseArgs;
use crate::metrics::Metrics;
use crate::serve::config::{ConfigError, GuestConfig};
use crate::serve::settings::{FileChange, GrantsRequest, Pinned};
use crate::serve::swap::{GuestSource, SwapRequest, Swapper};
use inotify::{Inotify, WatchMask};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The directory events that can change what the config path reads: a file
/// written and closed (an edit in place), an entry created, removed or
/// renamed (an editor's save-by-rename, the `..data` symlink swap).
const CHANGES: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR);

/// What was last read from the file, to recognise changes.
pub struct Watched {
    pub path: PathBuf,
    pub last: Option<String>,
    /// Settings given by flags or environment, which the file cannot change.
    pub pinned: Pinned,
    /// The database flags, which win over the file's `[database]` key by key.
    pub database: DatabaseArgs,
}

/// Starts watching: the directory watch exists when this returns (so a
/// host that reports ready is watching, and holds every file descriptor it
/// keeps), and the loop runs in a task until the process exits.
pub fn spawn(watched: Watched, poll: Duration, swapper: Arc<Swapper>, metrics: Arc<Metrics>) {
    let (events, changed) = tokio::sync::mpsc::unbounded_channel();
    if let Some(dir) = watched.path.parent()
        && let Err(e) = watch_dir(dir, events)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; polling only");
    }
    tokio::spawn(run(watched, poll, swapper, metrics, changed));
}

/// Watches `dir` for [`CHANGES`] on a thread of its own (inotify reads
/// block), sending one message per batch of events, until `events` closes.
fn watch_dir(dir: &Path, events: tokio::sync::mpsc::UnboundedSender<()>) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let mut inotify = Inotify::init()?;
    inotify.watches().add(dir, CHANGES)?;
    std::thread::Builder::new().name("config-watch".into()).spawn(move || {
        let mut buffer = [0u8; 4096];
        loop {
            match inotify.read_events_blocking(&mut buffer) {
                Ok(batch) => {
                    if batch.count() > 0 && events.send(()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the config directory watch failed; polling only");
                    return;
                }
            }
        }
    })?;
    Ok(())
}

/// Re-reads the file on every event and every `poll`, for ever.
async fn run(
    mut watched: Watched,
    poll: Duration,
    swapper: Arc<Swapper>,
    metrics: Arc<Metrics>,
    mut changed: tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let trigger = tokio::select! {
            Some(()) = changed.recv() => {
                // A symlink swap is several events: let them settle, then read once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while changed.try_recv().is_ok() {}
                "event"
            }
            _ = tick.tick() => "poll",
        };
        metrics.swaps.config_checked(trigger);
        check(&mut watched, &swapper, &metrics).await;
    }
}

/// Re-reads the file and swaps if its content changed.
async fn check(watched: &mut Watched, swapper: &Swapper, metrics: &Metrics) {
    let text = match std::fs::read_to_string(&watched.path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %watched.path.display(), error = %e, "cannot read the config file");
            return;
        }
    };
    if text == watched.last {
        return;
    }
    watched.last = text.clone();
    let Some(text) = text else {
        tracing::warn!(path = %watched.path.display(), "the config file is gone; the current guest keeps serving");
        return;
    };
    let config = match GuestConfig::parse(&watched.path, &text) {
        Ok(config) => config,
        Err(e) => {
            metrics.swaps.swapped(false, None);
            tracing::error!(step = "swap", origin = "config file", error = %e, "swap rejected; the current guest keeps serving");
            return;
        }
    };
    let grants = match GrantsRequest::of(&config, &watched.database, &watched.path) {
        Ok(grants) => grants,
        Err(e) => {
            metrics.swaps.swapped(false, None);
            tracing::error!(step = "swap", origin = "config file", error = %e, "swap rejected; the current guest keeps serving");
            return;
        }
    };
    let _ = swapper.swap(request_from(&config, grants, &watched.pinned, &watched.path, swapper)).await;
}

/// The swap a changed file asks for, minus what flags or environment pin.
fn request_from(
    config: &GuestConfig,
    grants: GrantsRequest,
    pinned: &Pinned,
    path: &std::path::Path,
    swapper: &Swapper,
) -> SwapRequest {
    let change = FileChange::of(config, *pinned, path);
    SwapRequest {
        source: GuestSource::Spec(change.guest.unwrap_or_else(|| swapper.current().source)),
        deadline: change.deadline,
        max_memory: change.max_memory,
        tick_interval: config.tick_interval,
        grants: Some(grants),
        origin: "config file",
    }
}

/// The error for a guest named by the file that does not exist, pointing at its line.
pub fn guest_error(path: &std::path::Path, config: &GuestConfig, error: &anyhow::Error) -> ConfigError {
    ConfigError { path: path.into(), line: config.guest_line, message: format!("guest: {error:#}") }
}
