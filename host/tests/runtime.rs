//! The runtime as a library, in-process: no binary, no socket. A guest is
//! loaded and its calls run through `Instances::call`, the one place every
//! HTTP request and session call goes through.

mod support;

use scalelab::metrics::{FailureReason, LimitValues, Metrics};
use scalelab::runtime::active::{Active, ActiveParts};
use scalelab::runtime::bindings::{Effect, Peer};
use scalelab::runtime::cache::{CompileCache, Origin};
use scalelab::runtime::call::Limits;
use scalelab::runtime::compile_child::ChildCompiler;
use scalelab::runtime::engine::{self, EngineSettings};
use scalelab::runtime::guest::{self, Guest};
use scalelab::runtime::instances::SPARE_CONTEXT_LIFETIME;
use scalelab::runtime::services::{ServiceLimits, Services};
use scalelab::runtime::state::Grants;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_MEMORY: u64 = 64 << 20;
const DEADLINE: Option<Duration> = Some(Duration::from_secs(30));

/// The `broker` guest, loaded as `scalelab serve` loads a guest.
async fn broker() -> (Active, Arc<Services>, Arc<Metrics>) {
    broker_with_reuse(128).await
}

/// The `broker` guest, each instance serving at most `instance_reuse` calls.
async fn broker_with_reuse(instance_reuse: u32) -> (Active, Arc<Services>, Arc<Metrics>) {
    let limits = LimitValues { deadline: DEADLINE, max_memory: MAX_MEMORY, max_body: 1 << 20, max_in_flight: 4 };
    let metrics = Arc::new(Metrics::new(&limits).unwrap());
    let services = Arc::new(Services::new(&metrics, ServiceLimits::generous()));
    let (engine, _) = engine::build(&EngineSettings { epoch_interruption: true, max_memory: MAX_MEMORY, pool_slots: 8 }).unwrap();
    engine::spawn_epoch_ticker(&engine).unwrap();
    let linker = guest::linker(&engine).unwrap();
    let path = support::guests_dir().join("broker.wasm");
    let grants = Arc::new(Grants::default());
    let cache = CompileCache::new(None, false);
    let guest = Guest::load(&engine, &linker, &cache, &path, MAX_MEMORY as usize, &grants, &services).await.unwrap();
    let limits = Limits { deadline: DEADLINE, max_memory: MAX_MEMORY as usize, instance_reuse };
    let parts = ActiveParts { guest, limits, grants, source: path.display().to_string(), tick_override: None };
    (Active::new(parts, &metrics, &services), services, metrics)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_runs_in_process_through_instances_call() {
    let (active, services, metrics) = broker().await;
    let peer = Peer { address: "127.0.0.1:1".into(), transport: "tcp".into() };
    let opened = active
        .instances
        .call(DEADLINE, move |warm| {
            Box::pin(async move {
                let guest = warm.session.as_ref().unwrap().scalelab_guests_session_handler();
                guest.call_opened(&mut warm.store, 7, &peer).await
            })
        })
        .await
        .unwrap();
    assert!(opened.is_empty());

    // A registration: the broker answers on the session and keeps the
    // registration in the process's shared state, not in its instance.
    let received = active
        .instances
        .call(DEADLINE, |warm| {
            Box::pin(async move {
                let guest = warm.session.as_ref().unwrap().scalelab_guests_session_handler();
                guest.call_received(&mut warm.store, 7, b"NewEngine:e1:0").await
            })
        })
        .await
        .unwrap();
    assert!(matches!(&received[..], [Effect::Send((7, reply))] if reply == b"SUCCESS:Registered"), "{received:?}");
    assert!(services.state.get("broker/engine/e1").is_some());

    // A failed call is a typed failure; the next call still runs.
    let failure = active
        .instances
        .call(DEADLINE, |_warm| Box::pin(async { Err::<(), _>(wasmtime::Error::msg("boom")) }))
        .await
        .unwrap_err();
    assert_eq!((failure.reason, failure.message.as_str()), (FailureReason::Trap, "the guest trapped: boom"));
    let timed_out = active
        .instances
        .call(Some(Duration::from_millis(50)), |_warm| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
        })
        .await
        .unwrap_err();
    assert_eq!(timed_out.reason, FailureReason::Deadline);
    assert!(timed_out.message.contains("50ms"), "{}", timed_out.message);
    let closed = active
        .instances
        .call(DEADLINE, |warm| {
            Box::pin(async move {
                let guest = warm.session.as_ref().unwrap().scalelab_guests_session_handler();
                guest.call_closed(&mut warm.store, 7, "test over").await
            })
        })
        .await
        .unwrap();
    assert!(closed.is_empty());
    assert!(services.state.get("broker/engine/e1").is_none(), "closing the session unregistered the engine");
    // A clean call gave its instance back, a failed one was dropped: opened
    // instantiated, received and "boom" reused it, the deadline and closed
    // each needed a new one.
    let exposition = support::Metrics(String::from_utf8(metrics.encode().unwrap()).unwrap());
    let broker = [("guest", "broker")];
    assert_eq!(exposition.value("scalelab_guest_instantiations_total", &broker), Some(3.0));
    assert_eq!(exposition.value("scalelab_guest_instance_reuses_total", &broker), Some(2.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_instance_takes_the_wasi_context_of_one_that_served_its_share() {
    let (active, _, _) = broker_with_reuse(1).await;
    let open = |session: u64| {
        let peer = Peer { address: "127.0.0.1:1".into(), transport: "tcp".into() };
        active.instances.call(DEADLINE, move |warm| {
            Box::pin(async move {
                let guest = warm.session.as_ref().unwrap().scalelab_guests_session_handler();
                guest.call_opened(&mut warm.store, session, &peer).await
            })
        })
    };
    // A context is handed on only within its lifetime: on a machine slow
    // enough to spend that long on two calls, the checks that need it to
    // still be young are skipped rather than failed.
    let young = |built: Instant| built.elapsed() < SPARE_CONTEXT_LIFETIME;
    assert_eq!(active.instances.spare_contexts(), 0);
    let built = Instant::now();
    open(1).await.unwrap();
    if young(built) {
        // The instance served its one call and was dropped; its context was kept.
        assert_eq!(active.instances.spare_contexts(), 1);
    }
    open(2).await.unwrap();
    if young(built) {
        // The next new instance took it, and gave it back after its call.
        assert_eq!(active.instances.spare_contexts(), 1);
    }
    // A context that outlived its lifetime while kept is not handed on: the
    // next new instance builds its own and keeps that one afterwards (an
    // expired context handed on would be dropped after the call, leaving none).
    tokio::time::sleep(SPARE_CONTEXT_LIFETIME + Duration::from_millis(100)).await;
    let expired_one_kept = active.instances.spare_contexts() == 1;
    let built = Instant::now();
    open(3).await.unwrap();
    if expired_one_kept && young(built) {
        assert_eq!(active.instances.spare_contexts(), 1, "an expired context was handed on instead of a new one built");
    }
    active.instances.retire();
    assert_eq!(active.instances.spare_contexts(), 0, "a retired guest keeps nothing for new instances");
}

/// A cache whose compile child cannot run still loads the guest, compiled
/// in this process; with the real binary the child compiles it, and the
/// code it wrote is the cache's entry for the next load.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_compiles_in_a_child_or_in_process_when_the_child_cannot_run() {
    let settings = EngineSettings { epoch_interruption: true, max_memory: MAX_MEMORY, pool_slots: 2 };
    let (engine, reservation) = engine::build(&settings).unwrap();
    let path = support::guests_dir().join("broker.wasm");
    let cached = |dir: &std::path::Path, exe: &str| {
        let child = ChildCompiler::for_engine(Some(std::path::Path::new(exe)), &settings, reservation);
        CompileCache::new(Some(dir.to_path_buf()), true).with_child(child)
    };

    let missing = cached(&support::temp_dir("child-missing"), "/nonexistent/scalelab");
    let loaded = missing.load(&engine, &path).await.unwrap();
    assert_eq!((loaded.origin, loaded.compiled_in()), (Origin::Compiled, Some("host")));

    let dir = support::temp_dir("child-real");
    let real = cached(&dir, env!("CARGO_BIN_EXE_scalelab"));
    let loaded = real.load(&engine, &path).await.unwrap();
    assert_eq!((loaded.origin, loaded.compiled_in()), (Origin::Compiled, Some("child process")));
    let again = real.load(&engine, &path).await.unwrap();
    assert_eq!((again.origin, again.compiled_in()), (Origin::CacheHit, None));
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

/// A cache directory that cannot be made (its parent is a file) leaves the
/// cache unwritten, but the guest still compiles in the child, not in the
/// host, and nothing is left in the temp dir.
#[tokio::test(flavor = "multi_thread")]
async fn a_cache_directory_that_cannot_be_made_still_compiles_in_the_child() {
    let settings = EngineSettings { epoch_interruption: true, max_memory: MAX_MEMORY, pool_slots: 2 };
    let (engine, reservation) = engine::build(&settings).unwrap();
    let file = support::temp_dir("cache-parent").join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let child = ChildCompiler::for_engine(Some(std::path::Path::new(env!("CARGO_BIN_EXE_scalelab"))), &settings, reservation);
    let cache = CompileCache::new(Some(file.join("cache")), true).with_child(child);
    let temp_files = || {
        let pid = format!("scalelab-compile-child{}-", std::process::id());
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(&pid))
            .count()
    };
    let loaded = cache.load(&engine, &support::guests_dir().join("broker.wasm")).await.unwrap();
    assert_eq!((loaded.origin, loaded.compiled_in()), (Origin::Compiled, Some("child process")));
    assert_eq!(temp_files(), 0);
}
