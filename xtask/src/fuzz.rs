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

    let mut runs = Vec::new();
    for target in &targets {
        println!("fuzzing {target} for {seconds} s");
        let max_time = format!("-max_total_time={seconds}");
        let out = fuzz(&["run", target], &[&max_time, "-timeout=10"])
            .output()
            .with_context(|| format!("running the fuzz target {target}"))?;
        runs.push(Run::read(target, out.status.success(), &String::from_utf8_lossy(&out.stderr)));
    }

    println!("\n| target | runs in {seconds} s | coverage | corpus | result |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for run in &runs {
        println!("| {} | {} | {} | {} | {} |", run.target, run.runs, run.coverage, run.corpus, run.result());
    }
    let crashed: Vec<&Run> = runs.iter().filter(|r| !r.ok).collect();
    if !crashed.is_empty() {
        for run in &crashed {
            eprintln!("--- {} ---\n{}", run.target, run.log_tail);
        }
        let names: Vec<&str> = crashed.iter().map(|r| r.target.as_str()).collect();
        bail!("fuzz targets crashed: {}", names.join(", "));
    }
    Ok(())
}

/// How one target's run went, from libFuzzer's output.
struct Run {
    target: String,
    ok: bool,
    /// Inputs tried, coverage and corpus, from libFuzzer's last status line.
    runs: String,
    coverage: String,
    corpus: String,
    /// Where libFuzzer wrote the crashing input, if it did.
    crash: Option<String>,
    /// The end of the output, shown when the target crashed.
    log_tail: String,
}

impl Run {
    fn read(target: &str, ok: bool, log: &str) -> Run {
        let status = log.lines().rev().find(|l| l.contains("DONE") || l.contains("NEW") || l.contains("pulse")).unwrap_or("");
        let field = |name: &str| {
            status.split_whitespace().skip_while(|w| *w != name).nth(1).unwrap_or("-").trim_end_matches(',').to_string()
        };
        let lines: Vec<&str> = log.lines().collect();
        Run {
            target: target.to_string(),
            ok,
            runs: status.split_whitespace().next().unwrap_or("#0").trim_start_matches('#').to_string(),
            coverage: field("cov:"),
            corpus: field("corp:"),
            crash: log.lines().find(|l| l.contains("Test unit written to")).map(str::to_string),
            log_tail: lines[lines.len().saturating_sub(40)..].join("\n"),
        }
    }

    fn result(&self) -> String {
        match (&self.crash, self.ok) {
            (_, true) => "no crash".to_string(),
            (Some(crash), false) => crash.clone(),
            (None, false) => "failed".to_string(),
        }
    }
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
