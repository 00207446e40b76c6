//! httpbin's view of a request (its `get_dict`): `url`, `args`, `form`,
//! `data`, `origin`, `headers`, `files`, `json` and `method`, each as
//! Flask and werkzeug 0.9.2's stack would show it.

use crate::Request;
use crate::form::{self, Parsed};
use crate::json::Json;
use crate::url;
use base64::Engine;
use std::cell::OnceCell;

/// Headers httpbin hides unless the query has `show_env` (they come from
/// its hosting platform, not the client).
const ENV_HEADERS: &[&str] = &[
    "X-Varnish",
    "X-Request-Start",
    "X-Heroku-Queue-Depth",
    "X-Real-Ip",
    "X-Forwarded-Proto",
    "X-Forwarded-Protocol",
    "X-Forwarded-Ssl",
    "X-Heroku-Queue-Wait-Time",
    "X-Forwarded-For",
    "X-Heroku-Dynos-In-Use",
    "X-Forwarded-Port",
    "X-Request-Id",
    "Via",
    "Total-Route-Time",
    "Connect-Time",
];

/// A request as httpbin sees it, read once.
pub struct Inspected<'a> {
    pub request: &'a Request<'a>,
    /// The request's headers as WSGI passes them: names title-cased,
    /// repeated headers joined with `,`, values read as Latin-1. Built on
    /// first need: most requests are only asked for `Origin` (CORS), which
    /// [`Inspected::header`] answers from the raw headers when it is absent.
    headers: OnceCell<Vec<(String, String)>>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub args: Vec<(String, String)>,
    /// The body as form fields, files and raw data, parsed on first need.
    body: OnceCell<Parsed>,
}

impl<'a> Inspected<'a> {
    pub fn new(request: &'a Request<'a>) -> Inspected<'a> {
        let (path, query) = url::split_query(request.path_with_query);
        let args = query.map(url::parse_qsl).unwrap_or_default();
        Inspected { request, headers: OnceCell::new(), path, query, args, body: OnceCell::new() }
    }

    /// The headers as WSGI passes them (see the field).
    fn headers(&self) -> &[(String, String)] {
        self.headers.get_or_init(|| wsgi_headers(self.request))
    }

    fn body(&self) -> &Parsed {
        self.body.get_or_init(|| form::parse(self.header("Content-Type"), self.request.body))
    }

    /// A request header by its title-cased name.
    pub fn header(&self, name: &str) -> Option<&str> {
        // No raw header names it (and the authority, which may stand for
        // Host, is not asked for): it is absent, and no list is built.
        if self.headers.get().is_none() && name != "Host" && !self.request.headers.iter().any(|(raw, _)| title_case_eq(raw, name))
        {
            return None;
        }
        self.headers().iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The first value of a query argument.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The scheme the server believes in: gunicorn trusts a proxy's
    /// `X-Forwarded-Proto: https`, `X-Forwarded-Protocol: ssl` and
    /// `X-Forwarded-Ssl: on` from loopback (its `secure_scheme_headers`).
    pub fn server_scheme(&self) -> &'static str {
        let secure = self.header("X-Forwarded-Proto") == Some("https")
            || self.header("X-Forwarded-Protocol") == Some("ssl")
            || self.header("X-Forwarded-Ssl") == Some("on");
        if secure { "https" } else { "http" }
    }

    /// The Host header, without the scheme's default port (werkzeug's `host`).
    pub fn host(&self) -> String {
        let host = self.header("Host").unwrap_or("");
        let default_port = if self.server_scheme() == "https" { ":443" } else { ":80" };
        host.strip_suffix(default_port).unwrap_or(host).to_string()
    }

    /// `url`: the scheme a proxy reported (`X-Forwarded-Proto`, then
    /// `X-Forwarded-Protocol`, then `https` for `X-Forwarded-Ssl: on`),
    /// else the server's.
    pub fn url(&self) -> String {
        let forwarded = [self.header("X-Forwarded-Proto"), self.header("X-Forwarded-Protocol")]
            .into_iter()
            .flatten()
            .find(|p| !p.is_empty())
            .map(str::to_string)
            .or_else(|| (self.header("X-Forwarded-Ssl") == Some("on")).then(|| "https".to_string()));
        let scheme = forwarded.unwrap_or_else(|| self.server_scheme().to_string());
        url::current_url(&scheme, &self.host(), self.path, self.query)
    }

    /// `origin`: `X-Forwarded-For` as sent, else the client's address.
    pub fn origin(&self) -> Json {
        match self.header("X-Forwarded-For") {
            Some(forwarded) => Json::str(forwarded),
            None => (self.request.peer)().map_or(Json::Null, Json::String),
        }
    }

    /// `headers`, in the order they came, the platform's hidden unless `show_env`.
    pub fn headers_json(&self) -> Json {
        let show_env = self.args.iter().any(|(n, _)| n == "show_env");
        Json::object(
            self.headers()
                .iter()
                .filter(|(name, _)| show_env || !ENV_HEADERS.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), Json::str(value.clone()))),
        )
    }

    /// `args`: one value as a string, repeated keys as a list.
    pub fn args_json(&self) -> Json {
        semiflatten(&self.args)
    }

    pub fn form_json(&self) -> Json {
        semiflatten(&self.body().fields)
    }

    /// `files`: each field's first file, as text or a `data:` URL.
    pub fn files_json(&self) -> Json {
        let mut files: Vec<(String, Json)> = Vec::new();
        for (name, content_type, content) in &self.body().files {
            if files.iter().any(|(n, _)| n == name) {
                continue;
            }
            let content_type = content_type.as_deref().filter(|t| !t.is_empty()).unwrap_or("application/octet-stream");
            files.push((name.clone(), Json::str(json_safe(content, content_type))));
        }
        Json::Object(files)
    }

    /// `data`: the raw body (empty for form bodies) as text, or a `data:` URL.
    pub fn data_json(&self) -> Json {
        Json::str(json_safe(&self.body().data, "application/octet-stream"))
    }

    /// `json`: the body parsed as JSON, or null.
    pub fn json_json(&self) -> Json {
        std::str::from_utf8(&self.body().data)
            .ok()
            .and_then(|text| serde_json::from_str(text).ok())
            .map_or(Json::Null, Json::from_serde)
    }

    /// httpbin's `get_dict(*keys)`: the named fields, in that order.
    pub fn dict(&self, keys: &[&str]) -> Vec<(String, Json)> {
        keys.iter()
            .map(|&key| {
                let value = match key {
                    "url" => Json::str(self.url()),
                    "args" => self.args_json(),
                    "form" => self.form_json(),
                    "data" => self.data_json(),
                    "origin" => self.origin(),
                    "headers" => self.headers_json(),
                    "files" => self.files_json(),
                    "json" => self.json_json(),
                    "method" => Json::str(self.request.method),
                    other => unreachable!("get_dict has no key {other}"),
                };
                (key.to_string(), value)
            })
            .collect()
    }
}

