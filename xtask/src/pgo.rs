//! Profile-guided release builds of the host and the native references, the
//! builds every benchmark measures (`--no-pgo`: the plain release build,
//! which `report`, `soak`, `serve --release` and the container image use).
//!
//! The host's per-request path crosses far more code than a native server's
//! (hyper, tokio, wasmtime's component machinery, wasmtime-wasi-http, our
//! own), and on these machines it misses the instruction cache about 2.5
//! times as often per request (README, Performance). Profile-guided
//! optimisation lays hot code out together and moves cold code aside, which
//! is what that footprint needs; a small native server gains little from it.
//! Every contender is built the same way from the same training, so the
//! comparison stays like for like.
//!
//! Three steps, all under `target/pgo/`:
//! 1. build [`RELEASE_PACKAGES`] instrumented (`-Cprofile-generate`) into
//!    `instrumented/`;
//! 2. train: run each binary under the benchmarks' kinds of load
//!    ([`train`]), then merge what they wrote with `llvm-profdata` (rustup's
//!    `llvm-tools`, added when missing) into `merged.profdata`. Skipped while
//!    that profile is newer than every instrumented binary;
//! 3. build the same packages with `-Cprofile-use` into `optimized/`.
//!
//! rustc tracks the profile as an input of every crate, so a new profile
//! rebuilds everything in step 3 (about 15 minutes here); an unchanged one
//! rebuilds nothing.

use crate::bench::{Contender, Prepared, RELEASE_PACKAGES, load_with, spawn_host, start_native_with};
use crate::bench_todo;
use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// How long each training load runs. The profile needs which code is hot,
/// not a steady rate: a few seconds per workload are plenty.
const ROUND: Duration = Duration::from_secs(3);

/// Connections of each training load (the benchmarks' default).
const CONCURRENCY: u32 = 32;

/// Socket.io clients of the tracker's training run.
const TRACKER_CLIENTS: u32 = 200;

/// Where the three steps keep their output.
struct Dirs {
    /// `target/pgo/instrumented`: the instrumented build's target directory.
    instrumented: PathBuf,
    /// `target/pgo/raw`: what the instrumented binaries write as they exit.
    raw: PathBuf,
    /// `target/pgo/merged.profdata`: the profile step 3 builds with.
    profile: PathBuf,
    /// `target/pgo/optimized`: the profile-guided build's target directory.
    optimized: PathBuf,
    /// `target/pgo/train`: the training servers' compile cache and files.
    train: PathBuf,
}

impl Dirs {
    fn of(ws: &Workspace) -> Dirs {
        let root = ws.target_dir.join("pgo");
        Dirs {
            instrumented: root.join("instrumented"),
            raw: root.join("raw"),
            profile: root.join("merged.profdata"),
            optimized: root.join("optimized"),
            train: root.join("train"),
        }
    }
}

/// Builds [`RELEASE_PACKAGES`] profile-guided, training them first when
/// their instrumented build changed; returns the directory of the binaries.
pub fn build(ws: &Workspace, guests_dir: &Path) -> Result<PathBuf> {
    let dirs = Dirs::of(ws);
    println!("building the host and the native references instrumented (profile-guided release, step 1 of 3)");
    let instrumented = build_into(ws, &dirs.instrumented, &format!("-Cprofile-generate={}", dirs.raw.display()))?;
    let binaries = binaries_of(ws.cargo(), &RELEASE_PACKAGES)?;
    if needs_training(modified(&dirs.profile), binaries.iter().map(|b| modified(&instrumented.join(b)))) {
        println!("training them under load (step 2 of 3)");
        let _ = std::fs::remove_dir_all(&dirs.raw);
        std::fs::create_dir_all(&dirs.train)?;
        let prepared = Prepared { guests_dir: guests_dir.to_path_buf(), release: instrumented, bench_dir: dirs.train.clone() };
        train(ws, &prepared)?;
        merge(&dirs.raw, &dirs.profile)?;
    } else {
        println!("the profile is newer than the instrumented binaries: no training (step 2 of 3)");
    }
    println!("building them with the profile (step 3 of 3)");
    build_into(ws, &dirs.optimized, &format!("-Cprofile-use={}", dirs.profile.display()))
}

