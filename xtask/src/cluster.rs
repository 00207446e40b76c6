//! The Kubernetes side of the tasks, through the `kube` crate: connecting with
//! the current kube context (or a given kubeconfig), finding the ready pods
//! of the scalelab Deployment, and asking a pod's admin port through the API
//! server's pod proxy. `xtask swap` uses it; so will `xtask deploy`.
//!
//! What the caller needs in RBAC terms: get/patch ConfigMaps, get
//! Deployments, list Pods, get `pods/proxy`.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, api::ListParams};
use serde_json::Value;
use std::path::Path;

/// Names the manifests in `k8s/` use.
pub const DEFAULT_DEPLOYMENT: &str = "scalelab";
pub const DEFAULT_CONFIGMAP: &str = "scalelab-guest";
/// The key of the guest configuration file in the ConfigMap (mounted as
/// `/etc/scalelab/guest.toml`).
pub const CONFIG_KEY: &str = "guest.toml";
/// The host's admin port (`--admin-listen` default).
pub const ADMIN_PORT: u16 = 9090;

/// A client and the namespace to work in.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl Cluster {
    /// Connects with `kubeconfig`, or the usual inference (KUBECONFIG,
    /// ~/.kube/config, in-cluster); the namespace is `namespace` or the
    /// context's.
    pub async fn connect(kubeconfig: Option<&Path>, namespace: Option<&str>) -> Result<Cluster> {
        let config = match kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .with_context(|| format!("using {}", path.display()))?
            }
            None => Config::infer().await.context("no Kubernetes configuration (kube context) found")?,
        };
        let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_string);
        let client = Client::try_from(config).context("creating the Kubernetes client")?;
        Ok(Cluster { client, namespace })
    }

    /// The pods of `deployment` (by its selector), each with whether it is Ready.
    pub async fn pods_of(&self, deployment: &str) -> Result<Vec<(String, bool)>> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let found =
            deployments.get(deployment).await.with_context(|| format!("reading Deployment {}/{deployment}", self.namespace))?;
        let labels = found
            .spec
            .and_then(|spec| spec.selector.match_labels)
            .filter(|labels| !labels.is_empty())
            .with_context(|| format!("Deployment {deployment} has no matchLabels selector"))?;
        let selector = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list =
            pods.list(&ListParams::default().labels(&selector)).await.with_context(|| format!("listing pods with {selector}"))?;
        let mut out: Vec<(String, bool)> = list
            .items
            .into_iter()
            .filter_map(|pod| {
                let name = pod.metadata.name?;
                let ready = pod
                    .status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                Some((name, ready))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// GET `path` on a pod's port through the API server's pod proxy, as JSON.
    pub async fn pod_get(&self, pod: &str, port: u16, path: &str) -> Result<Value> {
        let uri = format!("/api/v1/namespaces/{}/pods/{pod}:{port}/proxy{path}", self.namespace);
        let request = http::Request::get(&uri).body(Vec::new()).context("building the proxy request")?;
        let text = self.client.request_text(request).await.with_context(|| format!("GET {uri}"))?;
        serde_json::from_str(&text).with_context(|| format!("{uri} did not answer JSON: {text}"))
    }
}

/// A runtime for the async kube client inside the synchronous xtask.
pub fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a tokio runtime")?;
    runtime.block_on(future)
}

/// The guest name a pod reports for `guest`: the name itself, or a path's file stem.
pub fn guest_name(guest: &str) -> Result<String> {
    let looks_like_path = guest.contains('/') || guest.ends_with(".wasm") || guest.ends_with(".cwasm");
    if !looks_like_path {
        return Ok(guest.to_string());
    }
    match Path::new(guest).file_stem().and_then(|s| s.to_str()) {
        Some(stem) => Ok(stem.to_string()),
        None => bail!("{guest} is not a guest name or path"),
    }
}
