//! The todo API (the backend of the "todo" scaling scenario), compatible with
//! the original Rocket + Postgres service, its frontend and its locustfile:
//!
//! | request | response |
//! | --- | --- |
//! | `GET /` | 200 `text/plain` `Ok` |
//! | `GET /api/todos` | 200 `{"todos":[{"task":"..."},...]}`, newest first, at most 50 |
//! | `POST /api/todo` `{"task":"..."}` | 200 echoes `{"task":"..."}`; a task over 140 UTF-8 bytes: 400 `Todo's length: N is over the limit 140.` |
//! | `GET /api/daily_photo` | the mounted `daily_pic.jpg` as `image/jpeg`; 404 when absent |
//!
//! Bad requests to `POST /api/todo`: another content type 415, malformed JSON
//! 400, JSON without a string `task` 422, each `text/plain` naming the
//! problem. A database that cannot be reached: 503 `{"error":"..."}`.
//! CORS as the original (rocket_cors): any origin (echoed, with
//! credentials), methods GET and POST, headers Accept and Content-Type.
//!
//! The crate decides what a request asks for ([`route`]) and renders the
//! answers; the guest and the native server only run the SQL it names
//! ([`sql`]) and read the photo.

pub mod cors;
pub mod sql;

use serde::Deserialize;

/// Longest task accepted, in UTF-8 bytes.
pub const MAX_TASK_BYTES: usize = 140;

/// Tasks `GET /api/todos` returns at most.
pub const PAGE: usize = 50;

/// The photo `GET /api/daily_photo` serves, in the mounted photo directory.
pub const PHOTO_FILE: &str = "daily_pic.jpg";

/// What the service needs of a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub cors: cors::Asked<'a>,
}

/// What to do for a request.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Answer at once.
    Reply(Reply),
    /// Select the newest tasks ([`sql::SELECT_NEWEST`]), then [`list_reply`].
    List,
    /// Insert this task ([`sql::INSERT`]), then [`inserted_reply`].
    Insert(String),
    /// Read the photo, then [`photo_reply`].
    DailyPhoto,
}

/// A response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// Headers besides CORS ([`cors::headers`] adds those).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, headers: vec![("content-type", content_type.to_string())], body: body.into() }
    }

    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body.into())
    }
}

#[derive(Deserialize)]
struct NewTodo {
    task: String,
}

/// Decides what a request asks for.
pub fn route(request: &Request<'_>) -> Action {
    if request.method == "OPTIONS" {
        return Action::Reply(cors::preflight(&request.cors));
    }
    let allowed = match request.path {
        "/" | "/api/todos" | "/api/daily_photo" => "GET",
        "/api/todo" => "POST",
        _ => return Action::Reply(Reply::text(404, format!("No route for {} {}.", request.method, request.path))),
    };
    let method = if request.method == "HEAD" { "GET" } else { request.method };
    if method != allowed {
        let mut reply = Reply::text(405, format!("{} takes {allowed}, not {}.", request.path, request.method));
        reply.headers.push(("allow", allowed.to_string()));
        return Action::Reply(reply);
    }
    match request.path {
        "/" => Action::Reply(Reply::text(200, "Ok")),
        "/api/todos" => Action::List,
        "/api/daily_photo" => Action::DailyPhoto,
        _ => new_todo(request.content_type, request.body),
    }
}

/// Validates `POST /api/todo`.
fn new_todo(content_type: Option<&str>, body: &[u8]) -> Action {
    let media_type = content_type.and_then(|c| c.split(';').next()).map(str::trim);
    if !media_type.is_some_and(|m| m.eq_ignore_ascii_case("application/json")) {
        let got = content_type.map_or("none".to_string(), |c| format!("{c:?}"));
        return Action::Reply(Reply::text(415, format!("Content-Type must be application/json, got {got}.")));
    }
    let todo: NewTodo = match serde_json::from_slice(body) {
        Ok(todo) => todo,
        Err(e) if e.is_data() => {
            return Action::Reply(Reply::text(422, format!("The body must be {{\"task\": \"<text>\"}}: {e}.")));
        }
        Err(e) => return Action::Reply(Reply::text(400, format!("The body is not valid JSON: {e}."))),
    };
    let length = todo.task.len();
    if length > MAX_TASK_BYTES {
        return Action::Reply(Reply::text(400, format!("Todo's length: {length} is over the limit {MAX_TASK_BYTES}.")));
    }
    Action::Insert(todo.task)
}

/// `{"todos":[{"task":"..."},...]}` from tasks, newest first: the bytes
/// serde_json writes for it (a property test holds them equal), written
/// directly. Through serde_json's writer every brace, key and quote is a
/// write of its own, and in the wasm guest those writes were the largest part
/// of the route's own work (about 800 instructions a task).
pub fn list_reply<S: AsRef<str>>(tasks: &[S]) -> Reply {
    let mut body = Vec::with_capacity(12 + tasks.iter().map(|task| task.as_ref().len() + 12).sum::<usize>());
    body.extend_from_slice(b"{\"todos\":[");
    for (i, task) in tasks.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_task(&mut body, task.as_ref());
    }
    body.extend_from_slice(b"]}");
    Reply::new(200, "application/json", body)
}

/// The inserted task, echoed: `{"task":"..."}`.
pub fn inserted_reply(task: &str) -> Reply {
    let mut body = Vec::with_capacity(task.len() + 12);
    write_task(&mut body, task);
    Reply::new(200, "application/json", body)
}

/// `{"task":"..."}`, as serde_json writes it.
fn write_task(out: &mut Vec<u8>, task: &str) {
    out.extend_from_slice(b"{\"task\":");
    write_json_string(out, task);
    out.push(b'}');
}

