//! The routes: which path and methods reach which view, and the views.

use crate::cookies;
use crate::documents;
use crate::inspect::Inspected;
use crate::json::{self, Json};
use crate::random::PythonRandom;
use crate::reply::{self, HTML, Reply};
use crate::url::{self, decoded_path};
use crate::{Action, Context, Request};
use std::io::Write;
use std::time::Duration;

/// The methods of routes that take any body.
const ANY: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "TRACE"];
const GET: &[&str] = &["GET"];

/// Largest `/bytes/{n}`, and most `/stream/{n}` lines, and longest `/delay/{n}`.
const MAX_BYTES: u64 = 100 * 1024;
const MAX_LINES: u64 = 100;
const MAX_DELAY: f64 = 10.0;

/// The fields each inspecting view reports (httpbin's `get_dict` keys).
const GET_KEYS: &[&str] = &["url", "args", "headers", "origin"];
const BODY_KEYS: &[&str] = &["url", "args", "form", "data", "origin", "headers", "files", "json"];
const ANYTHING_KEYS: &[&str] = &["url", "args", "headers", "origin", "method", "form", "data", "files", "json"];
const DELAY_KEYS: &[&str] = &["url", "args", "form", "data", "origin", "headers", "files"];

/// A matched route, with what its path carried.
enum View {
    Index,
    Uuid,
    Get,
    Body,
    Anything,
    Headers,
    Ip,
    UserAgent,
    Status(String),
    Delay(String),
    Bytes(u64),
    Stream(u64),
    Base64(String),
    Gzip,
    Cookies,
    SetCookies,
    SetCookie(String, String),
    DeleteCookies,
    Redirect(u64),
    RelativeRedirect(u64),
    AbsoluteRedirect(u64),
    ResponseHeaders,
    BasicAuth(String, String),
    Cache,
    CacheFor(u64),
    Etag(String),
    Document(&'static str, &'static str),
    Json,
}

/// Answers one request: finds its route (404 when none, 405 when the
/// method is not the route's), answers `OPTIONS` itself, then adds CORS
/// headers to whatever the view answered.
pub fn route(request: &Request<'_>, context: &mut Context<'_>) -> Action {
    let inspected = Inspected::new(request);
    let mut action = match find(&decoded_path(inspected.path)) {
        None => Action::Reply(reply::error(404)),
        Some((methods, view)) => {
            let method = if request.method == "HEAD" { "GET" } else { request.method };
            if request.method == "OPTIONS" {
                Action::Reply(Reply::new(200, HTML, "").header("Allow", allowed(methods)))
            } else if !methods.contains(&method) {
                Action::Reply(reply::error(405).header("Allow", allowed(methods)))
            } else {
                answer(view, &inspected, context)
            }
        }
    };
    let (Action::Reply(reply) | Action::Delay(_, reply) | Action::Stream(reply, _)) = &mut action;
    cors(reply, &inspected);
    action
}

/// Whether answering this request reads its body: only the views that echo
/// it do (`/post`, `/put`, `/patch`, `/delete`, `/anything`, `/delay`). Every
/// other request is answered alike with an empty body, so a guest need not
/// read it (in wasi:http that is five host calls: consume, stream, read, drop,
/// finish).
pub fn reads_body(method: &str, path_with_query: &str) -> bool {
    let (path, _) = url::split_query(path_with_query);
    method != "OPTIONS" && matches!(find(&decoded_path(path)), Some((_, View::Body | View::Anything | View::Delay(_))))
}

/// Flask's `Allow`: the route's methods, `HEAD` with `GET`, and `OPTIONS`.
fn allowed(methods: &[&str]) -> String {
    let mut all: Vec<&str> = methods.to_vec();
    if methods.contains(&"GET") {
        all.push("HEAD");
    }
    all.push("OPTIONS");
    all.join(", ")
}

/// httpbin's `set_cors_headers`, on every response.
fn cors(reply: &mut Reply, request: &Inspected<'_>) {
    let origin = request.header("Origin").unwrap_or("*").to_string();
    reply.headers.push(("Access-Control-Allow-Origin".into(), origin));
    reply.headers.push(("Access-Control-Allow-Credentials".into(), "true".into()));
    if request.request.method == "OPTIONS" {
        reply.headers.push(("Access-Control-Allow-Methods".into(), "GET, POST, PUT, DELETE, PATCH, OPTIONS".into()));
        reply.headers.push(("Access-Control-Max-Age".into(), "3600".into()));
        if let Some(asked) = request.header("Access-Control-Request-Headers") {
            reply.headers.push(("Access-Control-Allow-Headers".into(), asked.to_string()));
        }
    }
}

