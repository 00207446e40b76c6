//! A guest ready to serve: found by name or path, compiled (or taken from the
//! cache), linked once (`InstancePre`), checked to export what the host calls
//! (`wasi:http/incoming-handler`, our `session-handler`, or both), and proven
//! instantiable before the host reports ready.

use crate::runtime::bindings::setup::SetupGuestIndices;
use crate::runtime::bindings::{SessionGuestIndices, SessionOptions};
use crate::runtime::cache::{CompileCache, Origin};
use crate::runtime::services::Services;
use crate::runtime::state::{Grants, GuestState, new_store};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::{InstancePre, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyIndices;

/// A loaded guest. Cheap to share: one per process, used by every request.
pub struct Guest {
    /// Name shown in logs and metric labels: the file stem.
    pub name: String,
    /// Hex sha256 of the guest file.
    pub sha256: String,
    /// Linked once; each instance is created from it into a fresh store.
    pub pre: InstancePre<GuestState>,
    /// Where `wasi:http/incoming-handler` is, when the guest serves HTTP.
    pub http: Option<ProxyIndices>,
    /// Where `session-handler` is, when the guest handles sessions.
    pub session: Option<SessionGuestIndices>,
    /// The tick interval the session guest asked for in `init`.
    pub tick_interval: Option<Duration>,
    /// The per-session tick interval it asked for.
    pub session_tick_interval: Option<Duration>,
    /// Where `setup` is, when the guest exports it (`setup.rs` calls it).
    pub setup: Option<SetupGuestIndices>,
    /// Whether it imports `scalelab:guests/sql`: its database then decides readiness.
    pub uses_sql: bool,
}

/// The worlds a guest can implement, by what it exports.
pub fn world_name(http: bool, session: bool) -> &'static str {
    match (http, session) {
        (true, false) => "wasi:http/proxy",
        (false, true) => "scalelab:guests/session-guest",
        _ => "scalelab:guests/session-http-guest",
    }
}

