//! A local stand-in for the Kubernetes API server, for the tests of `xtask
//! swap`, `xtask deploy` and `scalelab report --kube` (no cluster exists
//! here): plain HTTP/1.1, one request per connection, just the routes those
//! tasks use.
//!
//! - swap: read and patch the `scalelab-guest` ConfigMap, read the Deployment,
//!   list its pods, ask each pod's `/admin/guest` through the pod proxy
//!   (pod a swaps at once, pod b after a few polls, pod c is not ready);
//! - deploy: discovery of the API groups the manifests use, server-side
//!   apply of any object, listing by label selector and deleting what was
//!   applied, Deployments that become available after a few reads, Services
//!   read back as applied;
//! - report: a HorizontalPodAutoscaler that scales out as it is read
//!   ([`ApiServer::scale_out`]), and the `scalelab` Deployment's ready
//!   replicas trailing it.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One server-side apply the stand-in received.
#[derive(Clone, Debug)]
pub struct Apply {
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// Resources the stand-in's discovery knows: (group/version, plural, kind, namespaced).
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("v1", "namespaces", "Namespace", false),
    ("v1", "serviceaccounts", "ServiceAccount", true),
    ("v1", "configmaps", "ConfigMap", true),
    ("v1", "secrets", "Secret", true),
    ("v1", "services", "Service", true),
    ("v1", "pods", "Pod", true),
    ("apps/v1", "deployments", "Deployment", true),
    ("apps/v1", "statefulsets", "StatefulSet", true),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", true),
    ("rbac.authorization.k8s.io/v1", "roles", "Role", true),
    ("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", true),
    ("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", true),
    ("monitoring.coreos.com/v1", "servicemonitors", "ServiceMonitor", true),
    ("keda.sh/v1alpha1", "scaledobjects", "ScaledObject", true),
];

#[derive(Default)]
struct World {
    config: String,
    patches: Vec<Value>,
    /// Guest each pod serves, and a swap counter standing for `since`.
    pods: Vec<(String, bool, String, u32)>,
    proxy_requests: Vec<String>,
    namespaces: Vec<String>,
    /// Pod b takes a few polls to pick up a new ConfigMap.
    b_delay: u32,
    stuck: bool,
    /// API groups (group/version) discovery answers 404 for.
    removed_groups: Vec<String>,
    applies: Vec<Apply>,
    /// What exists now: each applied object by its path, until deleted.
    objects: BTreeMap<String, Value>,
    deletes: Vec<String>,
    /// Reads of each applied Deployment (it is available from the third).
    deployment_reads: Vec<String>,
    /// The scripted HPA, if any.
    hpa: Option<ScriptedHpa>,
}

/// An HPA that scales its Deployment out by one pod every second read, up
/// to `max`: on read k it wants `1 + k/2` pods, has what it wanted one read
/// before, and the Deployment has what it wanted two reads before ready.
struct ScriptedHpa {
    name: String,
    max: i64,
    reads: i64,
}

impl ScriptedHpa {
    fn desired(&self, read: i64) -> i64 {
        (1 + read.max(0) / 2).min(self.max)
    }
}

pub struct ApiServer {
    addr: std::net::SocketAddr,
    world: Arc<Mutex<World>>,
    dir: PathBuf,
}

impl ApiServer {
    pub fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let world = Arc::new(Mutex::new(World {
            config: "guest = \"prime\"\ndeadline = \"2s\"\n".into(),
            pods: vec![
                ("scalelab-a".into(), true, "prime".into(), 0),
                ("scalelab-b".into(), true, "prime".into(), 0),
                ("scalelab-c".into(), false, "prime".into(), 0),
            ],
            ..World::default()
        }));
        let shared = world.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let world = shared.clone();
                std::thread::spawn(move || serve(stream, &world));
            }
        });
        let dir = std::env::temp_dir().join(format!("xtask-stand-in-{}-{}", std::process::id(), addr.port()));
        std::fs::create_dir_all(&dir).unwrap();
        ApiServer { addr, world, dir }
    }

    /// A kubeconfig pointing at the stand-in (context namespace `demo`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://{}\n\
             users:\n- name: me\n  user:\n    token: t0ken\ncontexts:\n- name: here\n  context:\n    cluster: stand-in\n\
             \x20   user: me\n    namespace: demo\ncurrent-context: here\n",
            self.addr
        )
    }

    /// [`ApiServer::kubeconfig`] written to a file of the stand-in's own.
    pub fn write_kubeconfig(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, self.kubeconfig()).unwrap();
        path
    }

    pub fn patches(&self) -> Vec<Value> {
        self.world.lock().unwrap().patches.clone()
    }

    pub fn proxy_requests(&self, pod: &str) -> usize {
        self.world.lock().unwrap().proxy_requests.iter().filter(|p| *p == pod).count()
    }

    pub fn namespace_seen(&self) -> String {
        self.world.lock().unwrap().namespaces.first().cloned().unwrap_or_default()
    }

    pub fn set_stuck(&self, stuck: bool) {
        self.world.lock().unwrap().stuck = stuck;
    }

    /// Makes discovery of `group_version` (e.g. `keda.sh/v1alpha1`) answer 404, as without that add-on.
    pub fn remove_group(&self, group_version: &str) {
        self.world.lock().unwrap().removed_groups.push(group_version.to_string());
    }

    pub fn applies(&self) -> Vec<Apply> {
        self.world.lock().unwrap().applies.clone()
    }

    /// Paths of the objects deleted, in order.
    pub fn deletes(&self) -> Vec<String> {
        self.world.lock().unwrap().deletes.clone()
    }

    /// Serves an HPA `name` (in any namespace) that scales the `scalelab`
    /// Deployment out as it is read, up to `max` pods.
    pub fn scale_out(&self, name: &str, max: i64) {
        self.world.lock().unwrap().hpa = Some(ScriptedHpa { name: name.to_string(), max, reads: 0 });
    }

    /// Reads of the scripted HPA so far.
    pub fn hpa_reads(&self) -> i64 {
        self.world.lock().unwrap().hpa.as_ref().map_or(0, |h| h.reads)
    }

    pub fn deployment_reads(&self, name: &str) -> usize {
        self.world.lock().unwrap().deployment_reads.iter().filter(|d| *d == name).count()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(stream: TcpStream, world: &Mutex<World>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0;
    let mut authorized = false;
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if let Some(v) = lower.strip_prefix("content-type:") {
            content_type = v.trim().to_string();
        }
        authorized |= lower == "authorization: bearer t0ken";
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, reply) = if authorized {
        route(method, target, &content_type, &body, &mut world.lock().unwrap())
    } else {
        (401, json!({"kind": "Status", "code": 401}))
    };
    let reply = reply.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

/// One request: what the server answers.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    body: &'a [u8],
}

