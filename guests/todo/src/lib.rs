//! The `todo` guest: the todo backend of the "todo" scaling scenario, on the
//! host's SQL service (`wit/sql.wit`), so the same component runs on the
//! embedded SQLite and on a pooled Postgres.
//!
//! The API, its validation and its SQL live in `crates/todo-api` (shared with
//! the native reference server); this file runs the statements it names, reads
//! the daily photo from the read-only directory the host mounts (`/photos`,
//! or `$TODO_PHOTO_DIR`), and creates the table in `setup`, which the host
//! calls before the guest serves.

mod bindings {
    // Shares guest-http's wasi:http bindings (see crates/guest-http).
    guest_http::generate!("scalelab:guests/sql-http-guest");
}

use bindings::exports::scalelab::guests::setup;
use bindings::exports::wasi::http::incoming_handler;
use bindings::scalelab::guests::sql::{self, Backend, Cell, Statement, Value};
use guest_http::Response;
use guest_http::wasi::http::types::{IncomingRequest, ResponseOutparam};
use todo_api::{Action, Reply, cors};

struct Todo;

impl setup::Guest for Todo {
    /// Creates the table, idempotently; on Postgres under an advisory lock,
    /// since several pods may start at once.
    fn setup() -> Result<(), String> {
        let statements = match sql::get_backend().map_err(describe)? {
            Backend::Sqlite => vec![statement(todo_api::sql::CREATE_SQLITE)],
            Backend::Postgres => vec![statement(todo_api::sql::LOCK_POSTGRES), statement(todo_api::sql::CREATE_POSTGRES)],
        };
        sql::transaction(&statements).map(drop).map_err(describe)
    }
}

impl incoming_handler::Guest for Todo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        // The head in one host call (`wit/request.wit`) rather than wasi:http's
        // five; freed by this code alone, so it may come from the request arena.
        let head = guest_alloc::host_lists_in_arena(|| bindings::scalelab::guests::request::head(&request));
        let [origin, content_type, asked_method, asked_headers] = guest_http::pick(
            head.headers,
            ["origin", "content-type", "access-control-request-method", "access-control-request-headers"],
        );
        let asked = cors::Asked { origin: origin.as_deref(), method: asked_method.as_deref(), headers: asked_headers.as_deref() };
        let reply = serve(&request, &head.method, &head.path_with_query, content_type.as_deref(), asked);
        let mut response = Response { status: reply.status, headers: Vec::new(), body: reply.body };
        for (name, value) in reply.headers.into_iter().chain(cors::headers(origin.as_deref())) {
            response = response.header(name, value);
        }
        // Whole: one host call (`wit/response.wit`) rather than wasi:http's ten.
        bindings::scalelab::guests::response::send(response_out, response.status, &response.headers, &response.body);
    }
}

fn serve(
    request: &IncomingRequest,
    method: &str,
    path_with_query: &str,
    content_type: Option<&str>,
    cors: cors::Asked<'_>,
) -> Reply {
    let path = path_with_query.split('?').next().unwrap_or("/");
    // Whole, in one host call (`wit/request.wit`); freed by this code alone.
    let body = if method == "POST" {
        guest_alloc::host_lists_in_arena(|| bindings::scalelab::guests::request::body(request))
    } else {
        Vec::new()
    };
    let api_request = todo_api::Request { method, path, content_type, body: &body, cors };
    match todo_api::route(&api_request) {
        Action::Reply(reply) => reply,
        // Packed: four allocations for the whole result rather than two per
        // row. Freed by this code alone: they may come from the request arena.
        Action::List => match guest_alloc::host_lists_in_arena(|| sql::query_packed(todo_api::sql::SELECT_NEWEST, &[])) {
            Ok(rows) => todo_api::list_reply(&first_texts(&rows)),
            Err(e) => failed(e),
        },
        Action::Insert(task) => match sql::execute(todo_api::sql::INSERT, &[Value::Text(task.clone())]) {
            Ok(_) => todo_api::inserted_reply(&task),
            Err(e) => failed(e),
        },
        Action::DailyPhoto => todo_api::photo_reply(std::fs::read(photo_path()).ok()),
    }
}

/// Where the photo is: `$TODO_PHOTO_DIR/daily_pic.jpg`, else `/photos/daily_pic.jpg`.
fn photo_path() -> String {
    let dir = std::env::var("TODO_PHOTO_DIR").unwrap_or_else(|_| "/photos".to_string());
    format!("{}/{}", dir.trim_end_matches('/'), todo_api::PHOTO_FILE)
}

fn failed(error: sql::Error) -> Reply {
    let unavailable = matches!(error, sql::Error::Connection(_) | sql::Error::Timeout(_) | sql::Error::NotConfigured(_));
    todo_api::database_error_reply(unavailable, &describe(error))
}

fn describe(error: sql::Error) -> String {
    match error {
        sql::Error::NotConfigured(m) => format!("no database: {m}"),
        sql::Error::Connection(m) => format!("database unavailable: {m}"),
        sql::Error::Constraint(m) => format!("refused by the database: {m}"),
        sql::Error::Syntax(m) => format!("invalid statement: {m}"),
        sql::Error::Timeout(m) => format!("database timeout: {m}"),
        sql::Error::TooLarge(m) => format!("result too large: {m}"),
        sql::Error::Other(m) => format!("database error: {m}"),
    }
}

fn statement(sql: &str) -> Statement {
    Statement { sql: sql.to_string(), params: Vec::new() }
}

/// The first column of each row of a packed result, where it is a text.
///
/// `data` is checked as UTF-8 once, whole, rather than once per text: when
/// it holds texts alone it is valid, and a text cut from it at character
/// boundaries is valid too (`str::get` checks the boundaries). Fifty checks
/// of ten bytes cost the guest some 8,000 instructions at `GET /api/todos`,
/// one of 500 (ASCII, a word at a time) a fraction of that.
fn first_texts(rows: &sql::PackedRows) -> Vec<&str> {
    let whole = std::str::from_utf8(&rows.data).ok();
    let text = |range: std::ops::Range<usize>| match whole {
        Some(whole) => whole.get(range),
        None => rows.data.get(range).and_then(|bytes| std::str::from_utf8(bytes).ok()),
    };
    let width = rows.columns.len().max(1);
    let mut texts = Vec::with_capacity(rows.cells.len() / width);
    let mut offset = 0;
    for (i, cell) in rows.cells.iter().enumerate() {
        let len = match *cell {
            Cell::Text(len) | Cell::Blob(len) => len as usize,
            Cell::Null | Cell::Integer(_) | Cell::Real(_) => 0,
        };
        let range = offset..offset + len;
        offset += len;
        if i % width == 0
            && let Cell::Text(_) = cell
            && let Some(text) = text(range)
        {
            texts.push(text);
        }
    }
    texts
}

bindings::export!(Todo with_types_in bindings);

// What a call allocates comes from a request arena (crates/guest-alloc) while
// it fits, the rest from wasi-libc's `malloc`.
guest_alloc::std_global_allocator!(256 * 1024);