/// The route of a (decoded) path, and its methods.
fn find(path: &str) -> Option<(&'static [&'static str], View)> {
    let segments = url::segments(path.strip_prefix('/')?);
    let int = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().unwrap_or(u64::MAX));
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(match segments.as_slice() {
        [""] => (GET, View::Index),
        ["uuid"] => (GET, View::Uuid),
        ["get"] => (GET, View::Get),
        ["post"] => (&["POST"], View::Body),
        ["put"] => (&["PUT"], View::Body),
        ["patch"] => (&["PATCH"], View::Body),
        ["delete"] => (&["DELETE"], View::Body),
        ["anything"] => (ANY, View::Anything),
        ["anything", rest @ ..] if rest.iter().any(|s| !s.is_empty()) => (ANY, View::Anything),
        ["headers"] => (GET, View::Headers),
        ["ip"] => (GET, View::Ip),
        ["user-agent"] => (GET, View::UserAgent),
        ["status", codes] => (ANY, View::Status(text(codes)?)),
        ["delay", delay] => (ANY, View::Delay(text(delay)?)),
        ["bytes", n] => (GET, View::Bytes(int(n)?)),
        ["stream", n] => (GET, View::Stream(int(n)?)),
        ["base64", value] => (GET, View::Base64(text(value)?)),
        ["gzip"] => (GET, View::Gzip),
        ["cookies"] => (GET, View::Cookies),
        ["cookies", "set"] => (GET, View::SetCookies),
        ["cookies", "set", name, value] => (GET, View::SetCookie(text(name)?, text(value)?)),
        ["cookies", "delete"] => (GET, View::DeleteCookies),
        ["redirect", n] => (GET, View::Redirect(int(n)?)),
        ["relative-redirect", n] => (GET, View::RelativeRedirect(int(n)?)),
        ["absolute-redirect", n] => (GET, View::AbsoluteRedirect(int(n)?)),
        ["response-headers"] => (&["GET", "POST"], View::ResponseHeaders),
        ["basic-auth", user, passwd] => (GET, View::BasicAuth(text(user)?, text(passwd)?)),
        ["cache"] => (GET, View::Cache),
        ["cache", n] => (GET, View::CacheFor(int(n)?)),
        ["etag", etag] => (GET, View::Etag(text(etag)?)),
        ["robots.txt"] => (GET, View::Document("text/plain", documents::ROBOTS)),
        ["deny"] => (GET, View::Document("text/plain", documents::DENY)),
        ["html"] => (GET, View::Document(HTML, documents::HTML_PAGE)),
        ["xml"] => (GET, View::Document("application/xml", documents::XML)),
        ["encoding", "utf8"] => (GET, View::Document(HTML, documents::UTF8)),
        ["json"] => (GET, View::Json),
        _ => return None,
    })
}

