//! `cargo xtask deploy <overlay>`: puts one scenario of `k8s/overlays` on
//! the cluster of the current kube context.
//!
//! It renders the overlay with `kubectl kustomize`, finds every object's API
//! resource through discovery first (so that a missing add-on, such as KEDA
//! or the Prometheus operator, fails before anything changes), applies each
//! object with server-side apply (field manager `scalelab-xtask`, conflicts
//! forced, Namespace first), removes what another overlay left in the
//! namespace (objects labelled with another `scalelab.dev/scenario`: that
//! scenario's autoscaler, which would fight this one's, and its load
//! generator), waits until every Deployment of the overlay is rolled out and
//! available, and prints the Services' endpoints. `--dry-run` prints the
//! rendered objects and needs no cluster.

use crate::cluster::{self, Cluster};
use crate::manifests::{self, Rendered};
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::{self, ApiCapabilities, Scope};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The field manager of our server-side applies.
pub const FIELD_MANAGER: &str = "scalelab-xtask";
/// The label every overlay puts on its objects (their `kustomization.yaml`),
/// naming the overlay.
pub const SCENARIO_LABEL: &str = "scalelab.dev/scenario";

pub struct DeployArgs {
    pub overlay: String,
    /// A kubeconfig file instead of the usual inference.
    pub kubeconfig: Option<PathBuf>,
    /// How long the Deployments may take to roll out.
    pub timeout: Duration,
    /// Pause between two looks at the Deployments.
    pub poll: Duration,
    /// Delete the objects another overlay left in the namespace.
    pub prune: bool,
    pub dry_run: bool,
}

/// What a deploy did.
#[derive(Debug, Default)]
pub struct Deployed {
    /// `Kind/name` of every applied object, in order.
    pub applied: Vec<String>,
    /// `Kind/name` of every object of another overlay that was deleted.
    pub pruned: Vec<String>,
    /// One line per Service port: `name.namespace.svc:port (type, address)`.
    pub endpoints: Vec<String>,
}

pub fn run(ws: &Workspace, args: &DeployArgs) -> Result<Deployed> {
    let rendered = manifests::render(ws, &args.overlay)?;
    if args.dry_run {
        print!("{}", rendered.yaml);
        return Ok(Deployed::default());
    }
    println!("overlay {}: guest {}, {} objects", rendered.overlay, rendered.guest()?, rendered.objects.len());
    // The kinds any overlay makes: where objects of another scenario may be.
    let mut prunable = BTreeSet::new();
    if args.prune {
        for object in &rendered.objects {
            prunable.insert(type_of(object)?);
        }
        for overlay in manifests::overlays(ws)?.iter().filter(|o| **o != rendered.overlay) {
            for object in manifests::render(ws, overlay)?.objects {
                prunable.insert(type_of(&object)?);
            }
        }
    }
    cluster::block_on(deploy(&rendered, &prunable, args))
}

async fn deploy(rendered: &Rendered, prunable: &BTreeSet<(String, String)>, args: &DeployArgs) -> Result<Deployed> {
    let cluster = Cluster::connect(args.kubeconfig.as_deref(), None).await?;
    let client = cluster.client.clone();

    // Namespaces first, then the rest in kustomize's order.
    let mut objects: Vec<&Value> = rendered.objects.iter().collect();
    objects.sort_by_key(|o| o["kind"] != "Namespace");

    // Every kind resolved before anything is applied.
    let mut kinds: HashMap<(String, String), Option<(ApiResource, ApiCapabilities)>> = HashMap::new();
    for object in &objects {
        let (api_version, kind) = type_of(object)?;
        if kinds.contains_key(&(api_version.clone(), kind.clone())) {
            continue;
        }
        let found = resolve(&client, &api_version, &kind).await?;
        kinds.insert((api_version, kind), found);
    }
    let mut missing: Vec<String> =
        kinds.iter().filter(|(_, found)| found.is_none()).map(|((v, k), _)| format!("{k} ({v})")).collect();
    if !missing.is_empty() {
        missing.sort();
        bail!(
            "the cluster does not serve {}: install the add-ons of k8s/platform first (see k8s/platform/README.md); nothing was applied",
            missing.join(", ")
        );
    }

    let mut deployed = Deployed::default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in &objects {
        let (api_version, kind) = type_of(object)?;
        let name = object["metadata"]["name"].as_str().context("an object without a name")?;
        let (resource, caps) = kinds[&(api_version, kind.clone())].as_ref().expect("resolved above");
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = object["metadata"]["namespace"].as_str().unwrap_or(&cluster.namespace);
                Api::namespaced_with(client.clone(), ns, resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), resource),
        };
        api.patch(name, &params, &Patch::Apply(object)).await.with_context(|| format!("applying {kind}/{name}"))?;
        println!("applied {kind}/{name}");
        deployed.applied.push(format!("{kind}/{name}"));
    }

    if args.prune {
        let namespace = rendered.objects.iter().find_map(|o| o["metadata"]["namespace"].as_str()).unwrap_or(&cluster.namespace);
        deployed.pruned = prune(&cluster, namespace, &rendered.overlay, prunable, &mut kinds).await?;
    }

    let deployments: Vec<(String, String)> = rendered
        .all("Deployment")
        .filter_map(|d| {
            let name = d["metadata"]["name"].as_str()?;
            let ns = d["metadata"]["namespace"].as_str().unwrap_or(&cluster.namespace);
            Some((ns.to_string(), name.to_string()))
        })
        .collect();
    wait_for_rollouts(&cluster, &deployments, args).await?;

    for service in rendered.all("Service") {
        let Some(name) = service["metadata"]["name"].as_str() else { continue };
        let ns = service["metadata"]["namespace"].as_str().unwrap_or(&cluster.namespace);
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let live = api.get(name).await.with_context(|| format!("reading Service {ns}/{name}"))?;
        deployed.endpoints.extend(endpoints(ns, name, &live));
    }
    println!("services:");
    for line in &deployed.endpoints {
        println!("  {line}");
    }
    if let Some(host) = rendered.get("Service", cluster::DEFAULT_DEPLOYMENT) {
        let ns = host["metadata"]["namespace"].as_str().unwrap_or(&cluster.namespace);
        println!("from this machine: kubectl -n {ns} port-forward svc/{} 8080 9090", cluster::DEFAULT_DEPLOYMENT);
    }
    Ok(deployed)
}