/// The names of the binaries `packages` build, from `cargo metadata`
/// (`cargo` runs in the workspace): a package's binary need not bear its
/// name (`tracker-work` builds `tracker-work-cost`), and one looked for under
/// the package's name could never be dated, so training would run every time.
fn binaries_of(mut cargo: Command, packages: &[&str]) -> Result<Vec<String>> {
    let out = cargo.args(["metadata", "--no-deps", "--format-version", "1"]).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("cargo metadata failed with {}", out.status);
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let mut binaries = Vec::new();
    for package in packages {
        let found = metadata["packages"].as_array().into_iter().flatten().find(|p| p["name"] == *package);
        let targets = found.with_context(|| format!("cargo metadata lists no package {package}"))?["targets"].as_array();
        let bins: Vec<String> = targets
            .into_iter()
            .flatten()
            .filter(|t| t["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "bin")))
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        if bins.is_empty() {
            bail!("the package {package} builds no binary");
        }
        binaries.extend(bins);
    }
    Ok(binaries)
}

/// `cargo build --release` of [`RELEASE_PACKAGES`] into `target_dir` with
/// `flag` added to RUSTFLAGS; returns the directory of the binaries.
fn build_into(ws: &Workspace, target_dir: &Path, flag: &str) -> Result<PathBuf> {
    let mut cargo = ws.cargo();
    cargo.args(["build", "--quiet", "--release", "--target-dir"]).arg(target_dir);
    for package in RELEASE_PACKAGES {
        cargo.args(["-p", package]);
    }
    cargo.env("RUSTFLAGS", rustflags(std::env::var("RUSTFLAGS").ok().as_deref(), flag));
    workspace::run(&mut cargo)?;
    Ok(target_dir.join("release"))
}

/// The user's RUSTFLAGS, if any, then `flag`.
fn rustflags(existing: Option<&str>, flag: &str) -> String {
    match existing.map(str::trim) {
        Some(flags) if !flags.is_empty() => format!("{flags} {flag}"),
        _ => flag.to_string(),
    }
}

/// When a file was last modified; `None` when it does not exist.
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether the profile must be made again: there is none, or a binary it
/// should describe was built after it (or cannot be dated).
fn needs_training(profile: Option<SystemTime>, binaries: impl IntoIterator<Item = Option<SystemTime>>) -> bool {
    let Some(profile) = profile else { return true };
    binaries.into_iter().any(|built| built.is_none_or(|built| built >= profile))
}

/// Runs every instrumented binary under the benchmarks' kinds of load, then
/// stops each with SIGINT so that it writes its profile as it exits.
fn train(ws: &Workspace, prepared: &Prepared) -> Result<()> {
    let native = |name: &'static str| start_native_with(name, &prepared.release.join(name), &["127.0.0.1:0"]);
    println!("  prime and prime-native: /prime/1, /prime/1000");
    let prime = [host(prepared, "prime", &["--guest", "prime"])?, native("prime-native")?];
    load_then_stop(prepared, prime, &["/prime/1", "/prime/1000"])?;
    println!("  httpbin and httpbin-native: /uuid, /get");
    let httpbin = [host(prepared, "httpbin", &["--guest", "httpbin"])?, native("httpbin-native")?];
    load_then_stop(prepared, httpbin, &["/uuid", "/get"])?;
    println!("  todo on SQLite and on Postgres, todo-native on Postgres: the overlay's mix");
    train_todo(ws, prepared)?;
    println!("  tracker: {TRACKER_CLIENTS} socket.io clients");
    train_tracker(prepared)?;
    let mut work_cost = Command::new(prepared.release.join("tracker-work-cost"));
    workspace::run(work_cost.stdout(Stdio::null()).stderr(Stdio::null()))
}

/// `scalelab serve` of the instrumented build with `args`, ready.
fn host(prepared: &Prepared, name: &'static str, args: &[&str]) -> Result<Contender> {
    let Prepared { guests_dir, release, bench_dir } = prepared;
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let (contender, lines) = spawn_host(name, &release.join("scalelab"), guests_dir, &bench_dir.join("cache"), &args, false)?;
    std::thread::spawn(move || for _ in lines {});
    Ok(contender)
}

/// Loads each contender at each of `paths` in turn, then stops it.
fn load_then_stop(prepared: &Prepared, contenders: impl IntoIterator<Item = Contender>, paths: &[&str]) -> Result<()> {
    let scalelab = prepared.release.join("scalelab");
    for contender in contenders {
        for path in paths {
            load_with(&scalelab, &[&format!("{}{path}", contender.url)], CONCURRENCY, ROUND)?;
        }
        contender.interrupt()?;
    }
    Ok(())
}

/// The todo bench's three contenders (`bench_todo::Stage`) under the overlay's mix.
fn train_todo(ws: &Workspace, prepared: &Prepared) -> Result<()> {
    let scalelab = prepared.release.join("scalelab");
    let stage = bench_todo::Stage::start(ws, prepared)?;
    for ((contender, _), scenario) in stage.contenders.into_iter().zip(&stage.scenarios) {
        load_with(&scalelab, &["--scenario", &scenario.to_string_lossy()], CONCURRENCY, ROUND)?;
        contender.interrupt()?;
    }
    Ok(())
}

/// The tracker under [`TRACKER_CLIENTS`] socket.io clients of `scalelab swarm sockets`.
fn train_tracker(prepared: &Prepared) -> Result<()> {
    let tracker = host(prepared, "tracker", &["--guest", "tracker", "--max-sessions", "100000"])?;
    let swarm = Command::new(prepared.release.join("scalelab"))
        .args(["swarm", "sockets", "--url", &tracker.url, "--clients", &TRACKER_CLIENTS.to_string(), "--spawn-interval", "1ms"])
        .args(["--hold", &format!("{}ms", (2 * ROUND).as_millis()), "--metrics-listen", "off", "--output", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running the swarm")?;
    if !swarm.success() {
        bail!("the training swarm failed: {swarm}");
    }
    tracker.interrupt()
}

/// Merges the raw profiles in `raw` into `profile` with rustup's
/// `llvm-profdata`, which matches the compiler's LLVM.
fn merge(raw: &Path, profile: &Path) -> Result<()> {
    let files: Vec<PathBuf> = std::fs::read_dir(raw)
        .with_context(|| format!("reading {}", raw.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "profraw"))
        .collect();
    if files.is_empty() {
        bail!("the training wrote no profile into {}", raw.display());
    }
    workspace::run(Command::new(llvm_profdata()?).arg("merge").arg("-o").arg(profile).args(&files))
}

/// rustup's `llvm-profdata` for the active toolchain, installing the
/// `llvm-tools` component when it is missing.
fn llvm_profdata() -> Result<PathBuf> {
    let sysroot = workspace::output(Command::new("rustc").args(["--print", "sysroot"]))?;
    let version = workspace::output(Command::new("rustc").arg("-vV"))?;
    let path = tool_path(Path::new(sysroot.trim()), &version, "llvm-profdata")?;
    if !path.exists() {
        println!("adding rustup's llvm-tools (for llvm-profdata)");
        workspace::run(Command::new("rustup").args(["component", "add", "llvm-tools"]))?;
    }
    Ok(path)
}

/// Where rustup puts an `llvm-tools` binary: `<sysroot>/lib/rustlib/<host>/bin/<tool>`,
/// the host triple read from `rustc -vV`.
fn tool_path(sysroot: &Path, rustc_version: &str, tool: &str) -> Result<PathBuf> {
    let host = rustc_version.lines().find_map(|line| line.strip_prefix("host: ")).context("rustc -vV names no host")?;
    Ok(sysroot.join("lib/rustlib").join(host.trim()).join("bin").join(tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_dated_by_the_binaries_the_packages_really_build() {
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let binaries = binaries_of(cargo, &RELEASE_PACKAGES).unwrap();
        for binary in ["scalelab", "prime-native", "tracker-work-cost", "todo-native", "httpbin-native"] {
            assert!(binaries.iter().any(|b| b == binary), "{binary} missing from {binaries:?}");
        }
        assert!(!binaries.iter().any(|b| b == "tracker-work"), "{binaries:?}");
    }

    #[test]
    fn the_users_rustflags_are_kept_before_the_profile_flag() {
        assert_eq!(rustflags(None, "-Cprofile-use=p"), "-Cprofile-use=p");
        assert_eq!(rustflags(Some("  "), "-Cprofile-use=p"), "-Cprofile-use=p");
        assert_eq!(rustflags(Some("-Ctarget-cpu=native"), "-Cprofile-use=p"), "-Ctarget-cpu=native -Cprofile-use=p");
    }

    #[test]
    fn training_runs_again_when_any_binary_is_newer_than_the_profile() {
        let at = |s| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert!(needs_training(None, [at(1)]), "no profile yet");
        assert!(!needs_training(at(10), [at(1), at(9)]), "every binary older");
        assert!(needs_training(at(10), [at(1), at(11)]), "one binary rebuilt since");
        assert!(needs_training(at(10), [at(10)]), "built in the same instant: not provably older");
        assert!(needs_training(at(10), [None]), "a binary that cannot be dated");
    }

    #[test]
    fn llvm_profdata_is_found_under_the_sysroot_for_the_host_triple() {
        let version = "rustc 1.95.0 (abc 2026-01-01)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
        let path = tool_path(Path::new("/opt/rust"), version, "llvm-profdata").unwrap();
        assert_eq!(path, Path::new("/opt/rust/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-profdata"));
        assert!(tool_path(Path::new("/opt/rust"), "rustc 1.95.0\n", "llvm-profdata").is_err());
    }
}
