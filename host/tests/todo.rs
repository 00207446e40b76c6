//! The `todo` guest on the host's SQL service, end to end: every route and
//! exact string, on the embedded SQLite and on a real Postgres server the
//! test starts itself (`support::postgres`); rows never lost under
//! concurrency; the pool's bound on Postgres connections; a Postgres outage
//! (fast 503s, unready, recovery without a restart); a swap away and back;
//! read-only, confined mounts; a clear error without a database.

mod support;

use std::time::{Duration, Instant};
use support::postgres::Postgres;
use support::{ConfigMapDir, Host, PATIENCE, json, serve_command_without_guest, temp_dir, wait_metric};

fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap()
}

async fn post(client: &reqwest::Client, host: &Host, task: &str) -> (u16, String) {
    let body = serde_json::json!({ "task": task }).to_string();
    let response = client.post(host.url("/api/todo")).header("content-type", "application/json").body(body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn todos(client: &reqwest::Client, host: &Host) -> Vec<String> {
    let response = client.get(host.url("/api/todos")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    body["todos"].as_array().unwrap().iter().map(|t| t["task"].as_str().unwrap().to_string()).collect()
}

/// Every route and exact string, the 140-byte boundary, newest-50 order,
/// CORS and a task that looks like SQL injection; the same on both backends.
async fn the_api_answers_as_the_original(host: &Host) {
    let client = client();
    let root = client.get(host.url("/")).send().await.unwrap();
    assert_eq!((root.status().as_u16(), root.headers()["content-type"].to_str().unwrap()), (200, "text/plain; charset=utf-8"));
    assert_eq!(root.text().await.unwrap(), "Ok");

    let at_limit = "é".repeat(70);
    assert_eq!(post(&client, host, &at_limit).await, (200, serde_json::json!({ "task": at_limit }).to_string()));
    let over = format!("{at_limit}a");
    assert_eq!(post(&client, host, &over).await, (400, "Todo's length: 141 is over the limit 140.".to_string()));
    let injection = "x'); DROP TABLE todo; --";
    assert_eq!(post(&client, host, injection).await.0, 200);
    for i in 0..60 {
        assert_eq!(post(&client, host, &format!("task {i}")).await.0, 200);
    }
    let listed = todos(&client, host).await;
    let expected: Vec<String> = (10..60).rev().map(|i| format!("task {i}")).collect();
    assert_eq!(listed, expected, "the newest 50, newest first");

    let wrong_type = client.post(host.url("/api/todo")).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(wrong_type.status(), 415);
    let malformed =
        client.post(host.url("/api/todo")).header("content-type", "application/json").body("{\"task\":").send().await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(malformed.text().await.unwrap().starts_with("The body is not valid JSON"));
    let missing = client.post(host.url("/api/todo")).header("content-type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(missing.status(), 422);
    assert!(missing.text().await.unwrap().contains("missing field `task`"));

    let cors = client.get(host.url("/api/todos")).header("origin", "http://front.example").send().await.unwrap();
    assert_eq!(cors.headers()["access-control-allow-origin"], "http://front.example");
    assert_eq!(cors.headers()["access-control-allow-credentials"], "true");
    let preflight = client
        .request(reqwest::Method::OPTIONS, host.url("/api/todo"))
        .header("origin", "http://front.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(preflight.headers()["access-control-allow-methods"], "GET, POST");
    assert_eq!(preflight.headers()["access-control-allow-headers"], "Accept, Content-Type");
    let photo = client.get(host.url("/api/daily_photo")).send().await.unwrap();
    assert_eq!(photo.status(), 404, "no photo directory is mounted");
}

/// Sends `n` POSTs at once; every one must succeed.
async fn concurrent_posts(host: &Host, n: usize, prefix: &str) {
    let client = client();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (client, url) = (client.clone(), host.url("/api/todo"));
            let body = serde_json::json!({ "task": format!("{prefix}{i}") }).to_string();
            tokio::spawn(async move {
                let response = client.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
}

fn sqlite_count(file: &std::path::Path, prefix: &str) -> i64 {
    let db = rusqlite::Connection::open(file).unwrap();
    db.query_row("SELECT count(*) FROM todo WHERE task LIKE ?1", [format!("{prefix}%")], |row| row.get(0)).unwrap()
}

fn todo_on(database: &str, extra: &[&str]) -> Host {
    let mut flags = vec!["--database", database, "--max-in-flight", "1024", "--tcp-listen", "off"];
    flags.extend_from_slice(extra);
    Host::start("todo", &flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_sqlite_every_route_answers_and_no_concurrent_insert_is_lost() {
    let dir = temp_dir("todo-sqlite");
    let file = dir.join("todo.db");
    let host = todo_on(&format!("sqlite:{}", file.display()), &[]);
    the_api_answers_as_the_original(&host).await;
    concurrent_posts(&host, 1000, "burst ").await;
    assert_eq!(sqlite_count(&file, "burst "), 1000);
    assert_eq!(sqlite_count(&file, "x'); DROP"), 1, "the injection attempt is stored verbatim");
    let metrics = host.metrics().await;
    let ok = metrics.value("scalelab_sql_queries_total", &[("guest", "todo"), ("backend", "sqlite"), ("result", "ok")]).unwrap();
    assert!(ok >= 1062.0, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_every_route_answers_no_insert_is_lost_and_connections_stay_within_the_pool() {
    let pg = Postgres::start("api");
    let password = pg.password_file();
    let host = todo_on(&pg.url(), &["--database-password-file", password.to_str().unwrap(), "--database-pool-size", "8"]);
    the_api_answers_as_the_original(&host).await;
    concurrent_posts(&host, 1000, "burst ").await;
    assert_eq!(pg.psql("SELECT count(*) FROM todo WHERE task LIKE 'burst %'"), "1000");
    assert_eq!(pg.psql("SELECT count(*) FROM todo WHERE task = 'x''); DROP TABLE todo; --'"), "1");

    // 256 requests at once, several rounds, while the connections are counted.
    let load = {
        let url = host.url("/api/todos");
        tokio::spawn(async move {
            let client = client();
            for _ in 0..4 {
                let batch: Vec<_> = (0..256).map(|_| tokio::spawn(client.get(&url).send())).collect();
                for request in batch {
                    assert_eq!(request.await.unwrap().unwrap().status(), 200);
                }
            }
        })
    };
    let mut most = 0;
    while !load.is_finished() {
        let open: u32 = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scalelab'").parse().unwrap();
        most = most.max(open);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.await.unwrap();
    assert!((1..=8).contains(&most), "{most} connections from the host, pool size 8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_outage_gives_fast_503s_and_unreadiness_and_the_pool_recovers_without_a_restart() {
    let pg = Postgres::start("outage");
    let password = pg.password_file();
    let host = todo_on(&pg.url(), &["--database-password-file", password.to_str().unwrap(), "--deadline", "2s"]);
    let client = client();
    assert_eq!(post(&client, &host, "before").await.0, 200);

    pg.stop();
    // The guest's own 503 (not the host's deadline error) shows that the call
    // ended before the deadline instead of hanging until it.
    for path in ["/api/todos", "/api/todo"] {
        let response = if path == "/api/todos" {
            client.get(host.url(path)).send().await.unwrap()
        } else {
            client
                .post(host.url(path))
                .header("content-type", "application/json")
                .body("{\"task\":\"during\"}")
                .send()
                .await
                .unwrap()
        };
        let (status, body) = json(response).await;
        assert_eq!(status, 503, "{body}");
        assert!(body["error"].as_str().unwrap().starts_with("database unavailable"), "{body}");
    }
    let unready = Instant::now();
    loop {
        let readyz = client.get(host.admin_url("/readyz")).send().await.unwrap();
        if readyz.status() == 503 {
            assert_eq!(readyz.text().await.unwrap(), "not ready: the database cannot be reached\n");
            break;
        }
        assert!(unready.elapsed() < PATIENCE, "readiness never turned false");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(client.get(host.admin_url("/healthz")).send().await.unwrap().status(), 200, "liveness is unaffected");

    pg.start_server();
    let back = Instant::now();
    while post(&client, &host, "after").await.0 != 200 {
        assert!(back.elapsed() < PATIENCE, "requests never succeeded again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while client.get(host.admin_url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(back.elapsed() < PATIENCE, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(todos(&client, &host).await[..2], ["after".to_string(), "before".to_string()]);
    assert_eq!(host.logs().iter().filter(|l| l["message"] == "ready to serve").count(), 1, "no restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_to_prime_and_back_keeps_every_row_and_the_pool() {
    let dir = temp_dir("todo-swap");
    let todo_config = format!("guest = \"todo\"\n[database]\nurl = \"sqlite:{}\"\n", dir.join("swap.db").display());
    let mut map = ConfigMapDir::new(&todo_config);
    let host =
        Host::start_command(serve_command_without_guest(&["--config", map.path().to_str().unwrap(), "--config-poll", "200ms"]));
    let client = client();
    for i in 0..5 {
        assert_eq!(post(&client, &host, &format!("kept {i}")).await.0, 200);
    }
    map.update(&format!("guest = \"prime\"\n[database]\nurl = \"sqlite:{}\"\n", dir.join("swap.db").display()));
    wait_metric(&host, "scalelab_guest_swaps_total", &[("result", "ok")], |v| v >= 1.0).await;
    assert_eq!(client.get(host.url("/prime/1000")).send().await.unwrap().text().await.unwrap(), r#"{"n":1000,"prime":7919}"#);
    map.update(&todo_config);
    wait_metric(&host, "scalelab_guest_swaps_total", &[("result", "ok")], |v| v >= 2.0).await;
    let expected: Vec<String> = (0..5).rev().map(|i| format!("kept {i}")).collect();
    assert_eq!(todos(&client, &host).await, expected);
    let pools = host.logs().iter().filter(|l| l["message"] == "database pool created (connections open on first use)").count();
    assert_eq!(pools, 1, "the same pool served both times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_are_read_only_and_nothing_else_is_visible() {
    let dir = temp_dir("mounts");
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::write(photos.join("daily_pic.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    std::fs::write(dir.join("secret"), b"outside the mount").unwrap();
    let config = format!("guest = \"fixture-http\"\n[mounts]\n\"/photos\" = \"{}\"\n", photos.display());
    let map = ConfigMapDir::new(&config);
    // A fresh instance per request: from the second on, each runs with the
    // WASI context of the one before, which must hold the same mount, still
    // read-only and confined.
    let host =
        Host::start_command(serve_command_without_guest(&["--config", map.path().to_str().unwrap(), "--instance-reuse", "1"]));
    let client = client();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let response = client.get(path).send().await.unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap())
        }
    };
    for _ in 0..3 {
        assert_eq!(
            get(host.url("/fs/read?/photos/daily_pic.jpg")).await,
            (200, b"\xff\xd8\xff\xe0 not really a jpeg"[..].into())
        );
    }
    assert_eq!(get(host.url("/fs/write?/photos/new.txt")).await.0, 403);
    assert_eq!(get(host.url("/fs/write?/photos/daily_pic.jpg")).await.0, 403);
    assert!(!photos.join("new.txt").exists());
    assert_eq!(std::fs::read(photos.join("daily_pic.jpg")).unwrap(), b"\xff\xd8\xff\xe0 not really a jpeg");
    let outside = format!("/fs/read?/photos/../{}", "secret");
    assert_eq!(get(host.url(&outside)).await.0, 404, "no way out of the mount");
    assert_eq!(get(host.url("/fs/read?/etc/passwd")).await.0, 404);
    assert_eq!(get(host.url(&format!("/fs/read?{}", dir.join("secret").display()))).await.0, 404);
    drop(host);

    // The todo guest serves the photo from its mount.
    let config = format!(
        "guest = \"todo\"\n[mounts]\n\"/photos\" = \"{}\"\n[database]\nurl = \"sqlite:{}\"\n",
        photos.display(),
        dir.join("t.db").display()
    );
    let map = ConfigMapDir::new(&config);
    let host = Host::start_command(serve_command_without_guest(&["--config", map.path().to_str().unwrap()]));
    let photo = client.get(host.url("/api/daily_photo")).send().await.unwrap();
    assert_eq!(photo.headers()["content-type"], "image/jpeg");
    assert_eq!(&photo.bytes().await.unwrap()[..], b"\xff\xd8\xff\xe0 not really a jpeg");
}

#[test]
fn a_missing_mount_directory_is_refused_with_the_file_and_key() {
    let map = ConfigMapDir::new("guest = \"todo\"\n[mounts]\n\"/photos\" = \"/nonexistent/photos\"\n");
    let output = serve_command_without_guest(&["--config", map.path().to_str().unwrap()]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[mounts] \\\"/photos\\\"") || stderr.contains("[mounts] \"/photos\""), "{stderr}");
    assert!(stderr.contains("must be an absolute path to an existing directory"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_the_guest_is_told_how_to_configure_one_and_the_host_stays_unready() {
    let host = Host::spawn(support::serve_command("todo", &["--database", "off", "--tcp-listen", "off"]));
    let failed = host.wait_log(PATIENCE, |l| l["message"] == "guest setup failed").expect("the setup failure is logged");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("no database") && error.contains("--database"), "{error}");
    let readyz = reqwest::get(host.admin_url("/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 503);
}

/// The SQL service reads every Postgres type it maps, and a result comes
/// out the same whole (`query`) and packed (`query-packed`, which the todo
/// guest uses): texts of every text type as the server sent them, blobs as
/// bytes, the size cap counted in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_every_column_type_reads_the_same_whole_and_packed() {
    use scalelab::runtime::bindings::sql::Cell;
    use scalelab::runtime::sql::{DatabaseConfig, Databases, Error, Packed, Target, Value, WholeRows};

    let pg = Postgres::start("types");
    let databases = Databases::new(&prometheus::Registry::new(), 100);
    let config = DatabaseConfig { target: Target::Postgres(pg.url()), password_file: Some(pg.password_file()), pool_size: 2 };
    let db = databases.get(&config).unwrap().expect("a Postgres database");
    let sql = "SELECT NULL::text AS n, true AS b, 2::int2 AS i2, -3::int4 AS i4, 4::int8 AS i8, 5::oid AS o, \
               1.5::float4 AS f4, -2.25::float8 AS f8, $1::text AS t, 'v'::varchar AS v, 'c'::char(2) AS c, \
               'nm'::name AS nm, '\\x00ff'::bytea AS by";
    let param = || vec![Value::Text("hé \"x\"".into())];

    let whole = db.query::<WholeRows>("test", None, sql.into(), param()).await.unwrap();
    assert_eq!(whole.columns, ["n", "b", "i2", "i4", "i8", "o", "f4", "f8", "t", "v", "c", "nm", "by"]);
    let texts = ["hé \"x\"", "v", "c ", "nm"].map(|t| Value::Text(t.into()));
    let mut expected = vec![Value::Null, Value::Integer(1), Value::Integer(2), Value::Integer(-3), Value::Integer(4)];
    expected.extend([Value::Integer(5), Value::Real(1.5), Value::Real(-2.25)]);
    expected.extend(texts);
    expected.push(Value::Blob(vec![0, 255]));
    assert_eq!(whole.rows, [expected]);

    let packed = db.query::<Packed>("test", None, sql.into(), param()).await.unwrap();
    assert_eq!(packed.columns, whole.columns);
    let mut cells = vec![Cell::Null, Cell::Integer(1), Cell::Integer(2), Cell::Integer(-3), Cell::Integer(4)];
    cells.extend([Cell::Integer(5), Cell::Real(1.5), Cell::Real(-2.25)]);
    cells.extend([Cell::Text(7), Cell::Text(1), Cell::Text(2), Cell::Text(2), Cell::Blob(2)]);
    assert_eq!(packed.cells, cells);
    assert_eq!(packed.data, ["hé \"x\"vc nm".as_bytes(), &[0, 255]].concat());

    // Rows of no columns (`SELECT FROM`): counted whole, nothing to pack.
    let none = "SELECT FROM generate_series(1, 3)";
    let whole = db.query::<WholeRows>("test", None, none.into(), Vec::new()).await.unwrap();
    assert_eq!((whole.columns.len(), whole.rows.len()), (0, 3));
    assert!(whole.rows.iter().all(Vec::is_empty));
    let packed = db.query::<Packed>("test", None, none.into(), Vec::new()).await.unwrap();
    assert!(packed.columns.is_empty() && packed.cells.is_empty() && packed.data.is_empty());

    // 101 bytes of text against a cap of 100, in both forms.
    let big = "SELECT repeat('x', 101)";
    let whole = db.query::<WholeRows>("test", None, big.into(), Vec::new()).await.unwrap_err();
    let packed = db.query::<Packed>("test", None, big.into(), Vec::new()).await.unwrap_err();
    for error in [whole, packed] {
        assert!(matches!(&error, Error::TooLarge(m) if m.contains("larger than 100 bytes")), "{error:?}");
    }

    // Rows are read as they come, so a result over the cap is left unread
    // from the row that crosses it: the connection goes back to the pool
    // with the rest of that result still arriving. Every connection of the
    // pool (2) must then answer the next statements with their own rows.
    let many = "SELECT repeat('y', 10) FROM generate_series(1, 10000)";
    // At once, so that each takes a connection of its own.
    let (first, second) = tokio::join!(
        db.query::<Packed>("test", None, many.into(), Vec::new()),
        db.query::<WholeRows>("test", None, many.into(), Vec::new())
    );
    assert!(matches!(first, Err(Error::TooLarge(_))), "{first:?}");
    assert!(matches!(second, Err(Error::TooLarge(_))), "{second:?}");
    for i in 0..6 {
        let rows = db.query::<WholeRows>("test", None, "SELECT $1::int8 AS i".into(), vec![Value::Integer(i)]).await.unwrap();
        assert_eq!(rows.rows, [[Value::Integer(i)]], "statement {i} after the abandoned results");
    }
}
