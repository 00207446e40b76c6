//! The formatting and lint gate of `cargo xtask test`: `cargo fmt --check`
//! and `cargo clippy -- -D warnings` in the three workspaces (the host's, the
//! guests' for `wasm32-wasip2`, and the fuzz targets' in `fuzz/`). A finding fails the test command, so code
//! that lands is formatted (`rustfmt.toml`) and clippy-clean.

use crate::workspace::{self, Workspace};
use anyhow::{Context, Result};
use std::process::Command;

/// The workspaces: the host's (root), the guests' and the fuzz targets'.
fn manifests(ws: &Workspace) -> [std::path::PathBuf; 3] {
    [ws.root.join("Cargo.toml"), ws.root.join("guests/Cargo.toml"), ws.root.join("fuzz/Cargo.toml")]
}

/// Installs rustfmt and clippy with rustup when the toolchain lacks them
/// (rustup's `minimal` profile has neither).
fn ensure_components(ws: &Workspace) -> Result<()> {
    let missing =
        ["fmt", "clippy"].iter().any(|tool| ws.cargo().args([tool, "--version"]).output().map_or(true, |o| !o.status.success()));
    if missing {
        println!("installing the rustfmt and clippy components");
        workspace::run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    }
    Ok(())
}

/// `cargo fmt --check` in every workspace: quick, so it runs first.
pub fn format(ws: &Workspace) -> Result<()> {
    ensure_components(ws)?;
    for manifest in manifests(ws) {
        let mut cargo = ws.cargo();
        cargo.args(["fmt", "--all", "--check", "--manifest-path"]).arg(&manifest);
        workspace::run(&mut cargo)
            .with_context(|| format!("{} is not formatted: run `cargo fmt --all` there", manifest.display()))?;
    }
    Ok(())
}

/// `cargo clippy` with warnings denied in every workspace, every target
/// (tests, benches, examples) included; the guests for their wasm target.
/// The fuzz targets are checked without libFuzzer's instrumentation, so
/// they keep compiling though the tests never run them.
pub fn clippy(ws: &Workspace) -> Result<()> {
    let [host, guests, fuzz] = manifests(ws);
    workspace::run(&mut clippy_command(ws, &host, None)).context("clippy found problems in the host workspace")?;
    workspace::run(&mut clippy_command(ws, &guests, Some(crate::guests::TARGET)))
        .context("clippy found problems in the guests workspace")?;
    workspace::run(&mut clippy_command(ws, &fuzz, None)).context("clippy found problems in the fuzz targets")
}

fn clippy_command(ws: &Workspace, manifest: &std::path::Path, target: Option<&str>) -> Command {
    let mut cargo = ws.cargo();
    cargo.args(["clippy", "--quiet", "--workspace", "--all-targets", "--manifest-path"]).arg(manifest);
    cargo.arg("--target-dir").arg(&ws.target_dir);
    if let Some(target) = target {
        cargo.args(["--target", target]);
    }
    cargo.args(["--", "-D", "warnings"]);
    cargo
}