fn answer(view: View, request: &Inspected<'_>, context: &mut Context<'_>) -> Action {
    let dict = |keys: &[&str]| Json::Object(request.dict(keys));
    let reply = match view {
        View::Index => Reply::new(200, HTML, documents::INDEX),
        View::Uuid => uuid_reply(uuid4(context)),
        View::Get => Reply::json(&dict(GET_KEYS)),
        View::Body => Reply::json(&dict(BODY_KEYS)),
        View::Anything => Reply::json(&dict(ANYTHING_KEYS)),
        View::Headers => Reply::json(&dict(&["headers"])),
        View::Ip => Reply::json(&Json::object([("origin", request.origin())])),
        View::UserAgent => match request.header("User-Agent") {
            Some(agent) => Reply::json(&Json::object([("user-agent", Json::str(agent))])),
            None => reply::error(500),
        },
        View::Status(codes) => reply::status_codes(&codes, context.uniform()),
        View::Delay(delay) => return delay_view(&delay, request),
        View::Bytes(n) => bytes(n, request, context),
        View::Stream(n) => return stream(n, request),
        View::Base64(value) => match python_b64decode(&value).and_then(|b| String::from_utf8(b).ok()) {
            Some(text) => Reply::new(200, HTML, text),
            None => Reply::new(200, HTML, "Incorrect Base64 data try: SFRUUEJJTiBpcyBhd2Vzb21l"),
        },
        View::Gzip => gzip(request),
        View::Cookies => {
            let show_env = request.arg("show_env").is_some();
            let cookies = cookies::parse(request.header("Cookie"), show_env);
            Reply::json(&Json::object([("cookies", Json::object(cookies.into_iter().map(|(n, v)| (n, Json::String(v)))))]))
        }
        View::SetCookies => first_args(request).into_iter().fold(reply::redirect("/cookies"), |reply, (name, value)| {
            reply.header("Set-Cookie", cookies::set(&name, &value, request.server_scheme() == "https"))
        }),
        View::SetCookie(name, value) => {
            reply::redirect("/cookies").header("Set-Cookie", cookies::set(&name, &value, request.server_scheme() == "https"))
        }
        View::DeleteCookies => first_args(request)
            .into_iter()
            .fold(reply::redirect("/cookies"), |reply, (name, _)| reply.header("Set-Cookie", cookies::delete(&name))),
        View::Redirect(n) => redirect(n, request),
        View::RelativeRedirect(0) | View::AbsoluteRedirect(0) => reply::error(500),
        View::RelativeRedirect(n) => {
            let location = if n == 1 { "/get".to_string() } else { format!("/relative-redirect/{}", n - 1) };
            Reply::new(302, HTML, "").header("Location", location)
        }
        View::AbsoluteRedirect(n) => reply::redirect(&absolute_target(n, request)),
        View::ResponseHeaders => response_headers(request),
        View::BasicAuth(user, passwd) => {
            if basic_auth(request.header("Authorization")) == Some((user.clone(), passwd)) {
                Reply::json(&Json::object([("authenticated", Json::Bool(true)), ("user", Json::String(user))]))
            } else {
                reply::status(401)
            }
        }
        View::Cache => {
            let conditional = [request.header("If-Modified-Since"), request.header("If-None-Match")];
            if conditional.iter().flatten().any(|v| !v.is_empty()) {
                reply::status(304)
            } else {
                Reply::json(&dict(GET_KEYS))
                    .header("Last-Modified", httpdate::fmt_http_date((context.now)()))
                    .header("ETag", uuid4(context).simple().to_string())
            }
        }
        View::CacheFor(n) => Reply::json(&dict(GET_KEYS)).header("Cache-Control", format!("public, max-age={n}")),
        View::Etag(etag) => etag_view(&etag, request),
        View::Document(content_type, body) => Reply::new(200, content_type, body),
        View::Json => Reply::json(&sample_json()),
    };
    Action::Reply(reply)
}

/// `/uuid`'s answer, written as it is (a uuid needs no escaping): the same
/// bytes as `Reply::json` of `{"uuid": ...}`, without building, sorting and
/// walking a JSON value for the scenario's one route.
fn uuid_reply(uuid: uuid::Uuid) -> Reply {
    let mut buffer = uuid::Uuid::encode_buffer();
    let uuid = uuid.hyphenated().encode_lower(&mut buffer);
    let mut body = String::with_capacity(52);
    body.push_str("{\n  \"uuid\": \"");
    body.push_str(uuid);
    body.push_str("\"\n}\n");
    Reply::new(200, "application/json", body)
}

fn uuid4(context: &mut Context<'_>) -> uuid::Uuid {
    uuid::Builder::from_random_bytes(context.bytes()).into_uuid()
}

/// `dict(request.args.items())`: the first value of each argument.
fn first_args(request: &Inspected<'_>) -> Vec<(String, String)> {
    let mut first: Vec<(String, String)> = Vec::new();
    for (name, value) in &request.args {
        if !first.iter().any(|(n, _)| n == name) {
            first.push((name.clone(), value.clone()));
        }
    }
    first
}

/// `/delay/{n}`: Python's `float(n)`, at most 10 s; a value `time.sleep`
/// refuses (negative, not a number) is a 500 as in Python.
fn delay_view(delay: &str, request: &Inspected<'_>) -> Action {
    match delay.trim().parse::<f64>() {
        Ok(seconds) if seconds >= 0.0 => {
            let seconds = seconds.min(MAX_DELAY);
            Action::Delay(Duration::from_secs_f64(seconds), Reply::json(&Json::Object(request.dict(DELAY_KEYS))))
        }
        _ => Action::Reply(reply::error(500)),
    }
}

