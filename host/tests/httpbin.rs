//! The `httpbin` guest against the real httpbin: the same raw requests go to
//! both (every route of issue 15, with odd headers, repeated query keys,
//! UTF-8 and binary bodies, multipart, cookies, CORS and OPTIONS), and the
//! answers must agree byte for byte once the known differences between
//! httpbin 0.10.4 (what PyPI has) and 0.9.2 (what we reproduce) are
//! normalised ([`normalise_body`], [`normalise_header`], each explained).
//!
//! `cargo xtask test` installs `httpbin==0.10.4` and gunicorn into
//! `target/tools/httpbin`; this test starts it on a loopback port.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::Host;

/// The Host header both servers get, so their `url` fields agree.
const HOST: &str = "httpbin.test";

/// httpbin under gunicorn, killed when dropped.
struct Reference {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn httpbin_dir() -> PathBuf {
    let dir = std::env::var_os("SCALELAB_TEST_HTTPBIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/httpbin"));
    assert!(
        dir.join("httpbin").is_dir() && dir.join("bin/gunicorn").is_file(),
        "no httpbin in {}: run `cargo xtask test`",
        dir.display()
    );
    dir
}

/// Starts httpbin 0.10.4 under gunicorn (sync workers) on a free loopback port.
fn start_reference() -> Reference {
    let dir = httpbin_dir();
    let mut child = Command::new("python3")
        .arg(dir.join("bin/gunicorn"))
        .args(["--bind", "127.0.0.1:0", "--workers", "2", "httpbin:app"])
        .env("PYTHONPATH", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting gunicorn");
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = std::io::BufRead::lines(stderr);
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| line.split("Listening at: http://").nth(1).map(|rest| rest.split(' ').next().unwrap().parse().unwrap()))
        .expect("gunicorn logged its address");
    std::thread::spawn(move || for _ in lines {});
    Reference { child, addr }
}

/// One raw HTTP/1.1 request: method, target, extra header lines, body.
#[derive(Clone)]
struct Call {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn call(method: &'static str, target: &str) -> Call {
    Call { method, target: target.to_string(), headers: Vec::new(), body: Vec::new() }
}

impl Call {
    fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Call {
        self.body = body.into();
        self.header("Content-Type", content_type)
    }
}

/// A response as read off the wire: status, headers (names lower case), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

fn send(addr: SocketAddr, call: &Call) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request =
        format!("{} {} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: difftest/1.0\r\n", call.method, call.target).into_bytes();
    for (name, value) in &call.headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !call.body.is_empty() {
        request.extend_from_slice(format!("Content-Length: {}\r\n", call.body.len()).as_bytes());
    }
    // No `Connection` header: it is hop-by-hop, and the host (as any proxy
    // in front of httpbin would) keeps it from the guest. The response's
    // framing tells where it ends.
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&call.body);
    stream.write_all(&request).unwrap();
    read_answer(&mut stream, call.method == "HEAD")
}

/// Reads one response: the head, then the body by its framing (length,
/// chunks, or until the server closes).
fn read_answer(stream: &mut TcpStream, head: bool) -> Answer {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let fill = |stream: &mut TcpStream, raw: &mut Vec<u8>, buf: &mut [u8]| -> bool {
        let n = stream.read(buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
        n > 0
    };
    let (status, headers, len) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        if let httparse::Status::Complete(len) = response.parse(&raw).unwrap() {
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            break (response.code.unwrap(), headers, len);
        }
        assert!(fill(stream, &mut raw, &mut buf), "the connection closed before a response head");
    };
    raw.drain(..len);
    let answer = |body| Answer { status, headers: headers.clone(), body };
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if head || status == 204 || status == 304 {
        return answer(Vec::new());
    }
    if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            if let Some(body) = dechunk(&raw) {
                return answer(body);
            }
            assert!(fill(stream, &mut raw, &mut buf), "the connection closed inside a chunked body");
        }
    }
    match find("content-length").map(|v| v.parse::<usize>().unwrap()) {
        Some(length) => {
            while raw.len() < length {
                assert!(fill(stream, &mut raw, &mut buf), "the connection closed inside the body");
            }
            answer(raw[..length].to_vec())
        }
        None => {
            while fill(stream, &mut raw, &mut buf) {}
            answer(raw)
        }
    }
}

