//! `cargo xtask build-guests`: builds every crate under `guests/` for
//! `wasm32-wasip2` with the guests' release profile (opt-level 3, LTO; see
//! `guests/Cargo.toml`) and copies each component to
//! `target/guests/<name>.wasm`. The guests live in two workspaces
//! ([`WORKSPACES`]): `prime`, built without std, is one of its own.
//!
//! Installs the `wasm32-wasip2` target when it is missing. Cargo skips what is
//! up to date; a component whose bytes did not change is not copied again.

use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// The guests' workspaces. `guests/prime` is built without the standard
/// library, so it cannot share a build with guests that turn on the `std`
/// features of the crates it shares with them (cargo unifies features
/// within one build): it is a workspace of its own, built into the same
/// target directory.
pub const WORKSPACES: [&str; 2] = ["guests/Cargo.toml", "guests/prime/Cargo.toml"];

/// Builds the guests; returns the directory holding the components.
pub fn build(ws: &Workspace) -> Result<PathBuf> {
    build_all(ws)?;
    Ok(ws.target_dir.join("guests"))
}

/// Builds the guests; returns each guest's name and component file.
pub fn build_all(ws: &Workspace) -> Result<Vec<(String, PathBuf)>> {
    ensure_target(TARGET)?;
    let guests = list(ws)?;

    for manifest in WORKSPACES {
        let mut cargo = ws.cargo();
        cargo.args(["build", "--quiet", "--release", "--workspace", "--target", TARGET]);
        cargo.arg("--manifest-path").arg(ws.root.join(manifest));
        cargo.arg("--target-dir").arg(&ws.target_dir);
        workspace::run(&mut cargo).with_context(|| format!("building the guests of {manifest}"))?;
    }

    let out_dir = ws.target_dir.join("guests");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let built_dir = ws.target_dir.join(TARGET).join("release");
    let mut components = Vec::new();
    for guest in &guests {
        let built = built_dir.join(&guest.artifact);
        let bytes = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        let dest = out_dir.join(format!("{}.wasm", guest.name));
        let unchanged = std::fs::read(&dest).is_ok_and(|old| old == bytes);
        if !unchanged {
            std::fs::write(&dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
        }
        println!(
            "{:<14} {:>8.1} KiB  {}  {}",
            guest.name,
            bytes.len() as f64 / 1024.0,
            if unchanged { "up to date" } else { "built     " },
            dest.strip_prefix(&ws.root).unwrap_or(&dest).display()
        );
        components.push((guest.name.clone(), dest));
    }
    Ok(components)
}

/// A guest crate and the file cargo produces for it.
struct GuestCrate {
    /// Package name; also the component's name in `target/guests/`.
    name: String,
    /// File name under `target/wasm32-wasip2/release/`: a library's name uses
    /// underscores, a binary's keeps its dashes.
    artifact: String,
}

/// The members of the guests' workspaces, as `cargo metadata` reports them.
fn list(ws: &Workspace) -> Result<Vec<GuestCrate>> {
    let mut guests = Vec::new();
    for manifest in WORKSPACES {
        guests.extend(members(ws, manifest)?);
    }
    if guests.is_empty() {
        bail!("the guests' workspaces have no members");
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(guests)
}

/// The members of one workspace (`manifest`, relative to the root).
fn members(ws: &Workspace, manifest: &str) -> Result<Vec<GuestCrate>> {
    let mut cargo = ws.cargo();
    cargo.args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"]);
    cargo.arg(ws.root.join(manifest));
    let metadata: serde_json::Value = serde_json::from_str(&workspace::output(&mut cargo)?)
        .with_context(|| format!("parsing `cargo metadata` of {manifest}"))?;
    let mut guests = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().context("package without a name")?.to_string();
        let artifact = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|target| {
                let kinds: Vec<&str> = target["kind"].as_array()?.iter().filter_map(|k| k.as_str()).collect();
                let target_name = target["name"].as_str()?;
                if kinds.contains(&"cdylib") {
                    Some(format!("{}.wasm", target_name.replace('-', "_")))
                } else if kinds.contains(&"bin") {
                    Some(format!("{target_name}.wasm"))
                } else {
                    None
                }
            })
            .with_context(|| format!("guest {name} has neither a cdylib nor a bin target"))?;
        guests.push(GuestCrate { name, artifact });
    }
    Ok(guests)
}

/// Installs a rustup target when it is missing.
pub fn ensure_target(target: &str) -> Result<()> {
    let installed = workspace::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("asking rustup for the installed targets (is rustup on PATH?)")?;
    if installed.lines().any(|t| t.trim() == target) {
        return Ok(());
    }
    println!("installing the {target} target");
    workspace::run(Command::new("rustup").args(["target", "add", target]))
}
