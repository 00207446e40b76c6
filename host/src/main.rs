//! The `scalelab` binary: parses the command line, sets up logging and the
//! async runtime, and runs the command from the library. See ARCHITECTURE.md.

use clap::{CommandFactory, FromArgMatches};
use scalelab::clients::{load, report, scheduling, swarm};
use scalelab::serve::config;
use scalelab::{backtrace, cli, compile, fd_limit, logging, serve, workers};
use std::process::ExitCode;
use std::time::Instant;

/// mimalloc rather than the C library's allocator (`allocator.rs` says why and how).
#[global_allocator]
static ALLOCATOR: scalelab::allocator::Allocator = scalelab::allocator::Allocator;

fn main() -> ExitCode {
    let process_start = Instant::now();
    let user_lib_backtrace = backtrace::disable_library_captures();
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    logging::init(cli.log_format);
    if let Some(value) = user_lib_backtrace.filter(|v| v != "0") {
        tracing::warn!(
            RUST_LIB_BACKTRACE = %value,
            "RUST_LIB_BACKTRACE is set: every error captures a backtrace, which slows serving"
        );
    }

    let result = match cli.command {
        cli::Command::Serve(mut args) => {
            args.compile_exe = own_executable();
            let explicit = matches.subcommand_matches("serve").map(cli::Explicit::of).unwrap_or_default();
            let workers = workers::count(args.workers);
            fd_limit::raise();
            runtime(workers).and_then(|rt| {
                tracing::info!(step = "runtime", workers, "async runtime started");
                rt.block_on(serve::run(*args, explicit, process_start))
            })
        }
        cli::Command::Swarm(args) => {
            fd_limit::raise();
            // Before the runtime starts: its worker threads inherit the policy.
            if let Err(e) = scheduling::apply(args.scheduling) {
                tracing::warn!(scheduling = ?args.scheduling, error = %e, "cannot set the swarm's scheduling policy; keeping the default");
            }
            runtime(workers::count(None)).and_then(|rt| rt.block_on(swarm::run(args)))
        }
        cli::Command::Compile(args) => runtime(1).and_then(|rt| rt.block_on(compile::run(args))),
        cli::Command::CompileChild(args) => scalelab::runtime::compile_child::run(args),
        cli::Command::Report(args) => runtime(workers::count(None)).and_then(|rt| rt.block_on(report::run(args)).map(|_| ())),
        cli::Command::Load(args) => {
            let workers = workers::count(None);
            return match runtime(workers).and_then(|rt| rt.block_on(load::run(args))) {
                Ok(verdict) if verdict.passed => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) if e.is::<load::UsageError>() => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<config::ConfigError>() => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// This binary, to run as a compile child; without it (an unusual
/// `/proc`), guests compile in the host.
fn own_executable() -> Option<std::path::PathBuf> {
    std::env::current_exe()
        .inspect_err(|e| tracing::warn!(error = %e, "cannot find the scalelab binary; guests compile in the host process"))
        .ok()
}

fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().context("starting the async runtime")
}