/// A whole chunked body, or `None` while its last chunk has not arrived.
fn dechunk(rest: &[u8]) -> Option<Vec<u8>> {
    chunks(rest).map(|chunks| chunks.concat())
}

/// The chunks of a whole chunked body, or `None` while its last chunk has
/// not arrived.
fn chunks(mut rest: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut chunks = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(chunks);
        }
        if rest.len() < size + 2 {
            return None;
        }
        chunks.push(rest[..size].to_vec());
        rest = &rest[size + 2..];
    }
}

/// How a route's body is compared.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Compare {
    /// Byte for byte, after [`normalise_body`].
    Exact,
    /// A page of werkzeug's (error, redirect): its wording changed between
    /// the versions, so only status and headers count.
    Page,
    /// A document of our own (`/html`, `/json`, ...): same content type and
    /// structure, not the same text.
    OwnDocument,
    /// JSON with fields random by design (uuid, ETag, dates): same keys,
    /// each random field matching its shape.
    RandomFields,
    /// Random bytes: same length.
    Length,
    /// gzip: the decompressed bodies, byte for byte after normalisation.
    Gzip,
}

/// Every known difference of httpbin 0.10.4's bodies from 0.9.2's, in one
/// place:
/// - 0.10.4's JSON (Flask 3 with `compact = False`) ends lines in `",\n"`;
///   0.9.2's (Flask 1.0's pretty `jsonify`) in `", \n"`. Ours is 0.9.2's.
/// - `/response-headers` echoes its own `Content-Length`, which differs by
///   that one byte per line: compared with the value blanked.
fn normalise_body(ours: &[u8], path: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(ours).replace(", \n", ",\n");
    if path.starts_with("/response-headers") {
        return blank_content_length(&text).into_bytes();
    }
    text.into_bytes()
}

fn blank_content_length(text: &str) -> String {
    text.lines()
        .map(|line| if line.trim_start().starts_with("\"Content-Length\"") { "  \"Content-Length\": \"N\"," } else { line })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every known difference of the headers that matter:
/// - `Set-Cookie` of a deleted cookie: werkzeug 0.14 wrote the date
///   `01-Jan-1970`, werkzeug 3 writes `01 Jan 1970`.
/// - `Allow` lists the same methods in an order Python's set chose.
/// - `/status/abc`: 0.10.4 answers `text/plain; charset=utf-8`, 0.9.2
///   (`Response(...)` without a mimetype) `text/html; charset=utf-8`.
/// - `Proxy-Authenticate` of `/status/407`: httpbin sets it, and gunicorn
///   drops it on the way out (it counts it hop-by-hop); the guest sends it.
fn normalise_header(name: &str, value: &str, path: &str) -> Option<String> {
    Some(match name {
        "proxy-authenticate" => return None,
        "set-cookie" => value.replace("01-Jan-1970", "01 Jan 1970"),
        "allow" => {
            let mut methods: Vec<&str> = value.split(',').map(str::trim).collect();
            methods.sort_unstable();
            methods.join(", ")
        }
        "content-type" if path.starts_with("/status/") && value == "text/html; charset=utf-8" => {
            "text/plain; charset=utf-8".into()
        }
        _ => value.to_string(),
    })
}

/// The response headers compared (others, such as `Date`, `Server` and how
/// the body is framed, are the server's business).
const HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "location",
    "set-cookie",
    "www-authenticate",
    "proxy-authenticate",
    "x-more-info",
    "cache-control",
    "allow",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-max-age",
    "access-control-allow-headers",
    "freeform",
    "x-custom",
];

