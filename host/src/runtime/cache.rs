//! Loading a guest's compiled code: from a precompiled `.cwasm`, from the
//! compile cache, or by compiling (and then filling the cache). A serving
//! host compiles in a child process (`compile_child`), and in-process only
//! when it has no binary to run or the child failed.
//!
//! A cache entry is keyed by the sha256 of the guest file's bytes and by the
//! engine's compatibility hash (wasmtime version, target CPU features, and the
//! settings that shape code such as epoch checks and memory reservation), so a
//! changed guest or a differently configured host never reuses stale code.
//! Entries are written to a temporary file and renamed into place, so a crash
//! or a concurrent start never leaves a torn file behind.

use crate::runtime::compile_child::ChildCompiler;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

/// Where compiled guests are kept between starts.
#[derive(Debug, Clone)]
pub struct CompileCache {
    /// `None` disables the cache (`--no-cache`).
    dir: Option<PathBuf>,
    /// Compiles in a child process, so the compiler's memory is not this
    /// process's; `None` compiles in-process.
    child: Option<ChildCompiler>,
}

/// How a guest's code was obtained, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The guest file itself was a precompiled `.cwasm`.
    Precompiled,
    /// Found in the compile cache.
    CacheHit,
    /// Compiled now (and stored in the cache if it is enabled).
    Compiled,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Precompiled => "precompiled file",
            Origin::CacheHit => "compile cache hit",
            Origin::Compiled => "compile cache miss",
        }
    }
}

/// A compiled guest and facts about where it came from.
pub struct Loaded {
    pub component: Component,
    /// Hex sha256 of the guest file as given (wasm or cwasm bytes).
    pub sha256: String,
    pub origin: Origin,
    /// Whether a compile child compiled it (only ever with `Origin::Compiled`).
    pub compiled_in_child: bool,
}

impl Loaded {
    /// Where the code was compiled, for the log: `None` when it was not.
    pub fn compiled_in(&self) -> Option<&'static str> {
        match (self.origin, self.compiled_in_child) {
            (Origin::Compiled, true) => Some("child process"),
            (Origin::Compiled, false) => Some("host"),
            _ => None,
        }
    }
}

impl CompileCache {
    /// The cache at `dir`, or at the default location; `enabled = false`
    /// turns it off.
    pub fn new(dir: Option<PathBuf>, enabled: bool) -> CompileCache {
        CompileCache { dir: enabled.then(|| dir.unwrap_or_else(default_dir)), child: None }
    }

    /// The same cache, compiling in a child process when `child` is given.
    pub fn with_child(self, child: Option<ChildCompiler>) -> CompileCache {
        CompileCache { child, ..self }
    }

    /// Loads the guest at `path`, compiling it on a blocking thread if needed.
    pub async fn load(&self, engine: &Engine, path: &Path) -> Result<Loaded> {
        let cache = self.clone();
        let engine = engine.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || cache.load_blocking(&engine, &path)).await.context("the compile task panicked")?
    }

    fn load_blocking(&self, engine: &Engine, path: &Path) -> Result<Loaded> {
        let bytes = std::fs::read(path).with_context(|| format!("reading guest {}", path.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));

        match Engine::detect_precompiled(&bytes) {
            Some(Precompiled::Component) => {
                // SAFETY: the operator named this file as the guest to run;
                // wasmtime still checks that it was compiled by a compatible
                // engine before using it.
                let component =
                    unsafe { Component::deserialize(engine, &bytes) }.map_err(anyhow::Error::from).with_context(|| {
                        format!(
                            "{} is a precompiled component for a different engine or scalelab \
                         version; precompile it again with `scalelab compile` and the same \
                         --deadline and --max-memory",
                            path.display()
                        )
                    })?;
                return Ok(Loaded { component, sha256, origin: Origin::Precompiled, compiled_in_child: false });
            }
            Some(Precompiled::Module) => {
                bail!("{} is a precompiled core module; scalelab runs components", path.display())
            }
            None => {}
        }

        let entry = self.entry_path(engine, &sha256);
        if let Some(entry) = &entry
            && entry.exists()
        {
            // SAFETY: entries are written only by this module (`store`, or a
            // compile child's file renamed in), into the operator's cache
            // directory, atomically; wasmtime checks the engine
            // compatibility again on load.
            match unsafe { Component::deserialize_file(engine, entry) } {
                Ok(component) => {
                    return Ok(Loaded { component, sha256, origin: Origin::CacheHit, compiled_in_child: false });
                }
                Err(e) => tracing::warn!(
                    entry = %entry.display(),
                    error = format!("{e:#}"),
                    "ignoring unusable compile cache entry; compiling again"
                ),
            }
        }

        let (component, compiled_in_child) = self.compile(engine, &bytes, path, entry.as_deref())?;
        Ok(Loaded { component, sha256, origin: Origin::Compiled, compiled_in_child })
    }

    /// Compiles in the child process if there is one, else (or when the
    /// child fails) here, and fills the cache entry; says whether the child
    /// compiled it.
    fn compile(&self, engine: &Engine, bytes: &[u8], path: &Path, entry: Option<&Path>) -> Result<(Component, bool)> {
        let Some(child) = &self.child else {
            return Ok((compile_and_store(engine, bytes, path, entry)?, false));
        };
        match compile_in_child(child, engine, bytes, entry) {
            Ok(component) => Ok((component, true)),
            Err(child_error) => {
                // A guest that does not compile fails here, with the error
                // that names its file; anything else was the child's own
                // trouble, worth a warning.
                let component = compile_and_store(engine, bytes, path, entry)?;
                tracing::warn!(
                    error = format!("{child_error:#}"),
                    "compiling in a child process failed; compiled in the host, whose memory now holds the compiler's"
                );
                Ok((component, false))
            }
        }
    }

    /// The cache file of a guest with this content hash, or `None` when the
    /// cache is off.
    pub fn entry_path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish())))
    }
}

