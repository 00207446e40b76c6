//! `cargo xtask swap`: switch the guest, on a whole Deployment or one host.
//!
//! - `cargo xtask swap <guest> [--namespace N] [--configmap NAME]` patches
//!   the guest ConfigMap in the current kube context (keeping the file's
//!   other settings and comments), then waits until every ready pod of the
//!   Deployment serves the new guest, asking each pod's `/admin/guest`
//!   through the API server's pod proxy. `--dry-run` prints the patch.
//! - `cargo xtask swap <guest> --url http://HOST:9090` swaps one running host
//!   through its admin API and confirms it. A guest that names a local file
//!   is uploaded as a component; anything else is sent as a name, which the
//!   host resolves in its own guest directory. The bearer token comes from
//!   `SCALELAB_ADMIN_TOKEN` or `--token-file`.

use crate::cluster::{self, CONFIG_KEY, Cluster};
use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct SwapArgs {
    pub guest: String,
    pub url: String,
    pub token_file: Option<PathBuf>,
    pub dry_run: bool,
}

pub fn run(args: &SwapArgs) -> Result<()> {
    let base = args.url.trim_end_matches('/');
    let endpoint = format!("{base}/admin/guest");
    let local = Path::new(&args.guest);
    let upload =
        local.is_file().then(|| std::fs::read(local)).transpose().with_context(|| format!("reading {}", local.display()))?;
    let what = match &upload {
        Some(bytes) => format!("the component {} ({} bytes)", local.display(), bytes.len()),
        None => format!("the guest name {:?}", args.guest),
    };
    if args.dry_run {
        println!("would send: PUT {endpoint} with {what}, Authorization: Bearer <token>");
        return Ok(());
    }
    let token = token(args.token_file.as_deref())?;

    let before = get(&endpoint)?;
    println!("{base}: serving {} (sha256 {}) since {}", before["name"], short(&before["sha256"]), before["since"]);
    println!("{base}: swapping to {what}");
    let started = Instant::now();
    let target = match (&upload, local.file_stem().and_then(|s| s.to_str())) {
        (Some(_), Some(stem)) => format!("{endpoint}?name={stem}"),
        _ => endpoint.clone(),
    };
    let request =
        ureq::put(&target).config().http_status_as_error(false).build().header("Authorization", &format!("Bearer {token}"));
    let response = match upload {
        Some(bytes) => request.send(&bytes[..]),
        None => request.send(args.guest.as_bytes()),
    };
    let mut response = response.with_context(|| format!("PUT {endpoint}"))?;
    let status = response.status().as_u16();
    let report: Value = serde_json::from_str(&response.body_mut().read_to_string()?).unwrap_or(Value::Null);
    if status != 200 {
        let reason = report["error"].as_str().unwrap_or("no reason given");
        bail!("{base} refused the swap ({status}): {reason}");
    }
    let after = get(&endpoint)?;
    if after["sha256"] != report["guest"]["sha256"] {
        bail!("{base} reports {} after the swap, not the new guest", after["name"]);
    }
    println!(
        "{base}: now serving {} (sha256 {}): compile {:.1} ms, switch {:.2} ms, {:.0} ms in all",
        after["name"],
        short(&after["sha256"]),
        report["compile_ms"].as_f64().unwrap_or(f64::NAN),
        report["switch_ms"].as_f64().unwrap_or(f64::NAN),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// The Kubernetes path of `xtask swap`.
pub struct ClusterSwapArgs {
    pub guest: String,
    pub namespace: Option<String>,
    pub configmap: String,
    pub deployment: String,
    /// A kubeconfig file instead of the usual inference.
    pub kubeconfig: Option<PathBuf>,
    /// How long pods may take to serve the new guest (the kubelet refreshes
    /// mounted ConfigMaps every minute or so).
    pub timeout: Duration,
    /// Pause between two rounds of asking the pods.
    pub poll: Duration,
    pub dry_run: bool,
}

/// Where each ready pod stands at the end.
#[derive(Debug)]
pub struct PodReport {
    pub pod: String,
    pub guest: String,
    pub sha256: String,
}

pub fn run_cluster(args: &ClusterSwapArgs) -> Result<Vec<PodReport>> {
    cluster::block_on(swap_cluster(args))
}

async fn swap_cluster(args: &ClusterSwapArgs) -> Result<Vec<PodReport>> {
    let cluster = Cluster::connect(args.kubeconfig.as_deref(), args.namespace.as_deref()).await?;
    let ns = cluster.namespace.clone();
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let target = cluster::guest_name(&args.guest)?;
    let current = maps.get(&args.configmap).await.with_context(|| format!("reading ConfigMap {ns}/{}", args.configmap))?;
    let text = current.data.and_then(|mut data| data.remove(CONFIG_KEY)).unwrap_or_default();
    let updated = with_guest(&text, &args.guest)?;
    let patch = json!({ "data": { CONFIG_KEY: updated } });
    if args.dry_run {
        println!("would PATCH ConfigMap {ns}/{} (merge patch):", args.configmap);
        println!("{}", serde_json::to_string_pretty(&patch)?);
        return Ok(Vec::new());
    }

    let mut before = serving_since(&cluster, &args.deployment).await?;
    if updated == text {
        println!("ConfigMap {ns}/{} already names {:?}; the pods are not asked to swap", args.configmap, args.guest);
        before.clear();
    } else {
        maps.patch(&args.configmap, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("patching ConfigMap {ns}/{}", args.configmap))?;
        println!("patched ConfigMap {ns}/{}: guest = {:?}", args.configmap, args.guest);
    }
    wait_until_swapped(&cluster, args, &target, &before).await
}

/// When each ready pod of `deployment` started serving its current guest
/// (its `/admin/guest` `since`), to tell a fresh swap from the old state.
async fn serving_since(cluster: &Cluster, deployment: &str) -> Result<HashMap<String, Value>> {
    let mut since = HashMap::new();
    for (pod, ready) in cluster.pods_of(deployment).await? {
        if ready && let Ok(info) = cluster.pod_get(&pod, cluster::ADMIN_PORT, "/admin/guest").await {
            println!("{pod}: serving {} since {}", info["name"], info["since"]);
            since.insert(pod, info["since"].clone());
        }
    }
    Ok(since)
}

/// One look at the deployment's pods during a swap.
struct Round {
    /// Ready pods serving the target, swapped since the patch (or new).
    done: Vec<PodReport>,
    /// Ready pods not there yet, each with what it serves or why it did not answer.
    waiting: Vec<String>,
    /// Pods not ready, which are not counted either way.
    not_ready: usize,
}

impl Round {
    async fn look(cluster: &Cluster, deployment: &str, target: &str, before: &HashMap<String, Value>) -> Result<Round> {
        let mut round = Round { done: Vec::new(), waiting: Vec::new(), not_ready: 0 };
        for (pod, ready) in cluster.pods_of(deployment).await? {
            if !ready {
                round.not_ready += 1;
                continue;
            }
            match cluster.pod_get(&pod, cluster::ADMIN_PORT, "/admin/guest").await {
                Ok(info) if info["name"] == target && before.get(&pod) != Some(&info["since"]) => {
                    let sha256 = info["sha256"].as_str().unwrap_or("?").to_string();
                    round.done.push(PodReport { pod, guest: target.to_string(), sha256 });
                }
                Ok(info) => round.waiting.push(format!("{pod} (serving {})", info["name"])),
                Err(e) => round.waiting.push(format!("{pod} ({e:#})")),
            }
        }
        Ok(round)
    }

    fn progress(&self, target: &str) -> String {
        let not_ready = if self.not_ready > 0 { format!(" ({} not ready, not counted)", self.not_ready) } else { String::new() };
        format!("{}/{} ready pods serve {target}{not_ready}", self.done.len(), self.done.len() + self.waiting.len())
    }
}

/// Polls the pods until every ready one serves `target` (swapped since
/// `before`), printing progress as it changes; an error after `--timeout`.
async fn wait_until_swapped(
    cluster: &Cluster,
    args: &ClusterSwapArgs,
    target: &str,
    before: &HashMap<String, Value>,
) -> Result<Vec<PodReport>> {
    let started = Instant::now();
    let mut last_progress = String::new();
    loop {
        let round = Round::look(cluster, &args.deployment, target, before).await?;
        let progress = round.progress(target);
        if progress != last_progress {
            println!("[{:>5.1} s] {progress}", started.elapsed().as_secs_f64());
            last_progress = progress;
        }
        let total = round.done.len() + round.waiting.len();
        if total > 0 && round.waiting.is_empty() {
            println!("done in {:.1} s:", started.elapsed().as_secs_f64());
            for report in &round.done {
                println!("  {:<40} {} (sha256 {})", report.pod, report.guest, &report.sha256[..report.sha256.len().min(12)]);
            }
            return Ok(round.done);
        }
        if started.elapsed() > args.timeout {
            bail!(
                "after {} s, {} of {total} ready pods do not serve {target} yet: {}",
                args.timeout.as_secs(),
                round.waiting.len(),
                round.waiting.join(", ")
            );
        }
        tokio::time::sleep(args.poll).await;
    }
}

/// The configuration file with `guest` set, its other keys and comments kept.
pub fn with_guest(text: &str, guest: &str) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("the ConfigMap's guest.toml is not valid TOML")?;
    doc["guest"] = toml_edit::value(guest);
    Ok(doc.to_string())
}

fn get(url: &str) -> Result<Value> {
    let text = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .with_context(|| format!("GET {url}"))?
        .body_mut()
        .read_to_string()?;
    serde_json::from_str(&text).with_context(|| format!("GET {url} did not answer JSON: {text}"))
}

fn token(file: Option<&Path>) -> Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => std::env::var("SCALELAB_ADMIN_TOKEN")
            .context("set SCALELAB_ADMIN_TOKEN (or give --token-file) to the host's admin token")?,
    };
    Ok(token.trim().to_string())
}

