//! `wasmtime serve`, the reference wasi:http server, as a benchmark
//! contender: the same `prime.wasm` behind wasmtime's own command, so the
//! host's overhead is measured against another wasm host and not only
//! against native code.
//!
//! The command is built once from crates.io (`cargo install wasmtime-cli`,
//! at the version the host pins) into `target/wasmtime-cli/`, and run with
//! its pooling allocator and the WASI CLI interfaces the guest imports.

use crate::bench::Contender;
use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The wasmtime-cli release matching the host's pinned wasmtime crates, so
/// both contenders run the same compiler and runtime.
const VERSION: &str = "48.0.8";

/// What `wasmtime serve` prints (on stderr) once it listens.
const SERVING: &str = "Serving HTTP on http://";

/// `target/wasmtime-cli/bin/wasmtime` at [`VERSION`], installed when missing
/// or at another version (a first run takes several minutes: it compiles
/// wasmtime-cli in release).
pub fn ensure(ws: &Workspace) -> Result<PathBuf> {
    let root = ws.target_dir.join("wasmtime-cli");
    let program = root.join("bin").join("wasmtime");
    let installed = workspace::output(Command::new(&program).arg("--version")).unwrap_or_default();
    if installed.split_whitespace().nth(1) == Some(VERSION) {
        return Ok(program);
    }
    println!("building wasmtime-cli {VERSION} into {} (once; several minutes)", root.display());
    let mut cargo = ws.cargo();
    cargo
        .args(["install", "--quiet", "--locked", "--force", "wasmtime-cli", "--version"])
        .arg(format!("={VERSION}"))
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(root.join("build"));
    workspace::run(&mut cargo).with_context(|| format!("installing wasmtime-cli {VERSION}"))?;
    Ok(program)
}

/// Starts `wasmtime serve` on a free loopback port with `component` and
/// waits until it listens.
pub fn start(name: &'static str, wasmtime: &Path, component: &Path) -> Result<Contender> {
    let mut child = Command::new(wasmtime)
        .args(["serve", "-O", "pooling-allocator", "-S", "cli", "--addr", "127.0.0.1:0"])
        .arg(component)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", wasmtime.display()))?;
    let stderr = child.stderr.take().context("wasmtime's stderr is not piped")?;
    let (sender, lines) = mpsc::channel();
    // Reads until wasmtime exits, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).context("wasmtime serve did not start listening")?;
        if let Some(addr) = serving_addr(&line) {
            return Ok(Contender::external(name, child, format!("http://{addr}")));
        }
        if line.contains("Error") {
            bail!("wasmtime serve failed: {line}");
        }
    }
}

/// The address in wasmtime's "Serving HTTP on http://ADDR/" line.
fn serving_addr(line: &str) -> Option<&str> {
    let rest = &line[line.find(SERVING)? + SERVING.len()..];
    Some(rest.trim_end().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::serving_addr;

    #[test]
    fn the_listening_address_is_read_from_wasmtimes_line() {
        assert_eq!(serving_addr("Serving HTTP on http://127.0.0.1:42157/"), Some("127.0.0.1:42157"));
        assert_eq!(serving_addr("Serving HTTP on http://[::1]:8080/\n"), Some("[::1]:8080"));
        assert_eq!(serving_addr("warning: something else"), None);
    }
}