/// Turns `--guest` into a file: a path when it looks like one (has a `/` or a
/// `.wasm`/`.cwasm` extension), otherwise a name looked up in the guest
/// directories.
pub fn resolve(spec: &str, guests_dir: Option<&Path>) -> Result<PathBuf> {
    let looks_like_path = spec.contains('/') || spec.ends_with(".wasm") || spec.ends_with(".cwasm");
    if looks_like_path {
        let path = PathBuf::from(spec);
        if !path.is_file() {
            bail!("guest file {spec} does not exist");
        }
        return Ok(path);
    }
    if spec.is_empty() || spec.contains(['.', '\\']) {
        bail!("{spec:?} is not a guest name (names are like `prime`; paths contain a `/`)");
    }

    let dirs = match guests_dir {
        Some(dir) => vec![dir.to_path_buf()],
        None => default_dirs(),
    };
    for dir in &dirs {
        for ext in ["wasm", "cwasm"] {
            let candidate = dir.join(format!("{spec}.{ext}"));
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let available = available_names(&dirs);
    bail!(
        "no guest named {spec:?} in {} (available: {}); pass --guests-dir or a path",
        searched.join(", "),
        if available.is_empty() { "none".to_string() } else { available.join(", ") }
    )
}

/// `guests/` next to the binary, then `../guests/` (so that
/// `target/debug/scalelab` finds what `cargo xtask build-guests` wrote to
/// `target/guests/`, and the image's `/opt/scalelab/bin/scalelab` finds
/// `/opt/scalelab/guests/`). Where `/proc` is not mounted the binary is
/// found from an absolute `argv[0]`.
fn default_dirs() -> Vec<PathBuf> {
    let exe = std::env::current_exe().ok().or_else(|| std::env::args_os().next().map(PathBuf::from).filter(|p| p.is_absolute()));
    let Some(exe_dir) = exe.and_then(|e| e.parent().map(Path::to_path_buf)) else {
        return vec![PathBuf::from("guests")];
    };
    vec![exe_dir.join("guests"), exe_dir.join("..").join("guests")]
}

fn available_names(dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = dirs
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let ext = path.extension()?.to_str()?;
            matches!(ext, "wasm" | "cwasm").then(|| path.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Builds the linker every guest is linked against: `wasi:http`, the WASI 0.2
/// command imports, and our host services (`state`, `metrics`, `log`,
/// `sessions`). Besides its world a guest may import the rest of WASI (Rust's
/// `wasm32-wasip2` std always imports `wasi:cli/environment`, for example),
/// which [`GuestState`] sandboxes: no files, no sockets.
pub fn linker(engine: &Engine) -> Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from).context("linking WASI")?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking wasi:http")?;
    crate::runtime::bindings::add_to_linker(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking the scalelab host services")?;
    Ok(linker)
}

impl Guest {
    /// Compiles (or loads) the guest at `path`, links it, and instantiates it
    /// once to prove it can serve (a session guest's `init` runs then). Logs
    /// each step with its duration.
    pub async fn load(
        engine: &Engine,
        linker: &Linker<GuestState>,
        cache: &CompileCache,
        path: &Path,
        max_memory: usize,
        grants: &Arc<Grants>,
        services: &Arc<Services>,
    ) -> Result<Guest> {
        let name = path.file_stem().and_then(|s| s.to_str()).context("guest file name is not UTF-8")?.to_string();

        let started = Instant::now();
        let loaded = cache.load(engine, path).await?;
        tracing::info!(
            step = "compile",
            guest = %name,
            origin = loaded.origin.as_str(),
            sha256 = %loaded.sha256,
            compiled_in = loaded.compiled_in(),
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            "guest code {}",
            match loaded.origin {
                Origin::Precompiled => "loaded from a precompiled file",
                Origin::CacheHit => "loaded from the compile cache",
                Origin::Compiled => "compiled",
            }
        );

        let started = Instant::now();
        let pre = linker.instantiate_pre(&loaded.component).map_err(anyhow::Error::from).with_context(|| {
            format!(
                "{} imports something the host does not provide (scalelab offers \
                 wasi:http, the WASI 0.2 command imports and the scalelab:guests host services)",
                path.display()
            )
        })?;
        let uses_sql =
            loaded.component.component_type().imports(engine).any(|(import, _)| import.starts_with("scalelab:guests/sql@"));
        let setup = SetupGuestIndices::new(&pre).ok();
        let http = ProxyIndices::new(&pre).ok();
        let session = SessionGuestIndices::new(&pre).ok();
        if http.is_none() && session.is_none() {
            bail!(
                "{} exports neither wasi:http/incoming-handler (an HTTP guest) nor \
                 scalelab:guests/session-handler (a session guest)",
                path.display()
            );
        }
        let world = world_name(http.is_some(), session.is_some());
        tracing::info!(step = "link", guest = %name, world, duration_ms = started.elapsed().as_secs_f64() * 1e3, "guest linked");

        let started = Instant::now();
        let mut store = new_store(engine, GuestState::new(max_memory, grants.clone(), services.clone(), name.as_str().into()));
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| format!("instantiating {} failed", path.display()))?;
        let (mut tick_interval, mut session_tick_interval) = (None, None);
        if let Some(indices) = &session {
            let guest = indices.load(&mut store, &instance).map_err(anyhow::Error::from)?;
            let SessionOptions { tick_interval_ms, session_tick_interval_ms } = guest
                .scalelab_guests_session_handler()
                .call_init(&mut store)
                .await
                .map_err(anyhow::Error::from)
                .with_context(|| format!("{}: session-handler.init failed", path.display()))?;
            let interval = |ms: Option<u32>| ms.filter(|ms| *ms > 0).map(|ms| Duration::from_millis(ms.into()));
            tick_interval = interval(tick_interval_ms);
            session_tick_interval = interval(session_tick_interval_ms);
        }
        tracing::info!(step = "probe", guest = %name, ?tick_interval, ?session_tick_interval, duration_ms = started.elapsed().as_secs_f64() * 1e3, "guest instantiated once");

        Ok(Guest { name, sha256: loaded.sha256, pre, http, session, tick_interval, session_tick_interval, setup, uses_sql })
    }

    pub fn world(&self) -> &'static str {
        world_name(self.http.is_some(), self.session.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_the_guest_dir_and_errors_list_what_exists() {
        let dir = std::env::temp_dir().join(format!("scalelab-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("alpha.wasm"), b"").unwrap();
        std::fs::write(dir.join("beta.cwasm"), b"").unwrap();

        assert_eq!(resolve("alpha", Some(&dir)).unwrap(), dir.join("alpha.wasm"));
        assert_eq!(resolve("beta", Some(&dir)).unwrap(), dir.join("beta.cwasm"));
        let err = resolve("gamma", Some(&dir)).unwrap_err().to_string();
        assert!(err.contains("alpha, beta"), "{err}");
        assert!(resolve("../etc/passwd.wasm", None).unwrap_err().to_string().contains("does not exist"));
        assert!(resolve("a.b", Some(&dir)).is_err());

        let path = dir.join("alpha.wasm");
        assert_eq!(resolve(path.to_str().unwrap(), None).unwrap(), path);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
