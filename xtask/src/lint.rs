//! The formatting and lint gate of `cargo xtask test`: `cargo fmt --check`
//! and `cargo clippy -- -D warnings` in every workspace (the host's, the
//! guests' two for `wasm32-wasip2`, and the fuzz targets' in `fuzz/`). A
//! finding fails the test command, so code that lands is formatted
//! (`rustfmt.toml`) and clippy-clean.

use crate::workspace::{self, Workspace};
use anyhow::{Context, Result};
use std::process::Command;

/// The workspaces: the host's (root), the fuzz targets', and the guests'
/// (built for their wasm target).
fn manifests(ws: &Workspace) -> Vec<(std::path::PathBuf, Option<&'static str>)> {
    let mut manifests = vec![(ws.root.join("Cargo.toml"), None), (ws.root.join("fuzz/Cargo.toml"), None)];
    manifests.extend(crate::guests::WORKSPACES.iter().map(|m| (ws.root.join(m), Some(crate::guests::TARGET))));
    manifests
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
    for (manifest, _) in manifests(ws) {
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
    for (manifest, target) in manifests(ws) {
        workspace::run(&mut clippy_command(ws, &manifest, target))
            .with_context(|| format!("clippy found problems in {}", manifest.display()))?;
    }
    Ok(())
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