/// How `ours` differs from `theirs`, the answer of `reference` (named in the messages).
fn compare(call: &Call, how: Compare, ours: &Answer, theirs: &Answer, reference: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let path = call.target.as_str();
    if ours.status != theirs.status {
        problems.push(format!("status {} vs {reference}'s {}", ours.status, theirs.status));
    }
    for name in HEADERS {
        let mine: Vec<String> = ours.all(name).iter().filter_map(|v| normalise_header(name, v, path)).collect();
        let real: Vec<String> = theirs.all(name).iter().filter_map(|v| normalise_header(name, v, path)).collect();
        if mine != real {
            problems.push(format!("header {name}: {mine:?} vs {reference}'s {real:?}"));
        }
    }
    // Framing is the server's business, but a whole body goes with its
    // length, as httpbin sends it (HTTP tools and proxies expect it).
    if theirs.header("content-length").is_some() && ours.header("content-length").is_none() {
        problems.push("no Content-Length where the reference sends one".into());
    }
    if path == "/status/407" && ours.header("proxy-authenticate") != Some("Basic realm=\"Fake Realm\"") {
        problems.push("no Proxy-Authenticate on the 407".into());
    }
    let (mine, real) = (&ours.body, &theirs.body);
    match how {
        Compare::Exact => {
            let (mine, real) = (normalise_body(mine, path), normalise_body(real, path));
            if mine != real {
                problems.push(format!(
                    "body\n--- ours\n{}\n--- {reference}\n{}",
                    String::from_utf8_lossy(&mine),
                    String::from_utf8_lossy(&real)
                ));
            }
        }
        Compare::Page => {}
        Compare::OwnDocument => {
            let same_shape = match ours.header("content-type") {
                Some("application/json") => shape(&json(mine)) == shape(&json(real)),
                Some("application/xml") => first_tag(mine) == first_tag(real),
                _ => !mine.is_empty() && !real.is_empty(),
            };
            if !same_shape {
                problems.push("the document's structure differs".into());
            }
        }
        Compare::RandomFields => {
            let (mine, real) = (json(mine), json(real));
            if shape(&mine) != shape(&real) {
                problems.push(format!("JSON keys differ: {mine} vs {reference}'s {real}"));
            }
            if let Some(uuid) = mine["uuid"].as_str() {
                let hex: String = uuid.chars().filter(|c| *c != '-').collect();
                let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
                if groups != [8, 4, 4, 4, 12] || !hex.chars().all(|c| c.is_ascii_hexdigit()) || &uuid[14..15] != "4" {
                    problems.push(format!("not a uuid4: {uuid}"));
                }
            }
            for name in ["etag", "last-modified"] {
                if ours.header(name).is_some() != theirs.header(name).is_some() {
                    problems.push(format!("header {name} present on one side only"));
                }
            }
        }
        Compare::Length => {
            if mine.len() != real.len() {
                problems.push(format!("{} bytes vs {reference}'s {}", mine.len(), real.len()));
            }
        }
        Compare::Gzip => {
            let (mine, real) = (normalise_body(&gunzip(mine), path), normalise_body(&gunzip(real), path));
            if mine != real {
                problems.push(format!("gzip body\n{}\nvs\n{}", String::from_utf8_lossy(&mine), String::from_utf8_lossy(&real)));
            }
        }
    }
    problems
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// A JSON value with its leaves blanked: its keys and nesting.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        _ => Value::Null,
    }
}

fn first_tag(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let start = text.find("<slideshow")?;
    Some(text[start..start + 10].to_string())
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out).expect("a gzip body");
    out
}