/// A JSON string as serde_json writes one: `"` and `\\` escaped, the
/// control characters as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00xx`, everything
/// else (non-ASCII too) as it is. The runs between escapes are found a word
/// at a time (`crates/json-runs`): a loop step per byte was most of the wasm
/// guest's work at `GET /api/todos` (about 650 instructions per task of ten
/// letters, callgrind).
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = text.as_bytes();
    loop {
        let plain = json_runs::unescaped(rest);
        out.extend_from_slice(&rest[..plain]);
        let Some((&b, after)) = rest[plain..].split_first() else { break };
        rest = after;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]),
        }
    }
    out.push(b'"');
}

/// The photo, or 404.
pub fn photo_reply(photo: Option<Vec<u8>>) -> Reply {
    match photo {
        Some(bytes) => Reply::new(200, "image/jpeg", bytes),
        None => Reply::text(404, "No daily photo today."),
    }
}

/// The database failed: 503 when it cannot be reached or did not answer in
/// time (the pod is unready meanwhile), 500 for anything else.
pub fn database_error_reply(unavailable: bool, message: &str) -> Reply {
    let status = if unavailable { 503 } else { 500 };
    let mut reply = Reply::new(status, "application/json", serde_json::json!({ "error": message }).to_string());
    if unavailable {
        reply.headers.push(("retry-after", "1".into()));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API's JSON as serde_json writes it, for comparison.
    #[derive(serde::Serialize)]
    struct Task<'a> {
        task: &'a str,
    }

    #[derive(serde::Serialize)]
    struct Todos<'a> {
        todos: Vec<Task<'a>>,
    }

    proptest::proptest! {
        /// Written directly, the list and the echo are serde_json's bytes,
        /// for any text: quotes, backslashes, control characters, non-ASCII.
        #[test]
        fn replies_are_serde_jsons_bytes(tasks in proptest::collection::vec("(\\PC|[\"\\\\\\x00-\\x1f\\x7f])*", 0..6)) {
            let expected = serde_json::to_vec(&Todos { todos: tasks.iter().map(|task| Task { task }).collect() }).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(list_reply(&tasks).body).unwrap(), String::from_utf8(expected).unwrap());
            for task in &tasks {
                let expected = serde_json::to_vec(&Task { task }).unwrap();
                proptest::prop_assert_eq!(inserted_reply(task).body, expected);
            }
        }
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_json_does() {
        let text: String = (0u8..0x80).map(char::from).collect();
        assert_eq!(list_reply(&[&text]).body, serde_json::to_vec(&Todos { todos: vec![Task { task: &text }] }).unwrap());
    }

    fn post(content_type: Option<&str>, body: &str) -> Action {
        route(&Request { method: "POST", path: "/api/todo", content_type, body: body.as_bytes(), ..Request::default() })
    }

    fn reply_text(action: Action) -> (u16, String) {
        match action {
            Action::Reply(reply) => (reply.status, String::from_utf8(reply.body).unwrap()),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn the_limit_is_140_utf8_bytes_not_characters() {
        let json = Some("application/json");
        let at_limit = "é".repeat(70);
        assert_eq!(at_limit.len(), 140);
        assert_eq!(post(json, &format!(r#"{{"task":"{at_limit}"}}"#)), Action::Insert(at_limit.clone()));
        let over = format!("{at_limit}a");
        assert_eq!(
            reply_text(post(json, &format!(r#"{{"task":"{over}"}}"#))),
            (400, "Todo's length: 141 is over the limit 140.".into())
        );
        assert_eq!(post(Some("application/json; charset=utf-8"), r#"{"task":"x","extra":1}"#), Action::Insert("x".into()));
    }

    #[test]
    fn bad_bodies_and_content_types_say_what_is_wrong() {
        let json = Some("application/json");
        let (status, text) = reply_text(post(json, "{not json"));
        assert_eq!(status, 400);
        assert!(text.starts_with("The body is not valid JSON"), "{text}");
        let (status, text) = reply_text(post(json, r#"{"title":"x"}"#));
        assert_eq!(status, 422);
        assert!(text.contains("missing field `task`"), "{text}");
        assert_eq!(reply_text(post(json, r#"{"task":5}"#)).0, 422);
        let (status, text) = reply_text(post(Some("text/plain"), r#"{"task":"x"}"#));
        assert_eq!((status, text.as_str()), (415, r#"Content-Type must be application/json, got "text/plain"."#));
        assert_eq!(reply_text(post(None, r#"{"task":"x"}"#)).0, 415);
    }

    #[test]
    fn routes_and_methods() {
        let get = |path| route(&Request { method: "GET", path, ..Request::default() });
        assert_eq!(reply_text(get("/")), (200, "Ok".into()));
        assert_eq!(get("/api/todos"), Action::List);
        assert_eq!(get("/api/daily_photo"), Action::DailyPhoto);
        assert_eq!(reply_text(get("/nope")).0, 404);
        let Action::Reply(reply) = get("/api/todo") else { panic!() };
        assert_eq!((reply.status, reply.headers[1].clone()), (405, ("allow", "POST".to_string())));
    }

    #[test]
    fn lists_render_newest_first_as_given() {
        let reply = list_reply(&["b", "a \"quoted\""]);
        assert_eq!(String::from_utf8(reply.body).unwrap(), r#"{"todos":[{"task":"b"},{"task":"a \"quoted\""}]}"#);
        assert_eq!(String::from_utf8(list_reply::<&str>(&[]).body).unwrap(), r#"{"todos":[]}"#);
        assert_eq!(String::from_utf8(inserted_reply("x").body).unwrap(), r#"{"task":"x"}"#);
        assert_eq!(photo_reply(None).status, 404);
        assert_eq!(database_error_reply(true, "down").status, 503);
    }
}