/// Compiles in a child process into a temporary file, then renames it into
/// the cache (`entry`) or, with the cache off, removes it once loaded (the
/// loaded code is a mapping of the file, which outlives its name). The file
/// is made beside the entry, so the rename is atomic, or in the temp dir
/// when the cache directory cannot be made (then the cache stays unwritten,
/// with a warning, as an in-process compile leaves it).
fn compile_in_child(child: &ChildCompiler, engine: &Engine, bytes: &[u8], entry: Option<&Path>) -> Result<Component> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = format!("child{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let beside_entry = entry.filter(|entry| entry.parent().is_some_and(|dir| std::fs::create_dir_all(dir).is_ok()));
    let output = match beside_entry {
        Some(entry) => entry.with_extension(unique),
        None => std::env::temp_dir().join(format!("scalelab-compile-{unique}.cwasm")),
    };
    let compiled = child.compile(engine, bytes, &output);
    let kept = match (&compiled, entry) {
        (Ok(_), Some(entry)) => std::fs::rename(&output, entry).with_context(|| format!("renaming into {}", entry.display())),
        _ => Ok(()),
    };
    if let Err(e) = kept {
        tracing::warn!(error = format!("{e:#}"), "could not write the compile cache; the next start compiles again");
    }
    // Gone already when renamed or never written; otherwise not wanted.
    let _ = std::fs::remove_file(&output);
    compiled
}

/// Compiles in this process, which goes on running, so the compiler's
/// memory is given back; fills the cache entry, if any.
fn compile_and_store(engine: &Engine, bytes: &[u8], path: &Path, entry: Option<&Path>) -> Result<Component> {
    let compiled = compile(engine, bytes, path);
    release_compiler_memory();
    let component = compiled?;
    if let Some(entry) = entry
        && let Err(e) = store(&component, entry)
    {
        tracing::warn!(
            entry = %entry.display(),
            error = format!("{e:#}"),
            "could not write the compile cache; the next start compiles again"
        );
    }
    Ok(component)
}

/// Compiles a wasm component, with an error that says what is wrong.
pub fn compile(engine: &Engine, bytes: &[u8], path: &Path) -> Result<Component> {
    if !bytes.starts_with(b"\0asm") {
        bail!("{} is not a WebAssembly file (no \\0asm header)", path.display());
    }
    Component::new(engine, bytes).map_err(anyhow::Error::from).with_context(|| {
        format!(
            "compiling {} (scalelab runs WebAssembly components; a core module must be \
             turned into a component first, for example by building for wasm32-wasip2)",
            path.display()
        )
    })
}

/// Gives the memory Cranelift worked in back to the system.
///
/// Why: the compiler's working memory, freed when a compile ends, stayed in
/// the allocator's free pages of the threads that compiled (this one and
/// rayon's, with parallel compilation), so a host that compiled its guest
/// showed the compile in its RSS for its whole life: 120-150 MB three
/// seconds after start with `httpbin` against 30 MB when it loaded the same
/// guest from the compile cache, enough to hold a memory-scaled deployment
/// at its maximum (70% of a 128Mi request is 94 MB). Asking mimalloc to
/// collect on those threads brings it to 73-78 MB (3 runs each, `serve
/// --guest httpbin` with an empty `--cache-dir`). Cheap next to a compile;
/// harmless where mimalloc is not the global allocator (the library's tests).
/// Only for compiles in a process that goes on: a serving host compiles in a
/// child (`compile_child`), whose memory goes when it exits.
fn release_compiler_memory() {
    // SAFETY: mi_collect only frees memory mimalloc holds and no block in use.
    rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Writes a compiled component to `entry` atomically.
pub fn store(component: &Component, entry: &Path) -> Result<()> {
    let dir = entry.parent().context("cache entry has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = component.serialize().map_err(anyhow::Error::from).context("serialising the compiled component")?;
    let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, entry).with_context(|| format!("renaming into {}", entry.display()))?;
    Ok(())
}

fn default_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("scalelab");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty() && v != "/") {
        return PathBuf::from(home).join(".cache").join("scalelab");
    }
    std::env::temp_dir().join("scalelab-cache")
}
