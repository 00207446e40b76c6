//! The Kubernetes manifests in `k8s/`: rendering an overlay with `kubectl
//! kustomize` into objects, and reading what the checks and `xtask deploy`
//! need from them (the guest an overlay serves, the PromQL queries it uses,
//! the metric names in those queries).

use crate::workspace::{self, Workspace};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// One overlay, rendered.
pub struct Rendered {
    pub overlay: String,
    /// What `kubectl kustomize` printed (multi-document YAML).
    pub yaml: String,
    /// The same objects, in that order.
    pub objects: Vec<Value>,
}

impl Rendered {
    /// The object of this kind and name.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// Every object of this kind.
    pub fn all(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    /// The guest the overlay's `scalelab-guest` ConfigMap names.
    pub fn guest(&self) -> Result<String> {
        let text = self.guest_config()?;
        let doc: toml_edit::DocumentMut = text.parse().with_context(|| format!("overlay {}: guest.toml", self.overlay))?;
        doc.get("guest")
            .and_then(|g| g.as_str())
            .map(str::to_string)
            .with_context(|| format!("overlay {}: guest.toml names no guest", self.overlay))
    }

    /// The text of the overlay's guest.toml.
    pub fn guest_config(&self) -> Result<&str> {
        self.get("ConfigMap", crate::cluster::DEFAULT_CONFIGMAP)
            .and_then(|c| c["data"][crate::cluster::CONFIG_KEY].as_str())
            .with_context(|| {
                format!("overlay {} has no {} ConfigMap with a guest.toml", self.overlay, crate::cluster::DEFAULT_CONFIGMAP)
            })
    }

    #[cfg(test)]
    /// Every PromQL query in the overlay, with where it is: ScaledObject
    /// Prometheus triggers and the Grafana dashboards' panel targets.
    pub fn queries(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for scaled in self.all("ScaledObject") {
            let name = scaled["metadata"]["name"].as_str().unwrap_or("?");
            for trigger in scaled["spec"]["triggers"].as_array().into_iter().flatten() {
                if trigger["type"] == "prometheus" {
                    let query = trigger["metadata"]["query"].as_str().context("a prometheus trigger without a query")?;
                    out.push((format!("ScaledObject {name}"), query.to_string()));
                }
            }
        }
        for map in self.all("ConfigMap").filter(|m| m["metadata"]["labels"]["grafana_dashboard"].is_string()) {
            for (file, text) in map["data"].as_object().into_iter().flatten() {
                let dashboard: Value = serde_json::from_str(text.as_str().unwrap_or_default())
                    .with_context(|| format!("dashboard {file} is not JSON"))?;
                for panel in dashboard["panels"].as_array().into_iter().flatten() {
                    for target in panel["targets"].as_array().into_iter().flatten() {
                        if let Some(expr) = target["expr"].as_str() {
                            out.push((
                                format!("dashboard {file}, panel {:?}", panel["title"].as_str().unwrap_or("?")),
                                expr.to_string(),
                            ));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The overlays, by directory name under `k8s/overlays`.
pub fn overlays(ws: &Workspace) -> Result<Vec<String>> {
    let dir = ws.root.join("k8s/overlays");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("kustomization.yaml").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

pub fn overlay_dir(ws: &Workspace, overlay: &str) -> PathBuf {
    ws.root.join("k8s/overlays").join(overlay)
}

/// `kubectl kustomize k8s/overlays/<overlay>`, parsed.
pub fn render(ws: &Workspace, overlay: &str) -> Result<Rendered> {
    let dir = overlay_dir(ws, overlay);
    if !dir.join("kustomization.yaml").is_file() {
        let known = overlays(ws).unwrap_or_default().join(", ");
        bail!("no overlay {overlay:?} in k8s/overlays (overlays: {known})");
    }
    let yaml = workspace::output(Command::new("kubectl").arg("kustomize").arg(&dir))
        .with_context(|| format!("rendering {} (kubectl with kustomize is needed)", dir.display()))?;
    let objects: Vec<Value> =
        serde_saphyr::from_multiple(&yaml).with_context(|| format!("parsing what kubectl kustomize rendered for {overlay}"))?;
    let objects = objects.into_iter().filter(|o| !o.is_null()).collect();
    Ok(Rendered { overlay: overlay.to_string(), yaml, objects })
}

/// Whether a Prometheus text exposition has samples of `name`.
#[cfg(test)]
pub fn exposition_has(text: &str, name: &str) -> bool {
    text.lines().any(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lookup_is_by_whole_name() {
        let text = "# HELP a_total x\na_total{x=\"1\"} 2\nab 3\n";
        assert!(exposition_has(text, "a_total") && exposition_has(text, "ab"));
        assert!(!exposition_has(text, "a") && !exposition_has(text, "a_tot"));
    }
}
