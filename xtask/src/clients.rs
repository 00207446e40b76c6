//! Third-party socket.io clients for the tests: the official JavaScript
//! `socket.io-client` 4.x (npm) and `python-socketio` 5.x (PyPI), installed
//! once into `target/clients/` so that tests prove unmodified clients connect.

use crate::workspace::{self, Workspace};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Installs what is missing; returns `target/clients`.
pub fn ensure(ws: &Workspace) -> Result<PathBuf> {
    let dir = ws.target_dir.join("clients");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if !dir.join("node_modules/socket.io-client").is_dir() {
        println!("installing socket.io-client 4 (npm) into {}", dir.display());
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--prefix"]).arg(&dir).arg("socket.io-client@4");
        workspace::run(&mut npm).context("installing socket.io-client with npm (Node 20 and npm are needed)")?;
    }
    let python = dir.join("python");
    if !python.join("socketio").is_dir() {
        println!("installing python-socketio 5 (pip) into {}", python.display());
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&python)
            .arg("python-socketio[client]>=5,<6");
        workspace::run(&mut pip).context("installing python-socketio with pip")?;
    }
    Ok(dir)
}
