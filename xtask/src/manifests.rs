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

#[cfg(test)]
/// The metric names a PromQL expression reads: every identifier that is not
/// a function, a keyword, a label name or inside a string, a label matcher
/// block or a range.
pub fn metric_names(expr: &str) -> std::collections::BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
        // Aggregations, which may take `by (...)` before their parentheses.
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = std::collections::BTreeSet::new();
    let mut i = 0;
    // Whether the last keyword was `by`/`without`/`on`/..., whose (...) lists labels.
    let mut label_list_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += if chars[i] == '\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if label_list_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                label_list_next = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let is_call = chars.get(next) == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&lower.as_str()) {
                    label_list_next = true;
                } else if !is_call && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            '$' => {
                // A dashboard variable, such as $namespace.
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
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
    fn metric_names_skip_functions_labels_and_strings() {
        let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
        assert_eq!(names(r#"sum(mx_server_active_conn_gauge{namespace="scalelab"})"#), ["mx_server_active_conn_gauge"]);
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le) (rate(scalelab_http_request_duration_seconds_bucket{namespace="$namespace", a="x{y}"}[1m])))"#
            ),
            ["scalelab_http_request_duration_seconds_bucket"]
        );
        assert_eq!(names("count by (guest) (scalelab_guest_info) / on (pod) group_left up"), ["scalelab_guest_info", "up"]);
        assert_eq!(names("sum without (pod) (x) + max by (a) (y)"), ["x", "y"]);
        assert_eq!(names("rate(a_total[5m]) > bool 2e3 and b offset 5m"), ["a_total", "b"]);
    }

    #[test]
    fn exposition_lookup_is_by_whole_name() {
        let text = "# HELP a_total x\na_total{x=\"1\"} 2\nab 3\n";
        assert!(exposition_has(text, "a_total") && exposition_has(text, "ab"));
        assert!(!exposition_has(text, "a") && !exposition_has(text, "a_tot"));
    }
}
