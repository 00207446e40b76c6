//! Compiling a guest in a child process, so that the compiler's working
//! memory is never the serving host's.
//!
//! Cranelift works in 100-200 MB to compile a guest like `httpbin`. Freed,
//! most of that stayed in the host's allocator (76-82 MB resident after a
//! compile against 30 MB for the same guest from the compile cache), and a
//! deployment that scales on memory read it as load, at start and after
//! every swap to a guest not yet compiled. A child process that compiles and
//! exits gives all of it back. The protocol: the host runs its own binary as
//! `scalelab compile-child` with the engine settings that shape code, writes
//! the guest's bytes to its stdin (the bytes it hashed, so the code always
//! matches the cache key), and loads the `.cwasm` the child wrote. Any
//! failure of the child is the caller's to handle: it compiles in-process.

use crate::cli::CompileChildArgs;
use crate::runtime::cache;
use crate::runtime::engine::{self, EngineSettings, Reservation};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How to run a compile child for one engine.
#[derive(Debug, Clone)]
pub struct ChildCompiler {
    /// The scalelab binary (the host's own executable).
    exe: PathBuf,
    /// The engine's settings that shape code; the pool's size does not.
    epoch_interruption: bool,
    max_memory: u64,
    /// The reservation the host's engine got, which the child must not
    /// choose for itself: one slot always fits the guarded reservation, a
    /// host's pool may not have.
    reservation: Reservation,
}

impl ChildCompiler {
    /// A compiler for an engine built with `settings` and `reservation`, run
    /// as `exe`; `None` when there is no binary to run (compile in-process).
    pub fn for_engine(exe: Option<&Path>, settings: &EngineSettings, reservation: Reservation) -> Option<ChildCompiler> {
        Some(ChildCompiler {
            exe: exe?.to_path_buf(),
            epoch_interruption: settings.epoch_interruption,
            max_memory: settings.max_memory,
            reservation,
        })
    }

    /// Compiles `bytes` in a child process that writes the code to `output`,
    /// and loads it from there into `engine`. `output` is left behind (the
    /// caller renames or removes it) unless the child failed to write it.
    pub fn compile(&self, engine: &Engine, bytes: &[u8], output: &Path) -> Result<Component> {
        let mut command = Command::new(&self.exe);
        command
            .arg("compile-child")
            .arg("--output")
            .arg(output)
            .arg("--epoch-interruption")
            .arg(self.epoch_interruption.to_string())
            .arg("--max-memory")
            .arg(self.max_memory.to_string())
            .arg("--memory-reservation")
            .arg(self.reservation.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. A host killed mid-compile takes
        // its child along instead of leaving it to write into the cache.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().with_context(|| format!("starting {} compile-child", self.exe.display()))?;
        let sent = child.stdin.take().expect("stdin is piped").write_all(bytes);
        let finished = child.wait_with_output().context("waiting for the compile child")?;
        if !finished.status.success() {
            let stderr = String::from_utf8_lossy(&finished.stderr);
            bail!("the compile child failed ({}): {}", finished.status, last_lines(&stderr, 5));
        }
        sent.context("writing the guest to the compile child")?;
        // SAFETY: the child, our own binary, wrote this file just now for this
        // engine's settings; wasmtime checks the engine compatibility again.
        unsafe { Component::deserialize_file(engine, output) }
            .map_err(anyhow::Error::from)
            .context("loading the compile child's code")
    }
}

/// The child's side: reads the guest from stdin, compiles it with an engine
/// set as the host's, and writes the code to `--output`.
pub fn run(args: CompileChildArgs) -> Result<()> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).context("reading the guest from stdin")?;
    let settings = EngineSettings { epoch_interruption: args.epoch_interruption, max_memory: args.max_memory, pool_slots: 1 };
    let engine = engine::build_with(&settings, args.memory_reservation)?;
    let component = cache::compile(&engine, &bytes, Path::new("the guest on stdin"))?;
    cache::store(&component, &args.output)
}

/// The last `n` non-empty lines of a child's stderr, joined for one log field.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail_without_blank_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(last_lines("only\n", 5), "only");
        assert_eq!(last_lines("", 5), "");
    }

    #[test]
    fn a_missing_binary_is_an_error_the_caller_can_fall_back_from() {
        let settings = EngineSettings { epoch_interruption: true, max_memory: 1 << 20, pool_slots: 1 };
        let (engine, reservation) = engine::build(&settings).unwrap();
        let child = ChildCompiler::for_engine(Some(Path::new("/nonexistent/scalelab")), &settings, reservation).unwrap();
        let output = std::env::temp_dir().join(format!("scalelab-child-test-{}.cwasm", std::process::id()));
        let err = child.compile(&engine, b"\0asm", &output).unwrap_err();
        assert!(format!("{err:#}").contains("starting /nonexistent/scalelab compile-child"), "{err:#}");
        assert!(!output.exists());
    }
}
