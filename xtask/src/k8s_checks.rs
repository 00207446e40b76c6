//! The test suite's checks of `k8s/`, the Dockerfile and the image layout,
//! with no cluster and no Docker engine:
//!
//! - every overlay renders, and every object validates strictly: core
//!   objects with `kubernetes-validate --strict`, KEDA and Prometheus-operator
//!   objects against the CRD schemas in `k8s/schemas/crds`;
//! - the manifests agree with the host: ports, probe paths, the mount path
//!   of the guest configuration, the drain timeout, the names `xtask swap`
//!   uses, the RBAC it needs;
//! - every metric a query of the manifests reads is in `/metrics` of a host
//!   serving the overlay's guest;
//! - a real Prometheus, scraping a tracker host as the ServiceMonitor says,
//!   answers the ScaledObject's exact query with the connected-client count;
//! - the image layout runs as the non-root user, from its own root.
//!
//! The tools come from `cargo xtask test` (`SCALELAB_TEST_TOOLS_DIR`,
//! `SCALELAB_TEST_IMAGE_DIR`).

use crate::bench::{self, Contender};
use crate::cluster;
use crate::image;
use crate::manifests::{self, Rendered};
use crate::workspace::Workspace;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ws() -> Workspace {
    Workspace::locate().unwrap()
}

fn env_dir(var: &str) -> PathBuf {
    let dir =
        std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| panic!("{var} is not set: run through `cargo xtask test`"));
    assert!(dir.is_dir(), "{} ({var}) does not exist: run through `cargo xtask test`", dir.display());
    dir
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-k8s-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn render_all() -> Vec<Rendered> {
    let ws = ws();
    let overlays = manifests::overlays(&ws).unwrap();
    assert_eq!(overlays, ["broker", "httpbin", "prime", "todo", "tracker"], "one overlay per guest");
    overlays.iter().map(|o| manifests::render(&ws, o).unwrap()).collect()
}

/// `scalelab serve` (the debug build `cargo test --workspace` made) with the test guests.
fn start_host(guest: &str, dir: &Path) -> (Contender, std::sync::mpsc::Receiver<String>) {
    let ws = ws();
    let scalelab = ws.target_dir.join("debug/scalelab");
    let mut args: Vec<OsString> = ["--guest", guest].map(OsString::from).to_vec();
    // A guest that uses SQL gets the embedded default, in the test's directory.
    args.extend(["--data-dir".into(), dir.join("data").into_os_string()]);
    bench::spawn_host("k8s", &scalelab, &ws.target_dir.join("guests"), &dir.join("cache"), &args, false).unwrap()
}

fn get(url: &str) -> (u16, String) {
    let mut response =
        ureq::get(url).config().http_status_as_error(false).build().call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
}

// ---------------------------------------------------------------- schemas

/// The CRD schema of a custom object, made strict: every object schema that
/// lists its properties and says nothing of others refuses unknown fields
/// (as the API server does for structural CRDs).
fn crd_schema(object: &Value) -> Option<Value> {
    let (group, version) = object["apiVersion"].as_str()?.split_once('/')?;
    let kind = object["kind"].as_str()?.to_ascii_lowercase();
    let path = ws().root.join(format!("k8s/schemas/crds/{group}/{kind}_{version}.json"));
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).unwrap();
    make_strict(&mut schema);
    Some(schema)
}

