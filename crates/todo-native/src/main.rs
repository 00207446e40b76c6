//! `todo-native`: the todo API served natively: the same routing code
//! (`todo-api`), HTTP stack (hyper-util's auto builder), worker count and
//! Postgres pool (deadpool-postgres, statements prepared once per connection)
//! as `scalelab serve --guest todo --database postgres://...`. It is what the
//! wasm path is measured against by `cargo xtask bench-todo`.
//!
//! Usage: `todo-native ADDR POSTGRES_URL POOL_SIZE [PHOTO_DIR]`; creates the
//! table if needed and prints `listening on ADDR` on stdout once bound.
//! Exits with success on SIGINT, as a return from `main` (an instrumented
//! build then writes its profile: see `xtask/src/pgo.rs`).

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use todo_api::{Action, Reply, cors};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Service {
    pool: Pool,
    photo: PathBuf,
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, url, pool_size, rest @ ..] = args.as_slice() else {
        return Err("usage: todo-native ADDR POSTGRES_URL POOL_SIZE [PHOTO_DIR]".into());
    };
    let photo = PathBuf::from(rest.first().map_or("/photos", String::as_str)).join(todo_api::PHOTO_FILE);
    let manager =
        Manager::from_config(url.parse()?, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?;
    runtime.block_on(async {
        let pool = Pool::builder(manager).max_size(pool_size.parse()?).runtime(Runtime::Tokio1).build()?;
        let client = pool.get().await?;
        client
            .batch_execute(&format!("BEGIN; {}; {}; COMMIT", todo_api::sql::LOCK_POSTGRES, todo_api::sql::CREATE_POSTGRES))
            .await?;
        drop(client);
        tokio::select! {
            // The handler is in place before the server says it listens.
            biased;
            interrupted = tokio::signal::ctrl_c() => Ok(interrupted?),
            served = serve(addr, Arc::new(Service { pool, photo })) => served,
        }
    })
}

async fn serve(addr: &str, service: Arc<Service>) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let answer = service_fn(move |request| {
            let service = service.clone();
            async move { Ok::<_, Infallible>(answer(&service, request).await) }
        });
        tokio::spawn(builder.serve_connection(TokioIo::new(stream), answer).into_owned());
    }
}

async fn answer(service: &Service, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let body = Limited::new(body, 1 << 20).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let api_request = todo_api::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        content_type: header("content-type"),
        body: &body,
        cors: cors::Asked {
            origin: header("origin"),
            method: header("access-control-request-method"),
            headers: header("access-control-request-headers"),
        },
    };
    let reply = match todo_api::route(&api_request) {
        Action::Reply(reply) => reply,
        Action::List => match list(&service.pool).await {
            Ok(tasks) => todo_api::list_reply(&tasks),
            Err(e) => todo_api::database_error_reply(true, &e.to_string()),
        },
        Action::Insert(task) => match insert(&service.pool, &task).await {
            Ok(()) => todo_api::inserted_reply(&task),
            Err(e) => todo_api::database_error_reply(true, &e.to_string()),
        },
        Action::DailyPhoto => todo_api::photo_reply(tokio::fs::read(&service.photo).await.ok()),
    };
    respond(reply, header("origin"))
}

async fn list(pool: &Pool) -> Result<Vec<String>, Error> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(todo_api::sql::SELECT_NEWEST).await?;
    Ok(client.query(&statement, &[]).await?.iter().map(|row| row.get(0)).collect())
}

async fn insert(pool: &Pool, task: &str) -> Result<(), Error> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(todo_api::sql::INSERT).await?;
    client.execute(&statement, &[&task]).await?;
    Ok(())
}

fn respond(reply: Reply, origin: Option<&str>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status).expect("valid status");
    for (name, value) in reply.headers.into_iter().chain(cors::headers(origin)) {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(name, value);
        }
    }
    response
}
