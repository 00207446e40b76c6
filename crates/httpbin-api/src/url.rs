//! The percent-encoding rules behind httpbin's `url` and `args`, as the
//! Python stack under it applies them: the server decodes the path, werkzeug
//! re-quotes path and query and then shows them as an IRI (every escape of
//! valid UTF-8 decoded, except spaces, controls, `%` and the characters that
//! would change the part's meaning), and `parse_qsl` decodes query pairs.

use std::borrow::Cow;

/// `urllib.parse.unquote_to_bytes`: `%XX` (any case) decoded, everything
/// else (a lone `%` too) as is.
pub fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(hex_byte)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// Path and query (after the first `?`), split.
///
/// This and [`segments`] look at bytes: the searcher behind `str::split_once`
/// and `str::split` with a `char` pattern costs more than the whole search
/// on paths this short, and each request makes several (in a wasm guest,
/// about 800 instructions a request at `/uuid`).
pub fn split_query(path_with_query: &str) -> (&str, Option<&str>) {
    match path_with_query.bytes().position(|b| b == b'?') {
        Some(at) => (&path_with_query[..at], Some(&path_with_query[at + 1..])),
        None => (path_with_query, None),
    }
}

/// A path's segments between `/`s, as `str::split('/')` gives them.
pub fn segments(path: &str) -> Vec<&str> {
    let mut segments = Vec::with_capacity(4);
    let mut start = 0;
    for (at, b) in path.bytes().enumerate() {
        if b == b'/' {
            segments.push(&path[start..at]);
            start = at + 1;
        }
    }
    segments.push(&path[start..]);
    segments
}

/// The path Flask routes on: percent-decoded, invalid UTF-8 replaced.
/// Borrowed when there is nothing to decode (most paths).
pub fn decoded_path(path: &str) -> Cow<'_, str> {
    if !path.bytes().any(|b| b == b'%') {
        return Cow::Borrowed(path);
    }
    Cow::Owned(String::from_utf8_lossy(&percent_decode(path.as_bytes())).into_owned())
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

/// Bytes as text, invalid UTF-8 sequences written back as `%XX` escapes
/// (werkzeug's `url_quote` codec error handler).
pub fn decode_requoting_invalid(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `urllib.parse.quote(text, safe)`: UTF-8, with letters, digits, `_.-~`
/// and `safe` kept and every other byte escaped in upper case.
pub fn quote(text: &[u8], safe: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text {
        if byte.is_ascii_alphanumeric() || b"_.-~".contains(&byte) || safe.as_bytes().contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Characters werkzeug keeps escaped in every part of an IRI: controls,
/// space, `%` and DEL.
fn always_unsafe(byte: u8) -> bool {
    byte <= 0x20 || byte == b'%' || byte == 0x7f
}

/// werkzeug's `_unquote_<part>`: decodes every escape but those of
/// always-unsafe bytes and of `also_unsafe`, and keeps invalid UTF-8
/// escaped. `quoted` is ASCII (the output of [`quote`]).
pub fn unquote_part(quoted: &str, also_unsafe: &[u8]) -> String {
    let bytes = quoted.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut pending = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = bytes.get(i + 1..i + 3).and_then(hex_byte)
        {
            if always_unsafe(byte) || also_unsafe.contains(&byte) {
                out.push_str(&decode_requoting_invalid(&std::mem::take(&mut pending)));
                out.push_str(&quoted[i..i + 3]);
            } else {
                pending.push(byte);
            }
            i += 3;
            continue;
        }
        pending.push(bytes[i]);
        i += 1;
    }
    out.push_str(&decode_requoting_invalid(&pending));
    out
}

/// The `url` httpbin reports: scheme, the Host header, then the path and
/// query as werkzeug rebuilds them (`get_current_url` then `uri_to_iri`).
pub fn current_url(scheme: &str, host: &str, raw_path: &str, raw_query: Option<&str>) -> String {
    // The server hands werkzeug the path decoded; werkzeug reads it as UTF-8.
    let path = percent_decode(raw_path.as_bytes());
    let path = String::from_utf8_lossy(&path);
    let mut url = format!("{scheme}://{host}/");
    url.push_str(&unquote_part(&quote(path.trim_start_matches('/').as_bytes(), "!$&'()*+,/:;=@%"), b"/?#"));
    if let Some(query) = raw_query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&unquote_part(&quote(query.as_bytes(), "!$&'()*+,/:;=?@%"), b"&=+#"));
    }
    url
}

/// `parse_qsl(text, keep_blank_values=True)`: pairs split on `&`, `+` as
/// space, escapes decoded (invalid UTF-8 kept escaped), a name without `=`
/// given an empty value, empty pieces skipped.
pub fn parse_qsl(text: &str) -> Vec<(String, String)> {
    let decode = |part: &str| decode_requoting_invalid(&percent_decode(part.replace('+', " ").as_bytes()));
    text.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (decode(name), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn paths_split_as_str_splits_them(path in "[a-z/?é%]{0,16}") {
            proptest::prop_assert_eq!(segments(&path), path.split('/').collect::<Vec<_>>());
            let expected = path.split_once('?').map_or((path.as_str(), None), |(p, q)| (p, Some(q)));
            proptest::prop_assert_eq!(split_query(&path), expected);
        }
    }

    #[test]
    fn a_path_is_borrowed_unless_it_has_escapes_and_decoded_as_before() {
        for path in ["/uuid", "/anything/a b", "/anything/%41%e2%82%ac", "/anything/%ff%", "/%zz", "/%"] {
            let decoded = decoded_path(path);
            assert_eq!(decoded, String::from_utf8_lossy(&percent_decode(path.as_bytes())), "{path}");
            assert_eq!(matches!(decoded, Cow::Borrowed(_)), !path.contains('%'), "{path}");
        }
    }

    #[test]
    fn the_url_is_the_iri_werkzeug_rebuilds() {
        assert_eq!(current_url("http", "h:1", "/get", Some("a=%20b&c=d+e&f&g=&a=2")), "http://h:1/get?a=%20b&c=d+e&f&g=&a=2");
        assert_eq!(current_url("http", "h", "/anything/x%2Fy", Some("q=%C3%A9")), "http://h/anything/x/y?q=é");
        assert_eq!(current_url("https", "h", "/a%20b/%3F", None), "https://h/a%20b/%3F");
        assert_eq!(current_url("http", "h", "/x", Some("v=%FF%26")), "http://h/x?v=%FF%26");
        assert_eq!(current_url("http", "h", "/x", Some("")), "http://h/x");
    }

    #[test]
    fn query_pairs_are_decoded_as_parse_qsl_does() {
        assert_eq!(
            parse_qsl("a=%20b&c=d+e&f&g=&&a=2&bad=%FF"),
            [("a", " b"), ("c", "d e"), ("f", ""), ("g", ""), ("a", "2"), ("bad", "%FF")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