/// Deletes the objects in `namespace` that another overlay labelled as its
/// own, of every kind an overlay makes (kinds the cluster does not serve are
/// skipped). Returns `Kind/name` of each.
async fn prune(
    cluster: &Cluster,
    namespace: &str,
    overlay: &str,
    prunable: &BTreeSet<(String, String)>,
    kinds: &mut HashMap<(String, String), Option<(ApiResource, ApiCapabilities)>>,
) -> Result<Vec<String>> {
    let selector = format!("{SCENARIO_LABEL},{SCENARIO_LABEL}!={overlay}");
    let mut pruned = Vec::new();
    for (api_version, kind) in prunable {
        let key = (api_version.clone(), kind.clone());
        if !kinds.contains_key(&key) {
            let found = resolve(&cluster.client, api_version, kind).await?;
            kinds.insert(key.clone(), found);
        }
        let Some((resource, caps)) = &kinds[&key] else { continue };
        if caps.scope != Scope::Namespaced {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), namespace, resource);
        let stale = api
            .list(&ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("listing {kind} of other scenarios in {namespace}"))?;
        for object in stale.items {
            let name = object.metadata.name.clone().unwrap_or_default();
            let scenario = object.metadata.labels.as_ref().and_then(|l| l.get(SCENARIO_LABEL)).cloned().unwrap_or_default();
            api.delete(&name, &DeleteParams::background())
                .await
                .with_context(|| format!("deleting {kind}/{name} of scenario {scenario}"))?;
            println!("removed {kind}/{name} (scenario {scenario})");
            pruned.push(format!("{kind}/{name}"));
        }
    }
    Ok(pruned)
}

/// The API resource of a kind, or `None` when the cluster does not serve it
/// (its group or kind is unknown); other errors (unreachable, unauthorised) fail.
async fn resolve(client: &kube::Client, api_version: &str, kind: &str) -> Result<Option<(ApiResource, ApiCapabilities)>> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    match discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await {
        Ok(found) => Ok(Some(found)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("asking the API server about {kind} ({api_version})")),
    }
}

fn type_of(object: &Value) -> Result<(String, String)> {
    let api_version = object["apiVersion"].as_str().context("an object without apiVersion")?;
    let kind = object["kind"].as_str().context("an object without kind")?;
    Ok((api_version.to_string(), kind.to_string()))
}

/// Waits until each Deployment is rolled out as `kubectl rollout status`
/// means it: its latest generation observed, every replica updated, no old
/// replica left, every updated replica available.
async fn wait_for_rollouts(cluster: &Cluster, deployments: &[(String, String)], args: &DeployArgs) -> Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let mut waiting = Vec::new();
        for (ns, name) in deployments {
            let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
            let live = api.get(name).await.with_context(|| format!("reading Deployment {ns}/{name}"))?;
            if let Some(why) = rollout_pending(&live) {
                waiting.push(format!("{name}: {why}"));
            }
        }
        let progress = if waiting.is_empty() { "every Deployment is rolled out".to_string() } else { waiting.join("; ") };
        if progress != last {
            println!("[{:>5.1} s] {progress}", started.elapsed().as_secs_f64());
            last = progress;
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if started.elapsed() > args.timeout {
            bail!("after {} s the rollout is not done: {}", args.timeout.as_secs(), waiting.join("; "));
        }
        tokio::time::sleep(args.poll).await;
    }
}