type Answer = (u16, Value);

fn route(method: &str, target: &str, content_type: &str, body: &[u8], world: &mut World) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let request = Request { method, path, query, body };
    let missing = || not_found(&request);

    if method == "PATCH" && content_type == "application/apply-patch+yaml" {
        return apply(&request, content_type, world);
    }
    if method == "DELETE" {
        return match world.objects.remove(path) {
            Some(object) => {
                world.deletes.push(path.to_string());
                (200, object)
            }
            None => missing(),
        };
    }
    if let Some(group_version) = discovery_path(&segments) {
        return discovery(&group_version, world).unwrap_or_else(missing);
    }
    let found = match segments.as_slice() {
        ["api", "v1", "namespaces", ns, "configmaps", "scalelab-guest"] => Some(guest_config_map(&request, ns, world)),
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name] => deployment(&request, ns, name, world),
        ["apis", "autoscaling", "v2", "namespaces", ns, "horizontalpodautoscalers", name]
            if method == "GET" && world.hpa.as_ref().is_some_and(|h| h.name == *name) =>
        {
            Some(scripted_hpa(ns, name, world))
        }
        ["api", "v1", "namespaces", _, "services", _] => service(path, world),
        ["api", "v1", "namespaces", _, "pods"] => Some(pods(&request, world)),
        ["api", "v1", "namespaces", _, "pods", pod_port, "proxy", "admin", "guest"] => {
            pod_guest(pod_port.trim_end_matches(":9090"), world)
        }
        [.., "namespaces", _, _] if method == "GET" => Some(list(&request, world)),
        _ => None,
    };
    found.unwrap_or_else(missing)
}

fn not_found(request: &Request<'_>) -> Answer {
    (404, json!({"kind": "Status", "code": 404, "message": format!("{} {}", request.method, request.path)}))
}

/// Server-side apply: the object is recorded and stored as sent.
fn apply(request: &Request<'_>, content_type: &str, world: &mut World) -> Answer {
    let object: Value = serde_json::from_slice(request.body).unwrap();
    world.applies.push(Apply {
        path: request.path.to_string(),
        query: request.query.to_string(),
        content_type: content_type.into(),
        body: object.clone(),
    });
    world.objects.insert(request.path.to_string(), object.clone());
    (200, object)
}

/// The resources of one API group version (none for a removed group).
fn discovery(group_version: &str, world: &World) -> Option<Answer> {
    if world.removed_groups.iter().any(|g| g == group_version) {
        return None;
    }
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|(gv, ..)| *gv == group_version)
        .map(|(_, plural, kind, namespaced)| {
            json!({
                "name": plural, "singularName": kind.to_ascii_lowercase(), "namespaced": namespaced, "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]
            })
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some((200, json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})))
}

/// The guest ConfigMap; a PATCH swaps pod a at once and pod b a few polls later.
fn guest_config_map(request: &Request<'_>, ns: &str, world: &mut World) -> Answer {
    world.namespaces.push(ns.to_string());
    if request.method == "PATCH" {
        let patch: Value = serde_json::from_slice(request.body).unwrap();
        world.config = patch["data"]["guest.toml"].as_str().unwrap().to_string();
        world.patches.push(patch);
        world.b_delay = 3;
        let guest = world.config.lines().next().unwrap().split('"').nth(1).unwrap().to_string();
        // Pod a swaps at once; pod b after a few polls (unless stuck).
        let a = &mut world.pods[0];
        a.2 = guest;
        a.3 += 1;
    }
    (
        200,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "scalelab-guest", "namespace": ns},
        "data": {"guest.toml": world.config}}),
    )
}