/// `/bytes/{n}`: random bytes; with `seed` (any case, last one wins), the
/// bytes CPython's `random.seed(seed)` then `randint(0, 255)` give.
fn bytes(n: u64, request: &Inspected<'_>, context: &mut Context<'_>) -> Reply {
    let n = n.min(MAX_BYTES) as usize;
    let seed = request.args.iter().rev().find(|(name, _)| name.eq_ignore_ascii_case("seed")).map(|(_, v)| v.as_str());
    let body: Vec<u8> = match seed {
        Some(seed) => match python_int(seed) {
            Some(seed) => {
                let mut random = PythonRandom::seeded(seed);
                (0..n).map(|_| random.byte()).collect()
            }
            None => return reply::error(500),
        },
        None => (0..n).map(|_| (context.random)() as u8).collect(),
    };
    Reply::new(200, "application/octet-stream", body)
}

/// Python's `int(text)`: surrounding spaces, a sign, digits with single
/// underscores between them.
fn python_int(text: &str) -> Option<i128> {
    let text = text.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    text.replace('_', "").parse().ok()
}

/// `/stream/{n}`: n lines (at most 100) of `json.dumps` of the request,
/// each with its `id`.
fn stream(n: u64, request: &Inspected<'_>) -> Action {
    let base = request.dict(GET_KEYS);
    let lines = (0..n.min(MAX_LINES))
        .map(|id| {
            let mut line = base.clone();
            line.push(("id".into(), Json::int(id as i64)));
            let mut text = json::compact(&Json::Object(line));
            text.push('\n');
            text.into_bytes()
        })
        .collect();
    Action::Stream(Reply::bare(200, &[("Content-Type", "application/json")], ""), lines)
}

/// `/gzip`: the request's origin, headers and method, gzip-encoded.
fn gzip(request: &Inspected<'_>) -> Reply {
    let mut fields = request.dict(&["origin", "headers"]);
    fields.push(("method".into(), Json::str(request.request.method)));
    fields.push(("gzipped".into(), Json::Bool(true)));
    let body = json::pretty(&Json::Object(fields));
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(4));
    let compressed = encoder.write_all(body.as_bytes()).and_then(|()| encoder.finish());
    match compressed {
        Ok(compressed) => Reply::new(200, "application/json", compressed).header("Content-Encoding", "gzip"),
        Err(_) => reply::error(500),
    }
}

/// `/redirect/{n}`: to `/get` at the last hop, relative unless `?absolute=true`.
fn redirect(n: u64, request: &Inspected<'_>) -> Reply {
    let absolute = request.arg("absolute").is_some_and(|a| a.eq_ignore_ascii_case("true"));
    match (n, absolute) {
        (0, _) => reply::error(500),
        (1, false) => reply::redirect("/get"),
        (_, false) => reply::redirect(&format!("/relative-redirect/{}", n - 1)),
        (_, true) => reply::redirect(&absolute_target(n, request)),
    }
}

/// Flask's `url_for(..., _external=True)` of the next absolute hop.
fn absolute_target(n: u64, request: &Inspected<'_>) -> String {
    let base = format!("{}://{}", request.server_scheme(), request.host());
    if n == 1 { format!("{base}/get") } else { format!("{base}/absolute-redirect/{}", n - 1) }
}

/// `/response-headers`: the query's pairs as response headers, and the
/// response's own headers as the body, `Content-Length` included, computed
/// until the body's length stops changing.
fn response_headers(request: &Inspected<'_>) -> Reply {
    let args: Vec<(String, String)> = request.args.iter().filter(|(name, value)| valid_header(name, value)).cloned().collect();
    let as_json = |headers: &[(String, String)]| {
        let mut object: Vec<(String, Json)> = Vec::new();
        for (name, _) in headers {
            if object.iter().any(|(n, _)| n == name) {
                continue;
            }
            let mut values: Vec<Json> =
                headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| Json::str(v.clone())).collect();
            let value = if values.len() == 1 { values.remove(0) } else { Json::List(values) };
            object.push((name.clone(), value));
        }
        json::pretty(&Json::Object(object))
    };
    let mut body = String::new();
    loop {
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Content-Length".to_string(), body.len().to_string()),
        ];
        headers.extend(args.iter().cloned());
        let next = as_json(&headers);
        if next == body {
            break;
        }
        body = next;
    }
    args.into_iter().fold(Reply::new(200, "application/json", body), |reply, (name, value)| reply.header(&name, value))
}

