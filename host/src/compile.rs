//! `scalelab compile`: precompile a guest ahead of time, into the compile
//! cache (so the next `serve` with the same engine flags starts warm) or to a
//! `.cwasm` file given with `--output`.

use crate::cli::CompileArgs;
use crate::runtime::cache::{self, CompileCache, Origin};
use crate::runtime::{engine, guest};
use anyhow::{Context, Result, bail};
use std::time::Instant;
use wasmtime::Engine;

pub async fn run(args: CompileArgs) -> Result<()> {
    let spec = args.guest.guest.as_deref().context("give the guest to compile with --guest (or SCALELAB_GUEST)")?;
    let path = guest::resolve(spec, args.guest.guests_dir.as_deref())?;
    let settings = args.engine.engine_settings(1);
    let engine = match args.memory_reservation {
        Some(reservation) => engine::build_with(&settings, reservation)?,
        None => engine::build(&settings)?.0,
    };
    let started = Instant::now();
    match &args.output {
        Some(output) => {
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if Engine::detect_precompiled(&bytes).is_some() {
                bail!("{} is already precompiled", path.display());
            }
            let component = cache::compile(&engine, &bytes, &path)?;
            cache::store(&component, output)?;
            tracing::info!(
                guest = %path.display(),
                output = %output.display(),
                duration_ms = started.elapsed().as_secs_f64() * 1e3,
                "precompiled"
            );
        }
        None => {
            if args.guest.no_cache {
                bail!("--no-cache leaves nowhere to put the compiled guest; give --output");
            }
            let cache = CompileCache::new(args.guest.cache_dir.clone(), true);
            let loaded = cache.load(&engine, &path).await?;
            if loaded.origin == Origin::Precompiled {
                bail!("{} is already precompiled", path.display());
            }
            let entry = cache.entry_path(&engine, &loaded.sha256).expect("the cache is enabled");
            tracing::info!(
                guest = %path.display(),
                entry = %entry.display(),
                origin = loaded.origin.as_str(),
                duration_ms = started.elapsed().as_secs_f64() * 1e3,
                "guest is in the compile cache"
            );
        }
    }
    Ok(())
}