fn multipart() -> (String, Vec<u8>) {
    let boundary = "scalelabBoundary42";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue é\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nsecond\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"text\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nplain text\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"bin\"; filename=\"b.bin\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&[0x89, b'P', b'N', b'G', 0xff, 0x00, 0x10]);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The requests: every route, with the inputs that exercise its rules.
fn calls() -> Vec<(Call, Compare)> {
    use Compare::*;
    let (multipart_type, multipart_body) = multipart();
    let odd = |c: Call| {
        c.header("X-Custom-Header", "custom")
            .header("dnt", "1")
            .header("x-b3-traceid", "abc")
            .header("X-Repeated", "one")
            .header("X-Repeated", "two")
            .header("X-Forwarded-For", "203.0.113.7")
            .header("X-Request-Id", "hidden-by-default")
            .header("Via", "1.1 proxy")
    };
    vec![
        (call("GET", "/uuid"), RandomFields),
        (odd(call("GET", "/get?a=1&a=2&b=x+y&c=%20z&d&e=&utf=%C3%A9%E2%82%AC&bad=%FF")), Exact),
        (odd(call("GET", "/get?show_env=1")), Exact),
        (call("GET", "/get").header("X-Forwarded-Proto", "https"), Exact),
        (call("GET", "/get").header("X-Forwarded-Ssl", "on"), Exact),
        (call("GET", "/anything/x%2Fy/%C3%A9?q=%C3%A9&r=%20"), Exact),
        (
            call("POST", "/post?p=1").body(
                "application/json",
                r#"{"n": 1.5, "big": 12345678901, "list": [1, "é", null], "nested": {"b": true, "a": 1e3}}"#,
            ),
            Exact,
        ),
        (call("POST", "/post").body("text/plain; charset=utf-8", "héllo wörld ✓ 😀"), Exact),
        (call("POST", "/post").body("application/octet-stream", vec![0u8, 0xff, 0xfe, 1, 2, 3]), Exact),
        (call("POST", "/post").body("application/x-www-form-urlencoded", "f=1&f=2&g=a+b&h=%C3%A9"), Exact),
        (call("POST", "/post").body(&multipart_type, multipart_body.clone()), Exact),
        (call("PUT", "/put").body("application/json", "[1, 2]"), Exact),
        (call("PATCH", "/patch").body("text/plain", "patched"), Exact),
        (call("DELETE", "/delete"), Exact),
        (call("PUT", "/anything/deep/path").body(&multipart_type, multipart_body), Exact),
        (call("TRACE", "/anything"), Exact),
        (call("GET", "/post"), Page),
        (call("POST", "/get"), Page),
        (call("GET", "/nowhere"), Page),
        (odd(call("GET", "/headers")), Exact),
        (call("GET", "/ip"), Exact),
        (call("GET", "/ip").header("X-Forwarded-For", "198.51.100.1, 10.0.0.1"), Exact),
        (call("GET", "/user-agent"), Exact),
        (call("GET", "/status/204"), Exact),
        (call("GET", "/status/302"), Exact),
        (call("GET", "/status/401"), Exact),
        (call("GET", "/status/402"), Exact),
        (call("GET", "/status/406"), Exact),
        (call("GET", "/status/407"), Exact),
        (call("GET", "/status/418"), OwnDocument),
        (call("POST", "/status/500"), Exact),
        (call("GET", "/status/abc"), Exact),
        (call("GET", "/status/200:0,201:1"), Exact),
        (call("GET", "/delay/1?x=1"), Exact),
        (call("GET", "/delay/abc"), Page),
        (call("GET", "/bytes/64?seed=42"), Exact),
        (call("GET", "/bytes/1000?SEED=-1099511627781"), Exact),
        (call("GET", "/bytes/200000?seed=7"), Exact),
        (call("GET", "/bytes/300"), Length),
        (call("GET", "/stream/3?s=1"), Exact),
        (call("GET", "/stream/150"), Exact),
        (call("GET", "/base64/SFRUUEJJTiBpcyBhd2Vzb21l"), Exact),
        (call("GET", "/base64/w6k_-A=="), Exact),
        (call("GET", "/base64/%21%21"), Exact),
        (call("GET", "/gzip"), Gzip),
        (call("GET", "/cookies").header("Cookie", "a=1; b=\"x y\"; __utma=hidden; a=2"), Exact),
        (call("GET", "/cookies?show_env=1").header("Cookie", "__utma=shown"), Exact),
        (call("GET", "/cookies/set?k=v&space=x%20y&k=ignored"), Page),
        (call("GET", "/cookies/delete?k&other"), Page),
        (call("GET", "/redirect/3"), Page),
        (call("GET", "/redirect/1"), Page),
        (call("GET", "/redirect/2?absolute=true"), Page),
        (call("GET", "/relative-redirect/2"), Exact),
        (call("GET", "/relative-redirect/1"), Exact),
        (call("GET", "/absolute-redirect/2"), Page),
        (call("GET", "/response-headers?freeform=x&x-custom=1&x-custom=2"), Exact),
        (call("POST", "/response-headers?freeform=posted"), Exact),
        (call("GET", "/basic-auth/user/pass").header("Authorization", "Basic dXNlcjpwYXNz"), Exact),
        (call("GET", "/basic-auth/user/pass").header("Authorization", "Basic d3Jvbmc6d3Jvbmc="), Exact),
        (call("GET", "/basic-auth/user/pass"), Exact),
        (call("GET", "/cache"), RandomFields),
        (call("GET", "/cache").header("If-None-Match", "x"), Exact),
        (call("GET", "/cache/60"), Exact),
        (call("GET", "/etag/abc"), Exact),
        (call("GET", "/etag/abc").header("If-None-Match", "\"xyz\", W/\"abc\""), Exact),
        (call("GET", "/etag/abc").header("If-Match", "\"nope\""), Exact),
        (call("GET", "/robots.txt"), Exact),
        (call("GET", "/deny"), OwnDocument),
        (call("GET", "/html"), OwnDocument),
        (call("GET", "/json"), OwnDocument),
        (call("GET", "/xml"), OwnDocument),
        (call("GET", "/encoding/utf8"), OwnDocument),
        (call("GET", "/get").header("Origin", "https://app.example"), Exact),
        (
            call("OPTIONS", "/get")
                .header("Origin", "https://app.example")
                .header("Access-Control-Request-Headers", "X-Token, Content-Type"),
            Exact,
        ),
        (call("OPTIONS", "/anything/x"), Exact),
        (call("HEAD", "/get"), Exact),
    ]
}

#[test]
fn the_guest_answers_as_the_real_httpbin_does() {
    let reference = start_reference();
    let host = Host::start("httpbin", &["--deadline", "15s"]);
    let failures = differences(&host, reference.addr, "httpbin", calls());
    assert!(failures.is_empty(), "{} differences from httpbin:\n{}", failures.len(), failures.join("\n\n"));
}

/// Sends each call to the guest and to `reference` (at `addr`); every way the answers differ.
fn differences(host: &Host, addr: SocketAddr, reference: &str, calls: impl IntoIterator<Item = (Call, Compare)>) -> Vec<String> {
    let mut failures = Vec::new();
    for (call, how) in calls {
        let ours = send(host.traffic, &call);
        let theirs = send(addr, &call);
        for problem in compare(&call, how, &ours, &theirs, reference) {
            failures.push(format!("{} {}: {problem}", call.method, call.target));
        }
    }
    failures
}

/// httpbin-native, `cargo xtask bench-httpbin`'s ceiling, served in-process
/// on a free loopback port.
fn start_native() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async { httpbin_native::serve(tokio::net::TcpListener::from_std(listener).unwrap()).await })
    });
    addr
}