/// The headers as WSGI passes them: the Host header first when the
/// request's authority stands for it, then the rest in the order they came;
/// names title-cased, repeated ones joined with `,`, values read as Latin-1,
/// an empty Content-Type or Content-Length left out.
fn wsgi_headers(request: &Request<'_>) -> Vec<(String, String)> {
    let host = (request.authority)().map(|authority| ("Host".to_string(), authority));
    let mut headers: Vec<(String, String)> = host.into_iter().collect();
    for (name, value) in request.headers {
        let name = title_case(name);
        let value = latin1(value);
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    headers.retain(|(name, value)| !(value.is_empty() && (name == "Content-Type" || name == "Content-Length")));
    headers
}

/// Bytes read as Latin-1 (each byte the character of that code point).
fn latin1(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => text.to_string(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Whether `title_case(raw) == title`, without building the string.
fn title_case_eq(raw: &str, title: &str) -> bool {
    if !raw.is_ascii() {
        return title_case(raw) == title;
    }
    raw.len() == title.len() && {
        let mut after_letter = false;
        raw.bytes().zip(title.bytes()).all(|(b, t)| {
            let (cased, letter) = title_case_byte(b, after_letter);
            after_letter = letter;
            cased == t
        })
    }
}

/// One ASCII byte of a name title-cased, given whether a letter came just
/// before it; and whether this one is a letter.
fn title_case_byte(b: u8, after_letter: bool) -> (u8, bool) {
    let b = if b == b'_' { b'-' } else { b };
    let cased = if after_letter { b.to_ascii_lowercase() } else { b.to_ascii_uppercase() };
    (cased, b.is_ascii_alphabetic())
}

/// werkzeug's header names: each word capitalised as Python's `str.title`
/// does (a letter after a non-letter upper case, others lower case).
pub fn title_case(name: &str) -> String {
    if name.is_ascii() {
        let mut after_letter = false;
        let bytes = name.bytes().map(|b| {
            let (cased, letter) = title_case_byte(b, after_letter);
            after_letter = letter;
            cased
        });
        return bytes.map(char::from).collect();
    }
    let mut out = String::with_capacity(name.len());
    let mut after_letter = false;
    for c in name.chars() {
        let c = if c == '_' { '-' } else { c };
        if after_letter {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        after_letter = c.is_alphabetic();
    }
    out
}

/// httpbin's `semiflatten`: first-seen key order, one value as itself,
/// several as a list.
fn semiflatten(pairs: &[(String, String)]) -> Json {
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in pairs {
        match grouped.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value.clone()),
            None => grouped.push((name.clone(), vec![value.clone()])),
        }
    }
    Json::Object(
        grouped
            .into_iter()
            .map(|(name, mut values)| {
                let value = if values.len() == 1 {
                    Json::String(values.remove(0))
                } else {
                    Json::List(values.into_iter().map(Json::String).collect())
                };
                (name, value)
            })
            .collect(),
    )
}

/// httpbin's `json_safe`: UTF-8 as text, anything else as a `data:` URL.
pub fn json_safe(bytes: &[u8], content_type: &str) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!("data:{content_type};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_title_cased_as_python_does() {
        assert_eq!(title_case("x-custom-header"), "X-Custom-Header");
        assert_eq!(title_case("dnt"), "Dnt");
        assert_eq!(title_case("x-b3-traceid"), "X-B3-Traceid");
        assert_eq!(title_case("x-a1b"), "X-A1B");
        assert_eq!(title_case("CONTENT-TYPE"), "Content-Type");
    }

    #[test]
    fn repeated_headers_join_and_env_headers_hide() {
        let headers = vec![
            ("x-a".to_string(), b"1".to_vec()),
            ("X-Forwarded-For".to_string(), b"10.0.0.1".to_vec()),
            ("x-a".to_string(), b"2".to_vec()),
            ("x-latin".to_string(), vec![0xe9]),
        ];
        let request = Request {
            method: "GET",
            path_with_query: "/get",
            headers: &headers,
            body: b"",
            peer: &|| Some("127.0.0.1".into()),
            authority: &|| None,
        };
        let inspected = Inspected::new(&request);
        assert_eq!(inspected.headers_json(), Json::object([("X-A", Json::str("1,2")), ("X-Latin", Json::str("é"))]));
        assert_eq!(inspected.origin(), Json::str("10.0.0.1"));
        let request = Request { path_with_query: "/get?show_env=1", ..request };
        assert_eq!(
            Inspected::new(&request).headers_json(),
            Json::object([("X-A", Json::str("1,2")), ("X-Forwarded-For", Json::str("10.0.0.1")), ("X-Latin", Json::str("é"))])
        );
    }

    proptest::proptest! {
        /// The comparison that finds a header without building the list
        /// agrees with building the name.
        #[test]
        fn title_case_eq_agrees_with_title_case(raw in "[a-zA-Z0-9_é-]{0,12}", other in "[a-zA-Z0-9-]{0,12}") {
            proptest::prop_assert!(title_case_eq(&raw, &title_case(&raw)));
            proptest::prop_assert_eq!(title_case_eq(&raw, &other), title_case(&raw) == other);
        }
    }

    #[test]
    fn absent_headers_are_found_absent_without_the_list() {
        let headers = vec![("x-a".to_string(), b"1".to_vec()), ("content-type".to_string(), Vec::new())];
        let request = Request {
            method: "GET",
            path_with_query: "/get",
            headers: &headers,
            body: b"",
            peer: &|| None,
            authority: &|| Some("h.test".into()),
        };
        let inspected = Inspected::new(&request);
        assert_eq!(inspected.header("Origin"), None);
        assert!(inspected.headers.get().is_none());
        // An empty Content-Type is present raw, and absent as WSGI has it.
        assert_eq!(inspected.header("Content-Type"), None);
        assert_eq!(inspected.header("Host"), Some("h.test"));
        assert_eq!(inspected.header("X-A"), Some("1"));
    }

    #[test]
    fn bodies_that_are_not_utf8_become_data_urls() {
        assert_eq!(json_safe(b"text", "x/y"), "text");
        assert_eq!(json_safe(&[0xff, 0x00], "image/png"), "data:image/png;base64,/wA=");
    }
}
