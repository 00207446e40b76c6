//! End to end: the `prime` guest's routes and errors through the real host,
//! many concurrent requests, and the metrics they leave behind.

mod support;

use serde_json::json;
use support::{Host, json};

#[tokio::test(flavor = "multi_thread")]
async fn every_route_and_error_status() {
    let host = Host::start("prime", &[]);
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(host.url(path)).send();

    for (path, body) in [
        ("/prime/1", json!({"n": 1, "prime": 2})),
        ("/prime/3", json!({"n": 3, "prime": 5})),
        ("/prime/300", json!({"n": 300, "prime": 1987})),
        ("/prime/1000", json!({"n": 1000, "prime": 7919})),
        ("/prime/10000", json!({"n": 10000, "prime": 104729})),
        ("/?n=1000", json!({"n": 1000, "prime": 7919})),
        ("/prime/10000?algo=sieve", json!({"n": 10000, "prime": 104729})),
        ("/?n=300&algo=trial", json!({"n": 300, "prime": 1987})),
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/json", "{path}");
        assert!(response.headers().contains_key("x-request-id"), "{path}");
        assert_eq!(framed_by_length(response).await, (200, body), "{path}");
    }

    // GET / picks n in [1000, 11000]: the prime is between the 1000th and the 11000th.
    let (status, body) = json(get("/").await.unwrap()).await;
    assert_eq!(status, 200);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["prime"]);
    let prime = body["prime"].as_u64().unwrap();
    assert!((7919..=116447).contains(&prime), "{prime}");

    for (path, status, needle) in [
        ("/prime/abc", 400, "integer"),
        ("/?n=2.5", 400, "integer"),
        ("/prime/0", 400, "at least 1"),
        ("/prime/-3", 400, "at least 1"),
        ("/prime/1000001", 400, "at most 1000000"),
        ("/prime/5?algo=magic", 400, "algo"),
        ("/primes", 404, "no route"),
        ("/prime", 404, "no route"),
    ] {
        let (got, body) = framed_by_length(get(path).await.unwrap()).await;
        assert_eq!(got, status, "{path}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(needle), "{path}: {error}");
    }

    for method in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE] {
        let response = client.request(method.clone(), host.url("/prime/3")).send().await.unwrap();
        assert_eq!(response.headers()["allow"], "GET");
        let (status, body) = json(response).await;
        assert_eq!(status, 405, "{method}");
        assert!(body["error"].as_str().unwrap().contains("GET"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_requests_all_get_json_and_metrics_count_them() {
    let host = Host::start("prime", &[]);
    let client = reqwest::Client::new();
    let requests = (0..100).map(|_| {
        let request = client.get(host.url("/")).send();
        async move { json(request.await.unwrap()).await }
    });
    let responses = futures_join_all(requests).await;
    for (status, body) in &responses {
        assert_eq!(*status, 200);
        assert!(body["prime"].as_u64().is_some(), "{body}");
    }
    // Bad input and unknown paths are counted under their own codes.
    client.get(host.url("/prime/0")).send().await.unwrap();
    client.get(host.url("/nowhere")).send().await.unwrap();

    let metrics = host.metrics().await;
    let prime = [("guest", "prime")];
    assert_eq!(metrics.value("scalelab_http_requests_total", &[("guest", "prime"), ("code", "200")]), Some(100.0));
    assert_eq!(metrics.value("scalelab_http_requests_total", &[("guest", "prime"), ("code", "400")]), Some(1.0));
    assert_eq!(metrics.value("scalelab_http_requests_total", &[("guest", "prime"), ("code", "404")]), Some(1.0));
    assert_eq!(metrics.value("scalelab_http_request_duration_seconds_count", &prime), Some(102.0));
    let latency_sum = metrics.value("scalelab_http_request_duration_seconds_sum", &prime).unwrap();
    assert!(latency_sum > 0.0 && latency_sum < 102.0 * 5.0, "{latency_sum}");
    assert_eq!(metrics.value("scalelab_http_requests_in_flight", &[]), Some(0.0));
    // Every request got an instance: a new one or a warm one (the start-up
    // probe is not counted).
    let created = metrics.value("scalelab_guest_instantiations_total", &prime).unwrap();
    let reused = metrics.value("scalelab_guest_instance_reuses_total", &prime).unwrap();
    assert_eq!(created + reused, 102.0);
    assert!((1.0..=100.0).contains(&created), "{created}");
    assert_eq!(metrics.value("scalelab_guest_instantiate_duration_seconds_count", &prime), Some(created));
    for reason in ["deadline", "memory", "trap"] {
        assert_eq!(metrics.value("scalelab_guest_failures_total", &[("guest", "prime"), ("reason", reason)]), Some(0.0));
    }
    let sha = metrics.0.lines().find(|l| l.starts_with("scalelab_guest_info{")).expect("scalelab_guest_info");
    assert!(sha.contains("guest=\"prime\"") && sha.ends_with(" 1"), "{sha}");
    let file = std::fs::read(support::guests_dir().join("prime.wasm")).unwrap();
    assert!(sha.contains(&sha256_hex(&file)), "{sha}");

    assert_eq!(metrics.value("scalelab_limit_deadline_seconds", &[]), Some(5.0));
    assert_eq!(metrics.value("scalelab_limit_memory_bytes", &[]), Some(64.0 * 1024.0 * 1024.0));
    assert!(metrics.value("scalelab_startup_seconds", &[]).unwrap() > 0.0);
    // The process collector counts whole CPU seconds: present, maybe still 0.
    assert!(metrics.value("process_cpu_seconds_total", &[]).unwrap() >= 0.0);
    assert!(metrics.value("process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(metrics.value("process_open_fds", &[]).unwrap() >= 3.0);
}

async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// The status and JSON body of a response the guest framed by its length
/// (guest-http's `send` declares it): a `Content-Length` that matches the
/// body, and no chunked transfer coding.
async fn framed_by_length(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    assert!(!headers.contains_key("transfer-encoding"), "framed by length, not in chunks: {headers:?}");
    let declared: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(declared, body.len(), "the declared length is the body's");
    (status, serde_json::from_slice(&body).unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_in_the_readme_is_exposed_and_every_exposed_one_documented() {
    let documented: Vec<String> = readme_metric_rows().into_keys().collect();
    assert!(documented.len() >= 15, "{documented:?}");

    let host = Host::start("prime", &[]);
    reqwest::get(host.url("/prime/7")).await.unwrap();
    let metrics = host.metrics().await;
    // The SQL series exist once a guest has used its database: a todo host shows them.
    let data = support::temp_dir("readme-sql");
    let todo = Host::start("todo", &["--data-dir", data.to_str().unwrap(), "--tcp-listen", "off"]);
    reqwest::get(todo.url("/api/todos")).await.unwrap();
    let sql_metrics = todo.metrics().await;
    for name in &documented {
        let exposed = if name.starts_with("scalelab_sql_") { &sql_metrics } else { &metrics };
        assert!(exposed.has(name), "{name} is documented but not exposed");
    }
    for line in metrics.0.lines().chain(sql_metrics.0.lines()).filter(|l| l.starts_with("# TYPE scalelab_")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(documented.iter().any(|d| d == name), "{name} is exposed but not documented");
    }
}

/// The README's rows of the metrics table, by metric name: the labels it
/// gives and its meaning.
fn readme_metric_rows() -> std::collections::HashMap<String, (Vec<String>, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table = readme.split("## Metrics").nth(1).unwrap().split("\n## ").next().unwrap();
    let backticked = |cell: &str| cell.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>();
    let mut rows = std::collections::HashMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').collect();
        for name in backticked(cells[1]) {
            rows.insert(name, (backticked(cells[3]), cells[4].to_string()));
        }
    }
    rows
}

/// Each series' labels are the ones its README row gives, and each value of a
/// label with a fixed set (a reason, a result, a transport...) is named in
/// that row: the values exist from the start, so the check sees them all.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_names_each_metrics_labels_and_their_values() {
    let rows = readme_metric_rows();
    let host = Host::start("prime", &[]);
    reqwest::get(host.url("/prime/7")).await.unwrap();
    let data = support::temp_dir("readme-labels");
    let todo = Host::start("todo", &["--data-dir", data.to_str().unwrap(), "--tcp-listen", "off"]);
    reqwest::get(todo.url("/api/todos")).await.unwrap();
    let (mut checked, mut unnamed) = (0, std::collections::BTreeSet::new());
    for exposition in [host.metrics().await.0, todo.metrics().await.0] {
        let families: Vec<&str> =
            exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        for line in exposition.lines().filter(|l| l.starts_with("scalelab_")) {
            let (series, _value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
            let family = families.iter().filter(|f| name.starts_with(**f)).max_by_key(|f| f.len()).unwrap();
            let (documented, meaning) = &rows[*family];
            let labels: Vec<(&str, &str)> = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| l.split_once('=').unwrap())
                .map(|(k, v)| (k, v.trim_matches('"')))
                .filter(|(k, _)| *k != "le")
                .collect();
            let mut names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
            let mut documented: Vec<&str> = documented.iter().map(String::as_str).collect();
            names.sort();
            documented.sort();
            assert_eq!(names, documented, "{family}: labels exposed against the README's");
            for (label, value) in labels.iter().filter(|(k, _)| !["guest", "sha256", "code"].contains(k)) {
                if !meaning.contains(&format!("`{value}`")) {
                    unnamed.insert(format!("{family}: {label}={value}"));
                }
                checked += 1;
            }
        }
    }
    assert!(unnamed.is_empty(), "label values the README does not name: {unnamed:#?}");
    assert!(checked >= 30, "only {checked} label values checked");
}

/// The prime guest is built without std (guests/prime/src/runtime/): it
/// imports the interfaces it calls and nothing of std's panic and print
/// machinery (environment, exit, stdin, stdout, terminals), since every
/// import costs the host work at each instantiation.
#[test]
fn the_prime_guest_imports_only_what_it_calls() {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, support::guests_dir().join("prime.wasm")).unwrap();
    let mut imports: Vec<String> = component.component_type().imports(&engine).map(|(name, _)| name.to_string()).collect();
    imports.sort();
    assert_eq!(
        imports,
        [
            "wasi:cli/stderr@0.2.12",
            "wasi:http/types@0.2.12",
            "wasi:io/error@0.2.12",
            "wasi:io/streams@0.2.12",
            "wasi:random/random@0.2.12",
        ]
    );
}