/// Whether HTTP can carry the pair as a header (others are left out).
fn valid_header(name: &str, value: &str) -> bool {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !name.is_empty() && name.bytes().all(token) && value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The user and password of a `Basic` Authorization header.
fn basic_auth(header: Option<&str>) -> Option<(String, String)> {
    let (scheme, credentials) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = python_b64decode(credentials.trim())?;
    let decoded = String::from_utf8_lossy(&decoded);
    let (user, passwd) = decoded.split_once(':')?;
    Some((user.to_string(), passwd.to_string()))
}

/// `/etag/{etag}`: 304 when `If-None-Match` names it (or `*`), 412 when
/// `If-Match` does not, otherwise `/get`'s answer with the ETag.
fn etag_view(etag: &str, request: &Inspected<'_>) -> Reply {
    let if_none_match = multi_value(request.header("If-None-Match"));
    let if_match = multi_value(request.header("If-Match"));
    let named = |list: &[String]| list.iter().any(|e| e == etag || e == "*");
    if !if_none_match.is_empty() {
        if named(&if_none_match) {
            return reply::status(304).header("ETag", etag);
        }
    } else if !if_match.is_empty() && !named(&if_match) {
        return reply::status(412);
    }
    Reply::json(&Json::Object(request.dict(GET_KEYS))).header("ETag", etag)
}

/// httpbin's `parse_multi_value_header`: comma-separated entity tags,
/// quotes and `W/` dropped.
fn multi_value(header: Option<&str>) -> Vec<String> {
    header
        .filter(|h| !h.is_empty())
        .map(|h| {
            h.split(',')
                .map(|part| {
                    let part = part.trim_start();
                    let part = part.strip_prefix("W/").unwrap_or(part);
                    let part = part.strip_prefix('"').unwrap_or(part);
                    part.split('"').next().unwrap_or("").trim_end().to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// CPython's `base64.urlsafe_b64decode` (binascii's lenient mode):
/// characters outside the alphabet skipped, decoding stops at complete
/// padding, a missing padding is an error.
fn python_b64decode(text: &str) -> Option<Vec<u8>> {
    if !text.is_ascii() {
        return None;
    }
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let (mut out, mut quad, mut left, mut pads) = (Vec::new(), 0u8, 0u8, 0u8);
    for c in text.bytes() {
        if c == b'=' {
            pads += 1;
            if quad >= 2 && quad + pads >= 4 {
                return Some(out);
            }
            continue;
        }
        let Some(v) = value(c) else { continue };
        pads = 0;
        match quad {
            0 => left = v,
            1 => {
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
            }
            2 => {
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
            }
            _ => out.push((left << 6) | v),
        }
        quad = (quad + 1) % 4;
    }
    (quad == 0).then_some(out)
}

/// `/json`: a document of our own, shaped as httpbin's sample slideshow.
fn sample_json() -> Json {
    let slide = |title: &str| Json::object([("title", Json::str(title)), ("type", Json::str("all"))]);
    let mut overview = vec![("title".to_string(), Json::str("Overview")), ("type".to_string(), Json::str("all"))];
    overview.push((
        "items".into(),
        Json::List(vec![Json::str("Why <em>load</em> tells"), Json::str("Who <em>watches</em> the autoscaler")]),
    ));
    Json::object([(
        "slideshow",
        Json::object([
            ("author", Json::str("scalelab")),
            ("date", Json::str("date of publication")),
            ("slides", Json::List(vec![slide("Does it scale?"), Json::Object(overview)])),
            ("title", Json::str("Sample Slide Show")),
        ]),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_decoded_as_leniently_as_python() {
        assert_eq!(python_b64decode("SFRUUEJJTiBpcyBhd2Vzb21l").unwrap(), b"HTTPBIN is awesome");
        assert_eq!(python_b64decode("SGk=").unwrap(), b"Hi");
        assert_eq!(python_b64decode("SGk"), None);
        assert_eq!(python_b64decode("S!G*k=").unwrap(), b"Hi");
        assert_eq!(python_b64decode("SGk=trailing").unwrap(), b"Hi");
        assert_eq!(python_b64decode("_-8="), Some(vec![0xff, 0xef]));
        assert_eq!(python_b64decode("A"), None);
    }

    #[test]
    fn python_int_accepts_what_int_does() {
        assert_eq!(python_int(" 42 "), Some(42));
        assert_eq!(python_int("-1_000"), Some(-1000));
        assert_eq!(python_int("1__0"), None);
        assert_eq!(python_int("x"), None);
    }

    /// The body of the answer to a `GET` of `path` (of a delay or a stream,
    /// the head's), with the peer and the authority from the given asks.
    fn get_body(
        path: &str,
        headers: &[(String, Vec<u8>)],
        peer: &dyn Fn() -> Option<String>,
        authority: &dyn Fn() -> Option<String>,
    ) -> String {
        let request = Request { method: "GET", path_with_query: path, headers, body: b"", peer, authority };
        let mut random = || 7;
        let (Action::Reply(reply) | Action::Delay(_, reply) | Action::Stream(reply, _)) =
            route(&request, &mut Context { random: &mut random, now: &std::time::SystemTime::now });
        String::from_utf8(reply.body).unwrap()
    }

    /// In a guest, asking for the peer is a host call: made only by the
    /// routes that show `origin`, and not when `X-Forwarded-For` names it.
    #[test]
    fn the_peer_is_asked_for_only_by_routes_that_show_it() {
        let asked = |path: &str, headers: &[(String, Vec<u8>)]| {
            let count = std::cell::Cell::new(0);
            let peer = || {
                count.set(count.get() + 1);
                Some("10.1.2.3".to_string())
            };
            let body = get_body(path, headers, &peer, &|| None);
            (count.get(), body)
        };
        for path in ["/uuid", "/headers", "/user-agent", "/status/200", "/bytes/4", "/html"] {
            assert_eq!(asked(path, &[]).0, 0, "{path}");
        }
        for path in ["/ip", "/get", "/anything/x"] {
            let (count, body) = asked(path, &[]);
            assert_eq!(count, 1, "{path}");
            assert!(body.contains(r#""origin": "10.1.2.3""#), "{path}: {body}");
        }
        let forwarded = [("X-Forwarded-For".to_string(), b"192.0.2.9".to_vec())];
        let (count, body) = asked("/ip", &forwarded);
        assert_eq!(count, 0);
        assert!(body.contains(r#""origin": "192.0.2.9""#), "{body}");
    }

    /// In a guest, the authority (the Host header) is a host call too: asked
    /// only by the answers that show the headers or the url, once at most.
    #[test]
    fn the_authority_is_asked_for_only_by_answers_that_show_it() {
        let asked = |path: &str, headers: &[(String, Vec<u8>)]| {
            let count = std::cell::Cell::new(0);
            let authority = || {
                count.set(count.get() + 1);
                Some("example.test:8080".to_string())
            };
            let body = get_body(path, headers, &|| None, &authority);
            (count.get(), body)
        };
        for path in ["/uuid", "/ip", "/user-agent", "/status/200", "/bytes/4", "/html", "/json", "/nowhere"] {
            assert_eq!(asked(path, &[]).0, 0, "{path}");
        }
        // A present Origin is read from the whole list, Host included.
        let origin = [("origin".to_string(), b"https://a.test".to_vec())];
        assert_eq!(asked("/uuid", &origin).0, 1);
        for path in ["/get", "/headers", "/anything/x"] {
            let (count, body) = asked(path, &[]);
            assert_eq!(count, 1, "{path}");
            assert!(body.contains(r#""Host": "example.test:8080""#), "{path}: {body}");
        }
    }

    #[test]
    fn the_uuid_is_written_as_its_json_value_would_be() {
        for seed in [0u64, 1, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut random = || seed;
            let uuid = uuid4(&mut Context { random: &mut random, now: &std::time::SystemTime::now });
            let value = Json::object([("uuid", Json::str(uuid.to_string()))]);
            assert_eq!(uuid_reply(uuid), Reply::json(&value));
        }
    }

    #[test]
    fn etags_are_parsed_as_httpbin_does() {
        assert_eq!(multi_value(Some("\"a\", W/\"b\",c")), vec!["a", "b", "c"]);
        assert!(multi_value(None).is_empty());
    }
}