fn make_strict(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else { return };
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserves {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(props)) = map.get_mut(key) {
            props.values_mut().for_each(make_strict);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = map.get_mut(key) {
            make_strict(sub);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = map.get_mut(key) {
            subs.iter_mut().for_each(make_strict);
        }
    }
}

fn crd_errors(object: &Value) -> Vec<String> {
    let schema = crd_schema(object).expect("a CRD schema");
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator.iter_errors(object).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn every_object_of_every_overlay_validates_strictly() {
    let tools = env_dir("SCALELAB_TEST_TOOLS_DIR");
    let dir = temp_dir("validate");
    for rendered in render_all() {
        let file = dir.join(format!("{}.yaml", rendered.overlay));
        std::fs::write(&file, &rendered.yaml).unwrap();
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
            .arg(&file)
            .env("PYTHONPATH", &tools)
            .output()
            .unwrap();
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success() && !report.contains("ERROR"),
            "{}: kubernetes-validate --strict:\n{report}",
            rendered.overlay
        );

        // What kubernetes-validate has no schema for must be exactly the
        // custom objects, and each of those passes its CRD schema.
        let unknown: BTreeSet<String> = report
            .lines()
            .filter_map(|l| l.split("Couldn't find schema for kind ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect();
        let custom: BTreeSet<String> = rendered
            .objects
            .iter()
            .filter(|o| crd_schema(o).is_some())
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(unknown, custom, "{}: objects without a schema", rendered.overlay);
        for object in rendered.objects.iter().filter(|o| crd_schema(o).is_some()) {
            let errors = crd_errors(object);
            assert!(errors.is_empty(), "{} {}: {errors:#?}", rendered.overlay, object["kind"]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CRD check fails on a misspelt field and on a wrong type, so it would
/// catch a broken ScaledObject or ServiceMonitor.
#[test]
fn the_crd_check_catches_typos() {
    let tracker = manifests::render(&ws(), "tracker").unwrap();
    let mut scaled = tracker.get("ScaledObject", "scalelab").unwrap().clone();
    scaled["spec"]["maxReplicas"] = json!(15);
    assert!(crd_errors(&scaled).iter().any(|e| e.contains("maxReplicas")), "{:?}", crd_errors(&scaled));
    let mut scaled = tracker.get("ScaledObject", "scalelab").unwrap().clone();
    scaled["spec"]["pollingInterval"] = json!("fast");
    assert!(!crd_errors(&scaled).is_empty());
    let mut monitor = tracker.get("ServiceMonitor", "scalelab").unwrap().clone();
    monitor["spec"]["endpoints"][0]["intervall"] = json!("5s");
    assert!(crd_errors(&monitor).iter().any(|e| e.contains("intervall")), "{:?}", crd_errors(&monitor));
}

// ---------------------------------------------------------------- consistency

/// The default of a `scalelab serve` flag, read from `--help`.
fn host_default(help: &str, flag: &str) -> String {
    let start = help.find(&format!("      {flag} ")).unwrap_or_else(|| panic!("{flag} not in `scalelab serve --help`"));
    let block = &help[start..];
    let end = block[flag.len() + 6..].find("\n      -").map_or(block.len(), |i| i + flag.len() + 6);
    let block = &block[..end];
    let value = block.split("[default:").nth(1).unwrap_or_else(|| panic!("{flag} has no default: {block}"));
    value.trim_start().split([']', ',']).next().unwrap().trim().to_string()
}

fn port_of(listen: &str) -> i64 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

fn seconds(text: &str) -> i64 {
    text.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{text} is not whole seconds"))
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn container_port(container: &Value, name: &str) -> i64 {
    container["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
        .as_i64()
        .unwrap()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

#[test]
fn the_manifests_agree_with_the_host_and_xtask() {
    let ws = ws();
    let help = Command::new(ws.target_dir.join("debug/scalelab")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let defaults = HostDefaults {
        listen: port_of(&host_default(&help, "--listen")),
        admin: port_of(&host_default(&help, "--admin-listen")),
        tcp: port_of(&host_default(&help, "--tcp-listen")),
        config: host_default(&help, "--config"),
        drain: seconds(&host_default(&help, "--drain-timeout")),
    };
    let HostDefaults { listen, admin, tcp, drain, .. } = defaults;
    assert_eq!(
        (listen, admin, tcp, defaults.config.as_str(), drain),
        (8080, 9090, 1337, "/etc/scalelab/guest.toml", 20),
        "host defaults"
    );
    assert_eq!(admin, i64::from(cluster::ADMIN_PORT), "xtask swap asks pods on the admin port");

    for r in render_all() {
        let o = &r.overlay;
        // xtask deploy prunes other scenarios' objects by this label.
        for object in &r.objects {
            assert_eq!(
                object["metadata"]["labels"][crate::deploy::SCENARIO_LABEL],
                o.as_str(),
                "{o}: {}",
                object["metadata"]["name"]
            );
        }
        let deployment =
            r.get("Deployment", cluster::DEFAULT_DEPLOYMENT).unwrap_or_else(|| panic!("{o}: no Deployment scalelab"));
        check_host_container(&r, deployment, &defaults);
        check_security(&r, &container(deployment, "scalelab")["image"]);
        check_services_and_monitoring(&r, deployment);
        check_swap_role(&r);
    }
}

/// What `scalelab serve --help` gives as defaults, which the manifests must match.
struct HostDefaults {
    listen: i64,
    admin: i64,
    tcp: i64,
    /// The config file's path, where the guest ConfigMap must be mounted.
    config: String,
    /// The host's drain timeout, in seconds, which the grace period must cover.
    drain: i64,
}

/// The host container: its ports, probes and environment, the guest
/// ConfigMap mounted at the default config path, and shutdown timing.
fn check_host_container(r: &Rendered, deployment: &Value, defaults: &HostDefaults) {
    let o = &r.overlay;
    let pod = &deployment["spec"]["template"];
    let host = container(deployment, "scalelab");
    assert_eq!(host["args"][0], "serve", "{o}: the host container serves");
    assert_eq!(container_port(host, "http"), defaults.listen, "{o}");
    assert_eq!(container_port(host, "admin"), defaults.admin, "{o}");
    assert_eq!(container_port(host, "tcp"), defaults.tcp, "{o}");
    assert_eq!(host["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "admin"}), "{o}");
    assert_eq!(host["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "admin"}), "{o}");
    for var in host["env"].as_array().into_iter().flatten() {
        assert!(!["SCALELAB_GUEST", "SCALELAB_CONFIG", "RUST_BACKTRACE"].contains(&var["name"].as_str().unwrap()), "{o}: {var}");
    }

    // The guest ConfigMap, mounted as a directory at the host's default config path.
    let volume =
        pod["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["configMap"]["name"] == cluster::DEFAULT_CONFIGMAP).unwrap();
    let mount = host["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == volume["name"]).unwrap();
    assert!(mount["subPath"].is_null(), "{o}: a subPath mount never sees ConfigMap updates");
    assert_eq!(format!("{}/{}", mount["mountPath"].as_str().unwrap(), cluster::CONFIG_KEY), defaults.config, "{o}");
    assert!(r.guest().is_ok(), "{o}: guest.toml names a guest");
    // The compile cache goes to the temp dir: writable although the root is not.
    assert!(host["volumeMounts"].as_array().unwrap().iter().any(|m| m["mountPath"] == "/tmp"), "{o}: /tmp volume");

    // Shutdown: the preStop delay and the host's drain fit in the grace period.
    let pre_stop = host["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64().unwrap();
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap();
    let drain = defaults.drain;
    assert!(grace > pre_stop + drain, "{o}: grace {grace} s <= preStop {pre_stop} s + drain {drain} s");
}

/// Every Deployment: non-root as the image's user, read-only root, no
/// capabilities, RuntimeDefault seccomp, requests and limits, the host's image.
fn check_security(r: &Rendered, image: &Value) {
    let o = &r.overlay;
    let (uid, gid) = image::USER.split_once(':').unwrap();
    for d in r.all("Deployment") {
        let spec = &d["spec"]["template"]["spec"];
        let name = d["metadata"]["name"].as_str().unwrap();
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{o}/{name}");
        assert_eq!(spec["securityContext"]["runAsUser"].to_string(), uid, "{o}/{name}");
        assert_eq!(spec["securityContext"]["runAsGroup"].to_string(), gid, "{o}/{name}");
        assert_eq!(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{o}/{name}");
        for c in spec["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{o}/{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{o}/{name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{o}/{name}");
            for what in ["requests", "limits"] {
                assert!(
                    c["resources"][what]["cpu"].is_string() && c["resources"][what]["memory"].is_string(),
                    "{o}/{name}: {what}"
                );
            }
            assert_eq!(&c["image"], image, "{o}/{name}: one image");
        }
    }
}

/// Services select the pods of a Deployment or StatefulSet and name their
/// ports; the ServiceMonitor scrapes one of them; the PDB and the
/// Deployment's selector cover the host pods.
fn check_services_and_monitoring(r: &Rendered, deployment: &Value) {
    let o = &r.overlay;
    let pod = &deployment["spec"]["template"];
    for s in r.all("Service") {
        let name = s["metadata"]["name"].as_str().unwrap();
        let target = r
            .all("Deployment")
            .chain(r.all("StatefulSet"))
            .find(|d| labels_match(&s["spec"]["selector"], &d["spec"]["template"]["metadata"]["labels"]))
            .unwrap_or_else(|| panic!("{o}: Service {name} selects no Deployment's or StatefulSet's pods"));
        for port in s["spec"]["ports"].as_array().unwrap() {
            let named = port["targetPort"].as_str().unwrap();
            let c = &target["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(container_port(c, named), port["port"].as_i64().unwrap(), "{o}/{name}: port {named}");
        }
    }

    // The ServiceMonitor: exactly one Service, its admin port, the host's metrics path.
    let monitor = r.get("ServiceMonitor", "scalelab").unwrap();
    let selected: Vec<&Value> = r
        .all("Service")
        .filter(|s| labels_match(&monitor["spec"]["selector"]["matchLabels"], &s["metadata"]["labels"]))
        .collect();
    assert_eq!(selected.len(), 1, "{o}: the ServiceMonitor must select one Service (no duplicate targets)");
    let endpoint = &monitor["spec"]["endpoints"][0];
    let port = selected[0]["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == endpoint["port"]).unwrap();
    assert_eq!(port["targetPort"], "admin", "{o}");
    assert_eq!(endpoint["path"], "/metrics", "{o}");

    // The PDB covers the host pods.
    let pdb = r.get("PodDisruptionBudget", "scalelab").unwrap();
    assert!(labels_match(&pdb["spec"]["selector"]["matchLabels"], &pod["metadata"]["labels"]), "{o}");
    // The Deployment's selector is what xtask swap lists pods by.
    assert!(labels_match(&deployment["spec"]["selector"]["matchLabels"], &pod["metadata"]["labels"]), "{o}");
}

/// The swap Role allows what xtask swap does (see cluster.rs).
fn check_swap_role(r: &Rendered) {
    let o = &r.overlay;
    let role = r.get("Role", "scalelab-swap").unwrap();
    let allows = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|rule| {
            let has = |key: &str, v: &str| rule[key].as_array().unwrap().iter().any(|x| x == v);
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for (group, resource, verb) in [
        ("", "configmaps", "get"),
        ("", "configmaps", "patch"),
        ("apps", "deployments", "get"),
        ("", "pods", "list"),
        ("", "pods/proxy", "get"),
    ] {
        assert!(allows(group, resource, verb), "{o}: Role scalelab-swap must allow {verb} {resource}");
    }
    let binding = r.get("RoleBinding", "scalelab-swap").unwrap();
    assert_eq!(binding["roleRef"]["name"], "scalelab-swap");
}

/// What each overlay adds, as the issue sets it.
#[test]
fn each_overlay_scales_its_guest_as_intended() {
    let all = render_all();
    let overlay = |name: &str| all.iter().find(|r| r.overlay == name).unwrap();
    let targets_host = |object: &Value| object["spec"]["scaleTargetRef"]["name"] == cluster::DEFAULT_DEPLOYMENT;

    let prime = overlay("prime");
    assert_eq!(prime.guest().unwrap(), "prime");
    let hpa = prime.get("HorizontalPodAutoscaler", "scalelab").unwrap();
    assert!(targets_host(hpa) && hpa["apiVersion"] == "autoscaling/v2");
    assert_eq!((hpa["spec"]["minReplicas"].as_i64(), hpa["spec"]["maxReplicas"].as_i64()), (Some(1), Some(10)));
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
    assert!(
        hpa["spec"]["behavior"]["scaleUp"]["policies"].is_array() && hpa["spec"]["behavior"]["scaleDown"]["policies"].is_array()
    );
    let host = container(prime.get("Deployment", "scalelab").unwrap(), "scalelab");
    assert!(host["resources"]["requests"]["cpu"].is_string(), "CPU utilisation needs a CPU request");
    assert!(prime.get("Deployment", "scalelab").unwrap()["spec"]["replicas"].is_null(), "the HPA owns replicas");
    assert!(prime.all("ScaledObject").next().is_none());

    let broker = overlay("broker");
    assert_eq!(broker.guest().unwrap(), "broker");
    let deployment = broker.get("Deployment", "scalelab").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 1, "one broker pod");
    assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}), "never two brokers at once");
    let headless = broker.get("Service", "broker").unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["ports"][0]["port"], 1337);
    assert_eq!(broker.get("Service", "broker-control").unwrap()["spec"]["ports"][0]["targetPort"], "http");
    let engines = container(broker.get("Deployment", "engines").unwrap(), "engines");
    let args: Vec<&str> = engines["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..2], ["swarm", "engines"]);
    assert!(args.contains(&"--broker=broker:1337"), "engines reach the headless Service: {args:?}");

    let todo = overlay("todo");
    assert_eq!(todo.guest().unwrap(), "todo");
    let hpa = todo.get("HorizontalPodAutoscaler", "scalelab").unwrap();
    assert_eq!((hpa["spec"]["minReplicas"].as_i64(), hpa["spec"]["maxReplicas"].as_i64()), (Some(1), Some(8)));
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
    let postgres = todo.get("StatefulSet", "postgres").unwrap();
    assert_eq!(postgres["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data", "Postgres keeps its data on a PVC");
    assert_eq!(todo.get("Service", "postgres").unwrap()["spec"]["ports"][0]["port"], 5432);
    // guest.toml's database, password file and mount match the manifests.
    let config: toml_edit::DocumentMut = todo.guest_config().unwrap().parse().unwrap();
    assert_eq!(config["database"]["url"].as_str(), Some("postgres://todo@postgres:5432/todo"));
    let host = container(todo.get("Deployment", "scalelab").unwrap(), "scalelab");
    let mount_of = |volume: &str| {
        host["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == volume).unwrap()["mountPath"].as_str().unwrap()
    };
    let password_file = config["database"]["password_file"].as_str().unwrap();
    assert_eq!(password_file, format!("{}/password", mount_of("todo-db")));
    assert_eq!(config["mounts"]["/photos"].as_str(), Some(mount_of("todo-photo")));
    let pool = config["database"]["pool_size"].as_integer().unwrap();
    assert!(pool * hpa["spec"]["maxReplicas"].as_i64().unwrap() < 100, "every pod's pool fits Postgres' 100 connections");
    let load = container(todo.get("Deployment", "load").unwrap(), "load");
    assert_eq!(load["args"][1], "--scenario=/etc/scalelab-load/scenario.toml");

    let httpbin = overlay("httpbin");
    assert_eq!(httpbin.guest().unwrap(), "httpbin");
    let hpa = httpbin.get("HorizontalPodAutoscaler", "scalelab").unwrap();
    assert!(targets_host(hpa) && hpa["apiVersion"] == "autoscaling/v2");
    assert_eq!((hpa["spec"]["minReplicas"].as_i64(), hpa["spec"]["maxReplicas"].as_i64()), (Some(1), Some(4)));
    let targets: Vec<(&str, i64)> = hpa["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["resource"]["name"].as_str().unwrap(), m["resource"]["target"]["averageUtilization"].as_i64().unwrap()))
        .collect();
    assert_eq!(targets, [("cpu", 50), ("memory", 70)]);
    let host = container(httpbin.get("Deployment", "scalelab").unwrap(), "scalelab");
    assert!(host["resources"]["requests"]["memory"].is_string(), "memory utilisation needs a memory request");
    // /delay/{n} waits up to 10 s: the guest's deadline must allow it.
    let config: toml_edit::DocumentMut = httpbin.guest_config().unwrap().parse().unwrap();
    let deadline = config["deadline"].as_str().unwrap();
    assert!(deadline.strip_suffix('s').and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s > 10), "deadline {deadline}");
    let load = container(httpbin.get("Deployment", "load").unwrap(), "load");
    let args: Vec<&str> = load["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ["load", "--rate=100", "--duration=1h", "http://scalelab:8080/uuid"], "/uuid every 10 ms");

    let tracker = overlay("tracker");
    assert_eq!(tracker.guest().unwrap(), "tracker");
    let scaled = tracker.get("ScaledObject", "scalelab").unwrap();
    assert!(targets_host(scaled));
    assert_eq!((scaled["spec"]["minReplicaCount"].as_i64(), scaled["spec"]["maxReplicaCount"].as_i64()), (Some(1), Some(15)));
    assert!(scaled["spec"]["pollingInterval"].as_i64().unwrap() <= 10, "fast polling");
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!((trigger["type"].as_str(), trigger["metadata"]["threshold"].as_str()), (Some("prometheus"), Some("10")));
    assert!(trigger["metadata"]["query"].as_str().unwrap().starts_with("sum(mx_server_active_conn_gauge"));
    assert!(tracker.all("HorizontalPodAutoscaler").next().is_none(), "KEDA makes its own HPA");
    let sockets = container(tracker.get("Deployment", "sockets").unwrap(), "sockets");
    let args: Vec<&str> = sockets["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..2], ["swarm", "sockets"]);
    assert!(args.contains(&"--url=http://scalelab:8080"), "{args:?}");
}

/// What `scalelab report` will read from each rendered overlay: the
/// autoscaler's bounds and targets, with the requests its Utilization
/// targets are relative to.
#[test]
fn each_overlay_autoscaling_policy_reads_from_its_rendered_objects() {
    use autoscale::{Bounds, Metric, Policy, Resource};
    let bounds = |min, max| Bounds { min_replicas: min, max_replicas: max, tolerance: 0.1 };
    let cpu_50 = Metric::Utilization { resource: Resource::Cpu, percent: 50.0, request: 0.25 };
    for rendered in render_all() {
        let policy = Policy::from_objects(&rendered.objects).unwrap_or_else(|e| panic!("{}: {e}", rendered.overlay));
        let Some(policy) = policy else {
            assert_eq!(rendered.overlay, "broker", "only the broker has no autoscaler");
            continue;
        };
        assert_eq!(policy.deployment, cluster::DEFAULT_DEPLOYMENT, "{}", rendered.overlay);
        match rendered.overlay.as_str() {
            "prime" => assert_eq!((policy.bounds, policy.metrics), (bounds(1, 10), vec![cpu_50.clone()])),
            "todo" => assert_eq!((policy.bounds, policy.metrics), (bounds(1, 8), vec![cpu_50.clone()])),
            "httpbin" => {
                let memory = Metric::Utilization { resource: Resource::Memory, percent: 70.0, request: 128.0 * 1024.0 * 1024.0 };
                assert_eq!((policy.bounds, policy.metrics), (bounds(1, 4), vec![cpu_50.clone(), memory]));
            }
            "tracker" => {
                assert_eq!(policy.source, "ScaledObject/scalelab");
                assert_eq!(policy.bounds, bounds(1, 15));
                let [Metric::AverageValue { threshold, query: Some(query) }] = policy.metrics.as_slice() else {
                    panic!("tracker: {:?}", policy.metrics);
                };
                assert_eq!(*threshold, 10.0);
                assert!(query.starts_with("sum(mx_server_active_conn_gauge"), "{query}");
            }
            other => panic!("an overlay the check does not know: {other}"),
        }
    }
}

/// Every container's arguments are accepted by the scalelab CLI: each is
/// run for a moment (its peers do not resolve here) and must not stop with
/// a usage error.
#[test]
fn every_container_command_parses() {
    let scalelab = ws().target_dir.join("debug/scalelab");
    let dir = temp_dir("commands");
    std::fs::write(dir.join("guest.toml"), "guest = \"prime\"\n").unwrap();
    let guests = ws().target_dir.join("guests");
    // The host's own listeners move to free loopback ports; the rest is the manifest's.
    let serve_extra = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--config"]
        .map(OsString::from)
        .into_iter()
        .chain([
            dir.join("guest.toml").into_os_string(),
            "--guests-dir".into(),
            guests.into_os_string(),
            "--cache-dir".into(),
            dir.join("cache").into_os_string(),
        ])
        .collect::<Vec<OsString>>();
    for r in render_all() {
        for d in r.all("Deployment") {
            for c in d["spec"]["template"]["spec"]["containers"].as_array().unwrap() {
                let mounted = config_map_mounts(&r, d, c, &dir);
                let args: Vec<String> = c["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        let arg = a.as_str().unwrap().to_string();
                        mounted.iter().fold(arg, |arg, (mount, local)| arg.replace(mount.as_str(), local.to_str().unwrap()))
                    })
                    .collect();
                let mut child = Command::new(&scalelab)
                    .args(&args)
                    .args(if args[0] == "serve" { &serve_extra[..] } else { &[] })
                    .env_remove("RUST_BACKTRACE")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(700));
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.code().is_none() && !stderr.contains("Usage:"), "{}: {args:?} stopped: {stderr}", r.overlay);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ConfigMaps a container mounts (other than the guest configuration,
/// which `serve` gets from the test), written out under `dir`: each mount
/// path with the local directory that stands for it.
fn config_map_mounts(r: &Rendered, deployment: &Value, container: &Value, dir: &Path) -> Vec<(String, PathBuf)> {
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    let mut mounted = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v["name"] == mount["name"]) else { continue };
        let Some(name) = volume["configMap"]["name"].as_str().filter(|n| *n != cluster::DEFAULT_CONFIGMAP) else { continue };
        let config_map = r.get("ConfigMap", name).unwrap_or_else(|| panic!("{}: no ConfigMap {name}", r.overlay));
        let local = dir.join(name);
        std::fs::create_dir_all(&local).unwrap();
        for (file, text) in config_map["data"].as_object().into_iter().flatten() {
            std::fs::write(local.join(file), text.as_str().unwrap()).unwrap();
        }
        mounted.push((mount["mountPath"].as_str().unwrap().to_string(), local));
    }
    mounted
}

// ---------------------------------------------------------------- metrics

/// Every metric name in a ScaledObject query or dashboard panel of an
/// overlay is in `/metrics` of a host serving that overlay's guest (after one
/// request, so that per-status-code series exist), and the probes answer.
#[test]
fn every_metric_the_manifests_read_exists() {
    let dir = temp_dir("metrics");
    for r in render_all() {
        let guest = r.guest().unwrap();
        let (host, _lines) = start_host(&guest, &dir);
        let admin = host.admin.clone().unwrap();
        let _ = get(&format!("{}/", host.url));
        // The SQL series exist once a guest used its database.
        let uses_sql = guest == "todo";
        if uses_sql {
            let _ = get(&format!("{}/api/todos", host.url));
        }
        for probe in ["/healthz", "/readyz"] {
            assert_eq!(get(&format!("{admin}{probe}")).0, 200, "{guest}: {probe}");
        }
        let monitor = r.get("ServiceMonitor", "scalelab").unwrap();
        let path = monitor["spec"]["endpoints"][0]["path"].as_str().unwrap();
        let (status, exposition) = get(&format!("{admin}{path}"));
        assert_eq!(status, 200);
        let queries = r.queries().unwrap();
        assert!(queries.len() >= 8, "{}: the dashboard's panels and the ScaledObject", r.overlay);
        for (place, query) in queries {
            let names = autoscale::metric_names(&query);
            assert!(!names.is_empty(), "{place}: no metric in {query}");
            for name in names.into_iter().filter(|n| uses_sql || !n.starts_with("scalelab_sql_")) {
                assert!(
                    manifests::exposition_has(&exposition, &name),
                    "{}: {place} reads {name}, which a {guest} host does not export",
                    r.overlay
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- prometheus

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs a query through Prometheus's HTTP API; the value of its one sample.
fn prom_query(prometheus: &str, query: &str) -> Option<f64> {
    let mut response = ureq::get(&format!("{prometheus}/api/v1/query")).query("query", query).call().ok()?;
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// The one scrape target, as Prometheus reports it.
fn target(prometheus: &str) -> Value {
    let (_, text) = get(&format!("{prometheus}/api/v1/targets"));
    let body: Value = serde_json::from_str(&text).unwrap();
    body["data"]["activeTargets"][0].clone()
}

fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Debian's Prometheus scrapes a tracker host with the ServiceMonitor's path,
/// interval and timeout (and the `namespace` label the operator adds); the
/// ScaledObject's query, evaluated by that Prometheus, returns the number of
/// connected clients at the first scrape after they connected, and 0 at the
/// first scrape after they left.
#[test]
fn prometheus_answers_the_scaledobject_query_with_the_client_count() {
    let tracker = manifests::render(&ws(), "tracker").unwrap();
    let monitor = tracker.get("ServiceMonitor", "scalelab").unwrap();
    let endpoint = &monitor["spec"]["endpoints"][0];
    let query = tracker.get("ScaledObject", "scalelab").unwrap()["spec"]["triggers"][0]["metadata"]["query"]
        .as_str()
        .unwrap()
        .to_string();
    let namespace = monitor["metadata"]["namespace"].as_str().unwrap();

    let dir = temp_dir("prometheus");
    let (host, _lines) = start_host("tracker", &dir);
    let admin = host.admin.clone().unwrap();
    let admin_addr = admin.trim_start_matches("http://");
    let config = format!(
        "global:\n  scrape_interval: {interval}\nscrape_configs:\n  - job_name: serviceMonitor/{namespace}/scalelab/0\n    \
         metrics_path: {path}\n    scrape_interval: {interval}\n    scrape_timeout: {timeout}\n    static_configs:\n      \
         - targets: ['{admin_addr}']\n        labels: {{namespace: {namespace}, service: scalelab, endpoint: {port}, container: scalelab, pod: scalelab-0}}\n",
        interval = endpoint["interval"].as_str().unwrap(),
        timeout = endpoint["scrapeTimeout"].as_str().unwrap(),
        path = endpoint["path"].as_str().unwrap(),
        port = endpoint["port"].as_str().unwrap(),
    );
    std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus (Debian's prometheus package; `cargo xtask test` installs it)");
    let prom = format!("http://{web}");
    let guard = KillOnDrop(&mut prometheus);

    let give_up = Instant::now() + Duration::from_secs(60);
    while get_ok(&format!("{prom}/-/ready")) != Some(200) {
        assert!(Instant::now() < give_up, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 7 clients connect and stay.
    const CLIENTS: f64 = 7.0;
    let mut swarm = Command::new(ws().target_dir.join("debug/scalelab"))
        .args([
            "swarm",
            "sockets",
            "--url",
            &host.url,
            "--clients",
            "7",
            "--spawn-interval",
            "5ms",
            "--hold",
            "60s",
            "--metrics-listen",
            "off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let swarm_guard = KillOnDrop(&mut swarm);
    let connected_at = wait_gauge(&admin, CLIENTS);
    let (value, target) = value_after_next_scrape(&prom, &query, connected_at);
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["scrapeUrl"], format!("{admin}{}", endpoint["path"].as_str().unwrap()));
    assert_eq!(target["scrapeInterval"], endpoint["interval"]);
    assert_eq!(value, Some(CLIENTS), "{query} at the first scrape after {CLIENTS} clients connected");

    drop(swarm_guard);
    let left_at = wait_gauge(&admin, 0.0);
    let (value, _) = value_after_next_scrape(&prom, &query, left_at);
    assert_eq!(value, Some(0.0), "{query} at the first scrape after the clients left");
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_ok(url: &str) -> Option<u16> {
    ureq::get(url).config().http_status_as_error(false).build().call().ok().map(|r| r.status().as_u16())
}

/// Waits until the host's own gauge reads `value`; returns when (Unix seconds).
fn wait_gauge(admin: &str, value: f64) -> f64 {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = get(&format!("{admin}/metrics"));
        let current = text
            .lines()
            .find(|l| l.starts_with("mx_server_active_conn_gauge"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if current == Some(value) {
            return now_unix();
        }
        assert!(Instant::now() < give_up, "the host's gauge never read {value} (last {current:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for a scrape that started after `since` (the timestamp of the
/// scraped gauge's latest sample, which is the scrape's start), then
/// evaluates `query`.
fn value_after_next_scrape(prom: &str, query: &str, since: f64) -> (Option<f64>, Value) {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        if prom_query(prom, "max(timestamp(mx_server_active_conn_gauge))").is_some_and(|at| at > since) {
            return (prom_query(prom, query), target(prom));
        }
        assert!(Instant::now() < give_up, "no scrape after the change within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- image

/// The Dockerfile copies exactly what `xtask image --layout-only` lays out,
/// runs as [`image::USER`] from [`image::ENTRYPOINT`], sets no
/// `RUST_BACKTRACE`, and passes hadolint.
#[test]
fn the_dockerfile_is_the_layout_and_lints_clean() {
    let ws = ws();
    let text = std::fs::read_to_string(ws.root.join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).collect();
    let last_from = instructions.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let final_stage = &instructions[last_from..];
    assert!(
        final_stage[0] == "FROM scratch" || final_stage[0].starts_with("FROM gcr.io/distroless/static"),
        "{}",
        final_stage[0]
    );
    let copies: Vec<&&str> = final_stage.iter().filter(|l| l.starts_with("COPY") || l.starts_with("ADD")).collect();
    assert_eq!(copies, [&"COPY --from=build /layout/ /"], "the final stage holds the layout and nothing else");
    assert!(
        instructions.iter().any(|l| l.contains("cargo xtask image --layout-only --out /layout")),
        "the build stage runs the layout task"
    );
    assert!(final_stage.contains(&format!("USER {}", image::USER).as_str()));
    assert!(final_stage.contains(&format!("ENTRYPOINT [\"{}\"]", image::ENTRYPOINT).as_str()));
    assert!(!text.contains("RUST_BACKTRACE"), "the image must not set RUST_BACKTRACE");
    assert!(image::LAYOUT.iter().any(|e| format!("/{}", e.path) == image::ENTRYPOINT));

    let hadolint = env_dir("SCALELAB_TEST_TOOLS_DIR").join("bin/hadolint");
    let out = Command::new(&hadolint).args(["--no-color", "Dockerfile"]).current_dir(&ws.root).output().unwrap();
    assert!(out.status.success(), "hadolint:\n{}", String::from_utf8_lossy(&out.stdout));
}

fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    assert_eq!(&bytes[..4], b"\x7fELF");
    let u16_at = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| u32::from_le_bytes(bytes[phoff + i * phentsize..][..4].try_into().unwrap()) != PT_INTERP)
}

/// The layout `cargo xtask test` built with `xtask image --layout-only`:
/// under the size limit, a static binary, no shell; run as the image's
/// non-root user with the layout as its root (chroot, when the tests run as
/// root), it takes the guest from its /etc/scalelab/guest.toml, serves it,
/// writes nothing but its compile cache under /tmp, and swaps when the file
/// changes.
#[test]
fn the_image_layout_serves_as_a_non_root_user() {
    let layout = env_dir("SCALELAB_TEST_IMAGE_DIR");
    let mut total = 0;
    for entry in walk(&layout) {
        total += std::fs::metadata(&entry).unwrap().len();
    }
    assert!(total < image::MAX_BYTES, "the image is {total} bytes");
    assert!(!layout.join("bin/sh").exists() && !layout.join("usr").exists(), "no shell, no distribution");
    let binary = layout.join(image::ENTRYPOINT.trim_start_matches('/'));
    assert!(is_static_elf(&std::fs::read(&binary).unwrap()), "the host binary is static (no ELF interpreter)");

    // A copy, so the test can write the config and see what the host writes.
    let root = temp_dir("image-root");
    let status = Command::new("cp").arg("-a").arg(format!("{}/.", layout.display())).arg(&root).status().unwrap();
    assert!(status.success());
    let (uid, gid) = image::USER.split_once(':').unwrap();
    let (uid, gid): (u32, u32) = (uid.parse().unwrap(), gid.parse().unwrap());
    // SAFETY: getuid has no preconditions.
    let as_root = unsafe { libc::getuid() } == 0;

    let mut cmd = if as_root {
        Command::new(image::ENTRYPOINT)
    } else {
        Command::new(root.join(image::ENTRYPOINT.trim_start_matches('/')))
    };
    cmd.args([
        "--log-format",
        "json",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
    ]);
    cmd.env_clear().stdout(Stdio::null()).stderr(Stdio::piped());
    if as_root {
        let new_root = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::chroot(new_root.as_ptr()) != 0
                    || libc::chdir(c"/".as_ptr()) != 0
                    || libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    } else {
        // Not root: no chroot; the config comes from the copy, the rest is the same.
        cmd.args(["--config"]).arg(root.join("etc/scalelab/guest.toml"));
    }
    let (host, _lines) = bench::attach_host("image", cmd.spawn().unwrap()).unwrap();
    let admin = host.admin.clone().unwrap();

    let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid())).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    if as_root {
        let expected = uid.to_string();
        assert!(uids.split_whitespace().skip(1).all(|u| u == expected), "{uids}");
    }
    assert!(!uids.split_whitespace().skip(1).any(|u| u == "0"), "runs as root: {uids}");
    assert_eq!(get(&format!("{admin}/readyz")).0, 200);
    let (code, body) = get(&format!("{}/prime/10", host.url));
    assert_eq!((code, body.contains("\"prime\":29")), (200, true), "{body}");
    let (_, guest) = get(&format!("{admin}/admin/guest"));
    assert!(guest.contains("\"name\":\"prime\""), "the image's default guest.toml names prime: {guest}");

    // It wrote its compile cache under /tmp, and nothing else anywhere.
    use std::os::unix::fs::MetadataExt;
    let written: Vec<PathBuf> = walk(&root).into_iter().filter(|p| std::fs::metadata(p).unwrap().uid() == uid).collect();
    if as_root {
        assert!(!written.is_empty() && written.iter().all(|p| p.starts_with(root.join("tmp"))), "{written:?}");
    }

    // The guest comes from the configuration file: editing it swaps the guest.
    std::fs::write(root.join("etc/scalelab/guest.toml"), "guest = \"tracker\"\n").unwrap();
    let give_up = Instant::now() + Duration::from_secs(30);
    while !get(&format!("{admin}/admin/guest")).1.contains("\"name\":\"tracker\"") {
        assert!(Instant::now() < give_up, "the host did not swap to tracker after its guest.toml changed");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(host);
    let _ = std::fs::remove_dir_all(&root);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