/// An applied Deployment (available from its third read), or the host's own
/// `scalelab` Deployment following the scripted HPA.
fn deployment(request: &Request<'_>, ns: &str, name: &str, world: &mut World) -> Option<Answer> {
    if let Some(mut object) = world.objects.get(request.path).cloned() {
        world.deployment_reads.push(name.to_string());
        let reads = world.deployment_reads.iter().filter(|d| *d == name).count() as i64;
        let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
        object["spec"]["replicas"] = json!(replicas);
        object["metadata"]["generation"] = json!(1);
        object["status"] = json!({
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": if reads >= 2 { replicas } else { 0 },
            "availableReplicas": if reads >= 3 { replicas } else { 0 },
        });
        return Some((200, object));
    }
    if name != "scalelab" {
        return None;
    }
    let mut object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "scalelab", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "scalelab"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "scalelab"}}, "spec": {"containers": []}}}
    });
    if let Some(hpa) = &world.hpa {
        let read = hpa.reads;
        object["spec"]["replicas"] = json!(hpa.desired(read - 1));
        object["status"] = json!({"replicas": hpa.desired(read - 1), "readyReplicas": hpa.desired(read - 2)});
    }
    Some((200, object))
}

/// The scripted HPA: each read is one step further in its scale-out.
fn scripted_hpa(ns: &str, name: &str, world: &mut World) -> Answer {
    let hpa = world.hpa.as_mut().unwrap();
    hpa.reads += 1;
    let read = hpa.reads;
    let (desired, current) = (hpa.desired(read), hpa.desired(read - 1));
    (
        200,
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scalelab"},
                "minReplicas": 1, "maxReplicas": hpa.max,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {
                "currentReplicas": current, "desiredReplicas": desired,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40 + 10 * read, "averageValue": "120m"}}},
                    {"type": "External", "external": {"metric": {"name": "s0-prometheus"}, "current": {"averageValue": format!("{}", 5 * read)}}}
                ]
            }
        }),
    )
}

/// An applied Service, given a cluster IP.
fn service(path: &str, world: &World) -> Option<Answer> {
    let mut object = world.objects.get(path)?.clone();
    if object["spec"]["clusterIP"].is_null() {
        object["spec"]["clusterIP"] = json!("10.96.0.10");
    }
    Some((200, object))
}

/// The host's pods, selected by its label, with their readiness.
fn pods(request: &Request<'_>, world: &World) -> Answer {
    assert!(request.query.contains("labelSelector=app.kubernetes.io%2Fname%3Dscalelab"), "{}", request.query);
    let items: Vec<Value> = world
        .pods
        .iter()
        .map(|(name, ready, _, _)| {
            json!({
                "metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": if *ready { "True" } else { "False" }}]}
            })
        })
        .collect();
    (200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}))
}

/// `GET /admin/guest` of one pod through the API server's proxy; pod b
/// catches up with pod a's guest a few polls after a patch (unless stuck).
fn pod_guest(pod: &str, world: &mut World) -> Option<Answer> {
    world.proxy_requests.push(pod.to_string());
    if pod == "scalelab-b" && !world.stuck && !world.patches.is_empty() {
        if world.b_delay > 0 {
            world.b_delay -= 1;
        } else if world.pods[1].2 != world.pods[0].2 {
            let guest = world.pods[0].2.clone();
            world.pods[1].2 = guest;
            world.pods[1].3 += 1;
        }
    }
    let (_, _, guest, swaps) = world.pods.iter().find(|p| p.0 == pod)?;
    Some((200, json!({"name": guest, "sha256": "ab".repeat(32), "since": format!("swap {swaps}")})))
}

/// A list of one kind in a namespace, filtered by the label selector.
fn list(request: &Request<'_>, world: &World) -> Answer {
    let selector =
        request.query.split('&').find_map(|pair| pair.strip_prefix("labelSelector=")).map(percent_decode).unwrap_or_default();
    let prefix = format!("{}/", request.path);
    let items: Vec<Value> = world
        .objects
        .iter()
        .filter(|(p, o)| {
            p.starts_with(&prefix) && !p[prefix.len()..].contains('/') && selects(&selector, &o["metadata"]["labels"])
        })
        .map(|(_, o)| o.clone())
        .collect();
    (200, json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}))
}

/// Whether a label selector of `key`, `key=value` and `key!=value` terms selects these labels.
fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((key, value)) = term.split_once("!=") {
            labels[key] != value
        } else if let Some((key, value)) = term.split_once('=') {
            labels[key] == value
        } else {
            labels[term].is_string()
        }
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// `/api/v1` -> `v1`, `/apis/apps/v1` -> `apps/v1`: a discovery request.
fn discovery_path(segments: &[&str]) -> Option<String> {
    match segments {
        ["api", version] => Some(version.to_string()),
        ["apis", group, version] => Some(format!("{group}/{version}")),
        _ => None,
    }
}
