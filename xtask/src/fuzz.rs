//! `cargo xtask fuzz [--seconds N]`: runs every fuzz target of `fuzz/`
//! (cargo-fuzz, libFuzzer) for N seconds each and prints a table: runs,
//! coverage, corpus size, and whether it crashed.
//!
//! cargo-fuzz is installed into `target/tools/cargo-fuzz` when missing. The
//! project's one toolchain is stable: libFuzzer's instrumentation flags are
//! unstable, so the build runs with `RUSTC_BOOTSTRAP=1`, and without a
//! sanitizer (`--sanitizer none`; safe Rust needs none to find panics).
//! A crash leaves its input in `fuzz/artifacts/<target>/`; commit it as a
//! regression test of the crate it broke (a unit test that feeds it back).

use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// The pinned cargo-fuzz.
const CARGO_FUZZ: &str = "0.13.2";

pub fn run(ws: &Workspace, seconds: u64) -> Result<()> {
    let bin = ensure_cargo_fuzz(ws)?;
    // `cargo fuzz <command> [target] <options> [-- libFuzzer options]`.
    let fuzz = |command: &[&str], libfuzzer: &[&str]| {
        let mut cmd = Command::new(bin.join("cargo-fuzz"));
        cmd.current_dir(ws.root.join("fuzz")).env("RUSTC_BOOTSTRAP", "1").arg("fuzz").args(command);
        cmd.arg("--sanitizer").arg("none").arg("--target-dir").arg(ws.target_dir.join("fuzz"));
        if !libfuzzer.is_empty() {
            cmd.arg("--").args(libfuzzer);
        }
        cmd
    };
    let mut list = Command::new(bin.join("cargo-fuzz"));
    list.current_dir(ws.root.join("fuzz")).args(["fuzz", "list"]);
    let targets: Vec<String> = workspace::output(&mut list)?.lines().map(str::to_string).collect();
    workspace::run(&mut fuzz(&["build"], &[])).context("building the fuzz targets")?;

    let mut rows = Vec::new();
    for target in &targets {
        println!("fuzzing {target} for {seconds} s");
        let max_time = format!("-max_total_time={seconds}");
        let out = fuzz(&["run", target], &[&max_time, "-timeout=10"])
            .output()
            .with_context(|| format!("running the fuzz target {target}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let done = log.lines().rev().find(|l| l.contains("DONE") || l.contains("NEW") || l.contains("pulse")).unwrap_or("");
        let field = |name: &str| {
            done.split_whitespace().skip_while(|w| *w != name).nth(1).unwrap_or("-").trim_end_matches(',').to_string()
        };
        let runs = done.split_whitespace().next().unwrap_or("#0").trim_start_matches('#').to_string();
        let crash = log.lines().find(|l| l.contains("Test unit written to")).map(str::to_string);
        rows.push((target.clone(), runs, field("cov:"), field("corp:"), out.status.success(), crash, log.into_owned()));
    }

    println!("\n| target | runs in {seconds} s | coverage | corpus | result |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for (target, runs, cov, corpus, ok, crash, _) in &rows {
        let result = if *ok { "no crash".to_string() } else { crash.clone().unwrap_or_else(|| "failed".to_string()) };
        println!("| {target} | {runs} | {cov} | {corpus} | {result} |");
    }
    let failed: Vec<&str> = rows.iter().filter(|r| !r.4).map(|r| r.0.as_str()).collect();
    if !failed.is_empty() {
        for row in rows.iter().filter(|r| !r.4) {
            eprintln!(
                "--- {} ---\n{}",
                row.0,
                row.6.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        bail!("fuzz targets crashed: {}", failed.join(", "));
    }
    Ok(())
}

/// `target/tools/cargo-fuzz/bin`, with cargo-fuzz installed.
fn ensure_cargo_fuzz(ws: &Workspace) -> Result<PathBuf> {
    let root = ws.target_dir.join("tools").join("cargo-fuzz");
    let bin = root.join("bin");
    if !bin.join("cargo-fuzz").exists() {
        println!("installing cargo-fuzz {CARGO_FUZZ} into {}", root.display());
        let mut cargo = ws.cargo();
        cargo.args(["install", "--locked", "--version", CARGO_FUZZ, "cargo-fuzz", "--root"]).arg(&root);
        workspace::run(&mut cargo).context("installing cargo-fuzz")?;
    }
    Ok(bin)
}