/// The bench's native reference is a ceiling for the guest only if it does
/// the guest's work: every call of the differential test gets the same
/// answer from both (random fields by shape, as against httpbin).
#[test]
fn the_native_reference_answers_as_the_guest_does() {
    let native = start_native();
    let host = Host::start("httpbin", &["--deadline", "15s"]);
    // Headers the host keeps from a guest must not reach httpbin-api natively either.
    let hidden = call("GET", "/headers")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Connection", "keep-alive")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .header("X-Kept", "yes");
    let failures = differences(&host, native, "httpbin-native", calls().into_iter().chain([(hidden, Compare::Exact)]));
    assert!(failures.is_empty(), "{} differences from httpbin-native:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn origin_is_the_connections_address_not_a_header_the_guest_cannot_check() {
    let host = Host::start("httpbin", &[]);
    let ip = send(host.traffic, &call("GET", "/ip"));
    assert_eq!(String::from_utf8(ip.body).unwrap(), "{\n  \"origin\": \"127.0.0.1\"\n}\n");
    // A client's X-Forwarded-For is reported as httpbin does, verbatim.
    let forwarded = send(host.traffic, &call("GET", "/ip").header("X-Forwarded-For", "192.0.2.9"));
    assert_eq!(String::from_utf8(forwarded.body).unwrap(), "{\n  \"origin\": \"192.0.2.9\"\n}\n");
}

#[test]
fn a_stream_arrives_line_by_line_in_chunks() {
    let host = Host::start("httpbin", &[]);
    // Read raw, to see the chunks: a buffered body would come as one.
    let mut stream = TcpStream::connect(host.traffic).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(format!("GET /stream/5 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "streamed, not buffered: {head}");
    let chunks = chunks(&raw[head_end..]).expect("a complete chunked body");
    let lines: Vec<Value> = chunks.iter().map(|c| serde_json::from_slice(c).unwrap()).collect();
    assert_eq!(lines.iter().map(|l| l["id"].as_i64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4], "one line per chunk");
    assert!(chunks.iter().all(|c| c.ends_with(b"\n") && c.iter().filter(|b| **b == b'\n').count() == 1));
}
