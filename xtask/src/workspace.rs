//! Where the repository and its one `target/` directory are, and how tasks
//! run cargo and other commands.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

pub struct Workspace {
    /// The repository root (the host workspace's directory).
    pub root: PathBuf,
    /// The one target directory every build shares (`CARGO_TARGET_DIR` or `target/`).
    pub target_dir: PathBuf,
    /// Whether this task builds the host and the native references
    /// profile-guided (`pgo.rs`): the benchmarks do, unless `--no-pgo`.
    pub pgo: bool,
}

impl Workspace {
    pub fn locate() -> Result<Workspace> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().context("xtask has no parent directory")?.to_path_buf();
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Ok(Workspace { root, target_dir, pgo: true })
    }

    /// A `cargo` command run from the repository root.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(&self.root);
        cmd
    }
}

/// Runs a command to completion, failing with its command line if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}