fn short(sha: &Value) -> String {
    sha.as_str().map_or_else(|| "?".into(), |s| s.chars().take(12).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the real host (built by `cargo test --workspace`) and swaps it.
    #[test]
    fn swaps_a_running_host_by_name_and_by_upload() {
        let ws = crate::workspace::Workspace::locate().unwrap();
        let scalelab = ws.target_dir.join("debug/scalelab");
        let guests = ws.target_dir.join("guests");
        assert!(scalelab.is_file() && guests.join("prime.wasm").is_file(), "run through `cargo xtask test`");
        let dir = std::env::temp_dir().join(format!("xtask-swap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "t0ken\n").unwrap();

        let args = ["--guest", "prime", "--admin-token-file"].map(std::ffi::OsString::from);
        let mut args = args.to_vec();
        args.push(dir.join("token").into_os_string());
        // The host is killed when `host` drops, even if an assertion fails.
        let (host, lines) = crate::bench::spawn_host("swap", &scalelab, &guests, &dir.join("cache"), &args, false).unwrap();
        std::thread::spawn(move || for _ in lines {});
        let url = host.admin.clone().expect("admin address logged");
        let swap = |guest: &str| {
            run(&SwapArgs { guest: guest.into(), url: url.clone(), token_file: Some(dir.join("token")), dry_run: false })
        };
        swap("fixture-wstd").unwrap();
        assert_eq!(get(&format!("{url}/admin/guest")).unwrap()["name"], "fixture-wstd");
        swap(guests.join("prime.wasm").to_str().unwrap()).unwrap();
        assert_eq!(get(&format!("{url}/admin/guest")).unwrap()["name"], "prime");
        let refused = swap("nosuch").unwrap_err().to_string();
        assert!(refused.contains("422") && refused.contains("no guest named"), "{refused}");
        let bad_token =
            run(&SwapArgs { guest: "prime".into(), url: url.clone(), token_file: Some(dir.join("cache")), dry_run: false });
        assert!(bad_token.is_err());

        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_guest_is_set_and_everything_else_kept() {
        let text = "# the workload\nguest = \"prime\"  # picked by the demo\ndeadline = \"2s\"\n[env]\nA = \"1\"\n";
        let updated = with_guest(text, "broker").unwrap();
        assert!(updated.starts_with("# the workload\nguest = \"broker\""), "{updated}");
        assert!(updated.contains("deadline = \"2s\"") && updated.contains("[env]\nA = \"1\""), "{updated}");
        assert_eq!(with_guest("", "prime").unwrap(), "guest = \"prime\"\n");
        assert!(with_guest("guest = ", "prime").is_err());
    }

    /// The kube path against a local stand-in of the few API calls it makes
    /// (no cluster exists here): read and patch the ConfigMap, read the
    /// Deployment, list its pods, ask each pod through the pod proxy.
    #[test]
    fn patches_the_configmap_and_waits_for_every_ready_pod() {
        let api = kube_stand_in::ApiServer::start();
        let dir = std::env::temp_dir().join(format!("xtask-kube-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
        let args = |dry_run| ClusterSwapArgs {
            guest: "broker".into(),
            namespace: None,
            configmap: "scalelab-guest".into(),
            deployment: "scalelab".into(),
            kubeconfig: Some(kubeconfig.clone()),
            timeout: Duration::from_secs(20),
            poll: Duration::from_millis(50),
            dry_run,
        };

        // A dry run reads but sends nothing.
        assert!(run_cluster(&args(true)).unwrap().is_empty());
        assert!(api.patches().is_empty());

        let reports = run_cluster(&args(false)).unwrap();
        let patches = api.patches();
        assert_eq!(patches.len(), 1);
        assert_eq!(patches[0]["data"]["guest.toml"], "guest = \"broker\"\ndeadline = \"2s\"\n");
        // Both ready pods, one of them late; the unready one is not counted.
        let pods: Vec<&str> = reports.iter().map(|r| r.pod.as_str()).collect();
        assert_eq!(pods, ["scalelab-a", "scalelab-b"]);
        assert!(reports.iter().all(|r| r.guest == "broker"));
        assert!(api.proxy_requests("scalelab-b") >= 3, "kept asking the late pod");
        assert_eq!(api.proxy_requests("scalelab-c"), 0, "an unready pod is not asked");
        assert_eq!(api.namespace_seen(), "demo", "the context's namespace");

        // A pod that never swaps ends in a clear error after the timeout.
        api.set_stuck(true);
        let mut stuck = args(false);
        stuck.guest = "prime".into();
        stuck.timeout = Duration::from_millis(300);
        let err = run_cluster(&stuck).unwrap_err().to_string();
        assert!(err.contains("do not serve prime yet") && err.contains("scalelab-b"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
