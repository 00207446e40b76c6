//! `cargo xtask image`: the container image, and the same image as a plain
//! directory.
//!
//! [`LAYOUT`] is the one list of what the image holds. `--layout-only`
//! builds the static host (`x86_64-unknown-linux-musl`, profile `image`) and
//! the guests, and lays them out in a directory exactly as the image's root
//! filesystem. The `Dockerfile` runs that very command in its build stage
//! and copies the directory into an empty (`scratch`) image, so the two
//! cannot drift apart. Without `--layout-only` the task runs `docker build`.
//!
//! Nothing in the image depends on the CPU it will run on: guests ship as
//! `.wasm` and are compiled (and cached under `/tmp`) at start.

use crate::guests;
use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The host's target: a static binary with no libc to ship.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The cargo profile of the image's host binary (see the root `Cargo.toml`).
pub const PROFILE: &str = "image";
/// The image's entrypoint.
pub const ENTRYPOINT: &str = "/opt/scalelab/bin/scalelab";
/// The non-root user and group the image runs as (distroless's `nonroot`).
pub const USER: &str = "65532:65532";
/// The largest image the project accepts (35 MB until `scalelab report
/// --kube` brought the `kube` client into the host: the layout was 39.7 MB
/// then).
pub const MAX_BYTES: u64 = 45_000_000;

/// Where each thing goes in the image.
pub enum Source {
    /// The static host binary.
    Host,
    /// Every guest component (`fixture-*` test guests excluded), into this directory.
    Guests,
    /// A small file written as is.
    Text(&'static str),
    /// An empty directory.
    Dir,
}

pub struct Entry {
    /// Path inside the image, without the leading `/`.
    pub path: &'static str,
    pub source: Source,
    pub mode: u32,
}

/// Everything the image holds. The host finds guests by name in `../guests`
/// next to its binary, so no flag or variable is needed.
pub const LAYOUT: &[Entry] = &[
    Entry { path: "opt/scalelab/bin/scalelab", source: Source::Host, mode: 0o755 },
    Entry { path: "opt/scalelab/guests", source: Source::Guests, mode: 0o755 },
    // The default guest configuration: `docker run scalelab:dev` serves prime.
    // Kubernetes mounts the guest ConfigMap over /etc/scalelab.
    Entry {
        path: "etc/scalelab/guest.toml",
        source: Source::Text(
            "# The image's default guest configuration. In Kubernetes the guest\n\
             # ConfigMap is mounted over /etc/scalelab; edits to it hot-swap the guest.\n\
             guest = \"prime\"\n",
        ),
        mode: 0o644,
    },
    // Names for the numeric user, for tools that show them.
    Entry {
        path: "etc/passwd",
        source: Source::Text("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
        mode: 0o644,
    },
    Entry { path: "etc/group", source: Source::Text("root:x:0:\nnonroot:x:65532:\n"), mode: 0o644 },
    // The temp dir holds the compile cache (an emptyDir in Kubernetes, where
    // the root filesystem is read-only).
    Entry { path: "tmp", source: Source::Dir, mode: 0o1777 },
    // The data directory (SCALELAB_DATA_DIR in the Dockerfile): embedded
    // SQLite files. In Kubernetes a volume is mounted here; without one the
    // data lasts as long as the container. Writable by the non-root user.
    Entry { path: "var/lib/scalelab", source: Source::Dir, mode: 0o1777 },
];

pub struct ImageArgs {
    pub layout_only: bool,
    pub out: Option<PathBuf>,
    pub tag: String,
}

pub fn run(ws: &Workspace, args: &ImageArgs) -> Result<()> {
    if !args.layout_only {
        let mut docker = Command::new("docker");
        docker.args(["build", "--tag", &args.tag, "."]).current_dir(&ws.root);
        return workspace::run(&mut docker).context(
            "docker build failed (a Docker engine is needed; `cargo xtask image --layout-only` builds the same layout without one)",
        );
    }
    let out = args.out.clone().unwrap_or_else(|| default_dir(ws));
    let guests = guests::build_all(ws)?;
    let files = build_layout(ws, &out, &guests)?;
    let mut total = 0;
    for (path, bytes) in &files {
        println!("{bytes:>12}  /{path}");
        total += bytes;
    }
    println!("{total:>12}  in all ({:.1} MB, limit {:.0} MB) in {}", total as f64 / 1e6, MAX_BYTES as f64 / 1e6, out.display());
    println!("entrypoint {ENTRYPOINT}, user {USER}; the guest comes from /etc/scalelab/guest.toml");
    if total > MAX_BYTES {
        bail!("the image layout is {total} bytes, over the {MAX_BYTES}-byte limit");
    }
    Ok(())
}

/// `target/image/layout`.
pub fn default_dir(ws: &Workspace) -> PathBuf {
    ws.target_dir.join("image").join("layout")
}

/// Builds the static host and writes [`LAYOUT`] to `out` (emptied first),
/// with the guests `guests::build_all` built. Returns each file with its size.
pub fn build_layout(ws: &Workspace, out: &Path, built: &[(String, PathBuf)]) -> Result<Vec<(String, u64)>> {
    let host = build_host(ws)?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    let mut files = Vec::new();
    for entry in LAYOUT {
        let dest = out.join(entry.path);
        match &entry.source {
            Source::Host => {
                copy(&host, &dest, entry.mode)?;
                files.push((entry.path.to_string(), size(&dest)?));
            }
            Source::Guests => {
                make_dir(&dest, entry.mode)?;
                for (name, wasm) in built.iter().filter(|(name, _)| !name.starts_with("fixture-")) {
                    let file = dest.join(format!("{name}.wasm"));
                    copy(wasm, &file, 0o644)?;
                    files.push((format!("{}/{name}.wasm", entry.path), size(&file)?));
                }
            }
            Source::Text(text) => {
                make_dir(dest.parent().context("a file at the root")?, 0o755)?;
                std::fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?;
                set_mode(&dest, entry.mode)?;
                files.push((entry.path.to_string(), text.len() as u64));
            }
            Source::Dir => make_dir(&dest, entry.mode)?,
        }
    }
    Ok(files)
}

/// `cargo build` of the static host; returns the binary.
fn build_host(ws: &Workspace) -> Result<PathBuf> {
    guests::ensure_target(TARGET)?;
    let musl_gcc = Command::new("musl-gcc").arg("--version").output();
    if !musl_gcc.is_ok_and(|out| out.status.success()) {
        bail!("musl-gcc is missing: install Debian's musl-tools (apt-get install musl-tools); C parts of wasmtime need it");
    }
    let mut cargo = ws.cargo();
    cargo.args(["build", "--quiet", "--package", "scalelab", "--profile", PROFILE, "--target", TARGET]);
    workspace::run(&mut cargo).context("building the static host")?;
    Ok(ws.target_dir.join(TARGET).join(PROFILE).join("scalelab"))
}

fn make_dir(dir: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(dir, mode)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    make_dir(to.parent().context("a file at the root")?, 0o755)?;
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len())
}