/// Why a Deployment is not rolled out yet, or `None` when it is.
fn rollout_pending(deployment: &Deployment) -> Option<String> {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        Some("waiting for the controller to see the new spec".into())
    } else if updated < wanted {
        Some(format!("{updated} of {wanted} replicas updated"))
    } else if total > updated {
        Some(format!("{} old replicas still terminating", total - updated))
    } else if available < updated {
        Some(format!("{available} of {updated} updated replicas available"))
    } else {
        None
    }
}

/// One line per port of a live Service.
fn endpoints(ns: &str, name: &str, service: &Service) -> Vec<String> {
    let spec = service.spec.clone().unwrap_or_default();
    let kind = spec.type_.unwrap_or_else(|| "ClusterIP".into());
    let address = match spec.cluster_ip.as_deref() {
        Some("None") => "headless: resolves to the pods".to_string(),
        Some(ip) => ip.to_string(),
        None => "no address yet".to_string(),
    };
    let external: Vec<String> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    spec.ports
        .unwrap_or_default()
        .iter()
        .map(|port| {
            let mut line = format!("{name}.{ns}.svc:{} ({}, {kind}, {address}", port.port, port.name.as_deref().unwrap_or("-"));
            if let Some(node_port) = port.node_port {
                line.push_str(&format!(", node port {node_port}"));
            }
            if !external.is_empty() {
                line.push_str(&format!(", external {}", external.join(" ")));
            }
            line.push(')');
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_stand_in::ApiServer;

    fn args(overlay: &str, kubeconfig: PathBuf) -> DeployArgs {
        DeployArgs {
            overlay: overlay.into(),
            kubeconfig: Some(kubeconfig),
            timeout: Duration::from_secs(20),
            poll: Duration::from_millis(50),
            prune: true,
            dry_run: false,
        }
    }

    /// Server-side apply of every object of the tracker overlay against a
    /// stand-in API server, Namespace first; waits for the rollout of both
    /// Deployments; reports the Services.
    #[test]
    fn applies_every_object_and_waits_for_the_rollout() {
        let ws = Workspace::locate().unwrap();
        let api = ApiServer::start();
        let kubeconfig = api.write_kubeconfig("deploy");
        let rendered = manifests::render(&ws, "tracker").unwrap();

        let deployed = run(&ws, &args("tracker", kubeconfig.clone())).unwrap();
        let expected: Vec<String> = {
            let mut objects: Vec<&Value> = rendered.objects.iter().collect();
            objects.sort_by_key(|o| o["kind"] != "Namespace");
            objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
                .collect()
        };
        assert_eq!(deployed.applied, expected);
        assert_eq!(deployed.applied[0], "Namespace/scalelab");

        let applies = api.applies();
        assert_eq!(applies.len(), rendered.objects.len());
        for apply in &applies {
            assert_eq!(apply.content_type, "application/apply-patch+yaml", "{}", apply.path);
            assert!(apply.query.contains("fieldManager=scalelab-xtask") && apply.query.contains("force=true"), "{}", apply.query);
        }
        // The right URL for namespaced, cluster-scoped and custom objects, and the object itself as the body.
        let find = |path: &str| applies.iter().find(|a| a.path == path).unwrap_or_else(|| panic!("no apply of {path}"));
        assert_eq!(find("/api/v1/namespaces/scalelab").body["kind"], "Namespace");
        let scaled = find("/apis/keda.sh/v1alpha1/namespaces/scalelab/scaledobjects/scalelab");
        assert_eq!(&scaled.body, rendered.get("ScaledObject", "scalelab").unwrap());
        find("/apis/apps/v1/namespaces/scalelab/deployments/sockets");
        find("/apis/monitoring.coreos.com/v1/namespaces/scalelab/servicemonitors/scalelab");

        // It kept asking until the stand-in's Deployments became available.
        assert!(api.deployment_reads("scalelab") >= 3, "waited for the rollout");
        assert!(
            deployed.endpoints.iter().any(|e| e.starts_with("scalelab.scalelab.svc:8080 (http, ClusterIP")),
            "{:?}",
            deployed.endpoints
        );
        assert!(
            deployed.endpoints.iter().any(|e| e.starts_with("scalelab.scalelab.svc:9090 (admin")),
            "{:?}",
            deployed.endpoints
        );
    }

    /// Deploying tracker after prime removes prime's HPA (which would fight
    /// KEDA's) and its load generator, and keeps everything tracker applied.
    #[test]
    fn another_scenario_s_autoscaler_and_load_are_removed() {
        let ws = Workspace::locate().unwrap();
        let api = ApiServer::start();
        let first = run(&ws, &args("prime", api.write_kubeconfig("prime"))).unwrap();
        assert!(first.pruned.is_empty(), "{:?}", first.pruned);
        let second = run(&ws, &args("tracker", api.write_kubeconfig("tracker"))).unwrap();
        assert_eq!(second.pruned, ["Deployment/load", "HorizontalPodAutoscaler/scalelab"]);
        assert_eq!(
            api.deletes(),
            [
                "/apis/apps/v1/namespaces/scalelab/deployments/load",
                "/apis/autoscaling/v2/namespaces/scalelab/horizontalpodautoscalers/scalelab"
            ]
        );
        // Objects both scenarios share were relabelled by the second apply, not deleted.
        let third = run(&ws, &args("tracker", api.write_kubeconfig("again"))).unwrap();
        assert!(third.pruned.is_empty(), "{:?}", third.pruned);
        // Without pruning nothing of the other scenario is touched.
        let mut keep = args("prime", api.write_kubeconfig("keep"));
        keep.prune = false;
        assert!(run(&ws, &keep).unwrap().pruned.is_empty());
        assert_eq!(api.deletes().len(), 2);
    }

    /// Without KEDA's CRD the tracker overlay is refused before anything is applied.
    #[test]
    fn a_missing_add_on_fails_before_anything_is_applied() {
        let ws = Workspace::locate().unwrap();
        let api = ApiServer::start();
        api.remove_group("keda.sh/v1alpha1");
        let err = run(&ws, &args("tracker", api.write_kubeconfig("no-keda"))).unwrap_err().to_string();
        assert!(err.contains("ScaledObject (keda.sh/v1alpha1)") && err.contains("k8s/platform"), "{err}");
        assert!(api.applies().is_empty());
        // The prime overlay needs no KEDA.
        assert!(!run(&ws, &args("prime", api.write_kubeconfig("prime"))).unwrap().applied.is_empty());
    }

    /// An API server that cannot be reached is reported as such, not as missing add-ons.
    #[test]
    fn an_unreachable_cluster_is_named() {
        let ws = Workspace::locate().unwrap();
        let api = ApiServer::start();
        let kubeconfig = api.write_kubeconfig("dead");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let text = std::fs::read_to_string(&kubeconfig).unwrap();
        let server = text.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string();
        std::fs::write(&kubeconfig, text.replace(&server, &format!("http://{closed}"))).unwrap();
        let err = format!("{:#}", run(&ws, &args("prime", kubeconfig)).unwrap_err());
        assert!(err.contains("asking the API server about") && !err.contains("does not serve"), "{err}");
    }

    #[test]
    fn a_dry_run_needs_no_cluster_and_an_unknown_overlay_is_named() {
        let ws = Workspace::locate().unwrap();
        let mut dry = args("broker", PathBuf::from("/nonexistent/kubeconfig"));
        dry.dry_run = true;
        assert!(run(&ws, &dry).unwrap().applied.is_empty());
        let err = run(&ws, &args("nosuch", PathBuf::from("/nonexistent"))).unwrap_err().to_string();
        assert!(err.contains("no overlay \"nosuch\"") && err.contains("broker, httpbin, prime, todo, tracker"), "{err}");
    }

    #[test]
    fn rollout_status_reads_like_kubectl() {
        let deployment = |generation: i64, observed: i64, replicas: i32, updated: i32, total: i32, available: i32| {
            serde_json::from_value::<Deployment>(serde_json::json!({
                "metadata": {"name": "d", "generation": generation},
                "spec": {"replicas": replicas, "selector": {}, "template": {}},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total, "availableReplicas": available}
            }))
            .unwrap()
        };
        assert!(rollout_pending(&deployment(2, 1, 1, 1, 1, 1)).unwrap().contains("new spec"));
        assert!(rollout_pending(&deployment(2, 2, 3, 1, 1, 1)).unwrap().contains("1 of 3 replicas updated"));
        assert!(rollout_pending(&deployment(2, 2, 1, 1, 2, 1)).unwrap().contains("old replicas"));
        assert!(rollout_pending(&deployment(2, 2, 2, 2, 2, 1)).unwrap().contains("1 of 2 updated replicas available"));
        assert_eq!(rollout_pending(&deployment(2, 2, 2, 2, 2, 2)), None);
    }
}
