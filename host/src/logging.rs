//! Structured logs with `tracing`: a readable format by default (coloured on a
//! terminal), JSON lines with `--log-format json`. `SCALELAB_LOG` (or
//! `RUST_LOG`) takes an `EnvFilter` directive; the default is `info`.

use crate::cli::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = std::env::var("SCALELAB_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // A log line that cannot be written (stderr closed: a pipe whose reader
    // went away) is dropped. By default tracing-subscriber would report it
    // with `eprintln!`, which panics on that same broken stderr and takes the
    // whole server down.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
